package gate

import (
	"testing"
	"time"
)

// Shut waits for the call in progress and lets no new one through; a call
// that started before returns normally.
func TestShutWaitsForCallsInProgress(t *testing.T) {
	var g Gate
	if !g.Enter() {
		t.Fatal("an open gate refused a call")
	}
	shut := make(chan struct{})
	go func() { g.Shut(); close(shut) }()
	for !g.Closed() { // bounded by the test timeout: Close comes first in Shut
		time.Sleep(time.Millisecond)
	}
	if g.Enter() {
		t.Fatal("a closed gate let a call through")
	}
	select {
	case <-shut:
		t.Fatal("Shut returned while a call was in progress")
	default:
	}
	g.Leave()
	<-shut
	g.Shut() // idempotent, and nothing in progress
}

// A gate that never let a call through shuts at once.
func TestShutIdle(t *testing.T) {
	var g Gate
	g.Shut()
	if g.Enter() {
		t.Fatal("a shut gate let a call through")
	}
}
