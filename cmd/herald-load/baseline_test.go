package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// startTestBaseline serves the baseline in-process and returns its base URL.
func startTestBaseline(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveBaseline(ctx, "127.0.0.1:0", pw) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveBaseline: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	_, addr, ok := strings.Cut(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	return addr
}

func baselineBroadcast(t *testing.T, base, body string) (int, int) {
	t.Helper()
	resp, err := http.Post(base+"/v1/broadcast", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Connections int `json:"connections"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, r.Connections
}

// The baseline accepts any token, writes the data bytes as one text frame
// to every connection, replies with the count, and forgets connections
// whose writes fail.
func TestBaselineServer(t *testing.T) {
	base := startTestBaseline(t)
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws?token=anything"
	const n = 7
	conns := make([]net.Conn, n)
	for i := range conns {
		c, _, _, err := ws.Dial(context.Background(), wsURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	// The upgrade handler appends after the handshake reply: wait until
	// every connection is in the slice (a count, polled, not a timing).
	for i := 0; ; i++ {
		if _, got := baselineBroadcast(t, base, `{"data":"warm-up"}`); got == n {
			break
		}
		if i == 100 {
			t.Fatal("connections never all registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	status, got := baselineBroadcast(t, base, `{"data":{"t":1,"seq":1}}`)
	if status != http.StatusOK || got != n {
		t.Fatalf("status %d connections %d, want 200 and %d", status, got, n)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			p, op, err := wsutil.ReadServerData(c)
			if err != nil {
				t.Fatalf("conn %d: %v", i, err)
			}
			if string(p) == `"warm-up"` {
				continue // a later warm-up broadcast
			}
			if op != ws.OpText || string(p) != `{"t":1,"seq":1}` {
				t.Fatalf("conn %d: op %v payload %q", i, op, p)
			}
			break
		}
	}

	// Clients that leave are dropped by the first write that fails (the
	// first write after a close may still succeed: TCP learns later).
	conns[0].Close()
	conns[1].Close()
	for i := 0; ; i++ {
		if _, got := baselineBroadcast(t, base, `{"data":1}`); got == n-2 {
			break
		}
		if i == 100 {
			t.Fatalf("closed connections still counted after %d broadcasts", i)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, body := range []string{`{}`, `not json`, `{"data":}`} {
		if status, _ := baselineBroadcast(t, base, body); status != http.StatusBadRequest {
			t.Errorf("body %q: status %d, want 400", body, status)
		}
	}
}
