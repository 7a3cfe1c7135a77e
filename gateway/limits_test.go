package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/wire"
)

// frozenClock is a session clock that never moves: a rate limiter on it
// never refills, so a test counts messages instead of timing them.
type frozenClock struct{ now time.Time }

func (c frozenClock) Now() time.Time { return c.now }
func (c frozenClock) AfterFunc(d time.Duration, f func()) session.Timer {
	return time.AfterFunc(d, f)
}

// dialWS opens a WebSocket to s as user u offering protocols, and returns
// the connection and a reader for what the server sends.
func dialWS(t *testing.T, s *testServer, u herald.UserID, protocols ...string) (net.Conn, *bufio.Reader) {
	t.Helper()
	tok, err := s.iss.Mint(u, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nc, br, _, err := ws.Dialer{Timeout: 20 * time.Second, Protocols: protocols}.Dial(context.Background(), "ws://"+s.addr+"/ws?token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReader(nc)
	}
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second)) // a bound for a broken server
	return nc, br
}

// A client over its message rate is closed with 4030 "message rate
// exceeded", after the answers to the messages within it: herald.v1
// messages and WebSocket pings alike, on both I/O strategies.
func TestMessageRateLimitCloses(t *testing.T) {
	const burst = 3
	cases := []struct {
		name   string
		frame  func() ws.Frame
		answer func(ws.Frame) bool
	}{
		{"herald.v1 ping", func() ws.Frame { return ws.NewTextFrame([]byte(`{"type":"ping"}`)) },
			func(f ws.Frame) bool { return f.Header.OpCode == ws.OpText && string(f.Payload) == `{"type":"pong"}` }},
		{"WebSocket ping", func() ws.Frame { return ws.NewPingFrame([]byte("p")) },
			func(f ws.Frame) bool { return f.Header.OpCode == ws.OpPong && string(f.Payload) == "p" }},
	}
	for _, mode := range []string{IOEpoll, IOGoroutine} {
		t.Run(mode, func(t *testing.T) {
			s := serveWith(t, Config{IO: mode}, session.Config{MessageRate: 1, MessageBurst: burst, Clock: frozenClock{time.Now()}})
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					nc, br := dialWS(t, s, "u", herald.SubprotocolV1)
					var out bytes.Buffer
					for range burst + 1 {
						if err := ws.WriteFrame(&out, ws.MaskFrameInPlace(tc.frame())); err != nil {
							t.Fatal(err)
						}
					}
					if _, err := nc.Write(out.Bytes()); err != nil {
						t.Fatal(err)
					}
					answers := 0
					for {
						f, err := ws.ReadFrame(br)
						if err != nil {
							t.Fatalf("no close frame after %d answers: %v", answers, err)
						}
						if tc.answer(f) {
							answers++
							continue
						}
						if f.Header.OpCode != ws.OpClose {
							continue // the server's own pings, say
						}
						code, reason := binary.BigEndian.Uint16(f.Payload), string(f.Payload[2:])
						if code != wire.CloseRateLimited || reason != "message rate exceeded" {
							t.Fatalf("closed %d %q, want %d \"message rate exceeded\"", code, reason, wire.CloseRateLimited)
						}
						break
					}
					if answers != burst {
						t.Fatalf("%d answers before the close, want the burst's %d", answers, burst)
					}
				})
			}
		})
	}
}

// observed is an Observer for gateway tests.
type observed struct {
	mu     sync.Mutex
	events []string
	waits  int
}

func (o *observed) Opened(transport string) {
	o.mu.Lock()
	o.events = append(o.events, "opened "+transport)
	o.mu.Unlock()
}

func (o *observed) Closed(transport string, code int, reason string) {
	o.mu.Lock()
	o.events = append(o.events, fmt.Sprintf("closed %s %d %s", transport, code, reason))
	o.mu.Unlock()
}

func (o *observed) Resumed(string, int) {}

func (o *observed) QueueWait(time.Duration) {
	o.mu.Lock()
	o.waits++
	o.mu.Unlock()
}

func (o *observed) seen() ([]string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.events), o.waits
}

// A connection whose client stops reading overflows its queue and is
// reported to the observer as closed with 4008 — the transport's own
// close, which the session learns from it — after its writer reported
// waiting on the queue.
func TestObserverSeesSlowConsumer(t *testing.T) {
	for _, mode := range []string{IOEpoll, IOGoroutine} {
		t.Run(mode, func(t *testing.T) {
			obs := &observed{}
			s := serveWith(t, Config{IO: mode}, session.Config{MaxQueueFrames: 8, MaxQueueBytes: 256 << 10, Observer: obs})
			nc, _ := dialWS(t, s, "slow")
			waitFor(t, "the connection joined the hub", func() bool { return s.h.Len() == 1 })
			m := &herald.Message{ID: "m", User: "slow", Data: []byte(`"` + strings.Repeat("x", 32<<10) + `"`)}
			for sent := 0; len(s.h.SendUser(m).Failed) == 0; sent++ {
				// The kernel's buffers on both ends fill first; a few
				// hundred messages of 32 KiB outgrow any loopback default.
				if sent == 1<<16 {
					t.Fatal("the queue never overflowed")
				}
			}
			nc.Close()
			waitFor(t, "the connection was torn down", func() bool { return s.sm.Open() == 0 })
			events, waits := obs.seen()
			if want := []string{"opened websocket", "closed websocket 4008 send queue full"}; !slices.Equal(events, want) {
				t.Fatalf("observed %q, want %q", events, want)
			}
			if waits == 0 {
				t.Fatal("no queue wait reported for a connection whose queue filled")
			}
		})
	}
}

// A client that goes away without a close frame is reported as 1006.
func TestObserverSeesLostConnection(t *testing.T) {
	obs := &observed{}
	s := serveWith(t, Config{}, session.Config{Observer: obs})
	nc, br := dialWS(t, s, "u")
	waitFor(t, "the connection joined the hub", func() bool { return s.h.Len() == 1 })
	nc.Close()
	_, _ = io.Copy(io.Discard, br)
	waitFor(t, "the connection was torn down", func() bool { return s.sm.Open() == 0 })
	if events, _ := obs.seen(); !slices.Equal(events, []string{"opened websocket", "closed websocket 1006 connection lost"}) {
		t.Fatalf("observed %q", events)
	}
}
