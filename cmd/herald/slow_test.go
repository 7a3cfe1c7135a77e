package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// rawDial opens a WebSocket with a bare TCP socket: it performs the
// handshake and then does whatever the test wants — typically nothing, to
// play a client that never reads, never answers pings, or dies.
func rawDial(t *testing.T, h *server, user string, rcvbuf int) *rawConn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		if rcvbuf == 0 {
			return nil
		}
		return setRcvBuf(rc, rcvbuf)
	}}
	nc, err := d.Dial("tcp", strings.TrimPrefix(h.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", h.token(t, user))
	br := bufio.NewReaderSize(nc, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("handshake: %d", resp.StatusCode)
	}
	return &rawConn{nc.(*net.TCPConn), br}
}

// rawConn is a raw WebSocket connection whose reads start with what the
// handshake's reader buffered: a frame that arrived with the 101 response
// (a ping on a loaded machine) must not be lost.
type rawConn struct {
	*net.TCPConn
	br *bufio.Reader
}

func (c *rawConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// A client that never reads must not delay delivery to the others — not
// even the other tabs of the same user — and must not hold memory: its
// bounded queue overflows, it is closed and leaves the registry. (The
// write timeout is long enough that a fast reader held up by a loaded
// machine is not mistaken for a dead one; the slow one goes by its queue.)
func TestSlowConsumerDoesNotDelayOthers(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t, "HERALD_WRITE_TIMEOUT", "5s"))
		tr.dial(t, h, "u", rcvBuf(4096), notReading()) // never reads
		const fastN = 20
		fast := make([]*conn, fastN)
		for i := range fast {
			fast[i] = tr.dial(t, h, "u")
		}
		h.waitConns(t, "u", fastN+1)

		// Readers drain the fast clients concurrently, checking order.
		errs := make(chan error, fastN)
		const msgs = 120
		for _, c := range fast {
			go func() {
				for n := range msgs {
					m, err := c.recv(testTimeout)
					if err != nil {
						errs <- err
						return
					}
					if !strings.HasPrefix(string(m.Payload), fmt.Sprintf(`{"n":%d,`, n)) {
						errs <- fmt.Errorf("message %d: got %.20s", n, m.Payload)
						return
					}
				}
				errs <- nil
			}()
		}
		pad := strings.Repeat("p", 64<<10)
		slowGone := false
		for n := range msgs {
			status, body := h.api(t, "POST", "/v1/users/u/messages", fmt.Sprintf(`{"n":%d,"pad":%q}`, n, pad))
			if status != 200 {
				t.Fatalf("notify %d: %d %s", n, status, body)
			}
			if mustJSON(t, body)["connections"] == float64(fastN) {
				slowGone = true
			}
		}
		for range fast {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if !slowGone {
			t.Fatal("the slow consumer was never dropped")
		}
		h.waitConns(t, "u", fastN)
	})
}

// The client that did not read is closed with 4008 after everything it
// was given: when it reads at last (well within the write timeout), it
// finds every message accepted for it, in order, then the close.
func TestSlowConsumerClosedWith4008(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t, "HERALD_WRITE_TIMEOUT", "1m"))
		slow := tr.dial(t, h, "s", asV1(), rcvBuf(4096), notReading())
		h.waitConns(t, "s", 1)
		pad := strings.Repeat("q", 64<<10)
		accepted := 0
		for n := 0; ; n++ {
			if n > 1000 {
				t.Fatal("the send queue never overflowed")
			}
			status, body := h.api(t, "POST", "/v1/users/s/messages", fmt.Sprintf(`{"n":%d,"pad":%q}`, n, pad))
			if status != 200 {
				t.Fatalf("notify %d: %d %s", n, status, body)
			}
			r := mustJSON(t, body)
			if r["connections"] == float64(0) {
				if _, ok := r["failed"]; !ok {
					t.Fatalf("refused without a failure: %s", body)
				}
				break
			}
			accepted++
		}
		for n := range accepted {
			m, err := slow.recv(testTimeout)
			if err != nil {
				t.Fatalf("message %d of %d: %v", n, accepted, err)
			}
			if m.Type != "message" || m.Offset != uint64(n+1) || !strings.HasPrefix(string(m.Payload), fmt.Sprintf(`{"n":%d,`, n)) {
				t.Fatalf("message %d: %+v %.20s", n, m.envelope, m.Payload)
			}
		}
		slow.expectClose(t, 4008)
		h.waitConns(t, "s", 0)
	})
}

// A dead peer (reset, gone without a close) leaves the registry at once,
// so no notify counts it and no GoneException loop can start. An SSE
// stream's end is seen by the HTTP server's read of the idle request.
func TestDeadConnectionRemoved(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		live := tr.dial(t, h, "u")
		dead := tr.dial(t, h, "u", notReading())
		h.waitConns(t, "u", 2)
		dead.kill(t)
		sent := 0
		deadline := time.Now().Add(testTimeout)
		for i := 0; ; i++ {
			sent++
			status, body := h.api(t, "POST", "/v1/users/u/messages", fmt.Sprint(i))
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			if mustJSON(t, body)["connections"] == float64(1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("dead connection still counted")
			}
			time.Sleep(10 * time.Millisecond)
		}
		h.waitConns(t, "u", 1)
		for i := range sent { // the live tab got everything, in order
			if got := live.payload(t); got != fmt.Sprint(i) {
				t.Fatalf("live tab got %s, want %d", got, i)
			}
		}
	})
}

// Server pings drop a client that stopped answering, with 1008. That a
// client that answers is never dropped, however late the heartbeats come,
// is session.TestHeartbeatByPingsSent's job: it steps heartbeats by hand,
// whereas here a live client would have to answer within two 100 ms
// intervals, a window a loaded machine can miss. An SSE client cannot
// answer: its heartbeat is a comment line and its liveness rests on writes
// succeeding, so there is no mute client to drop; it is sent pings.
func TestHeartbeatDropsDead(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t, "HERALD_PING_INTERVAL", "100ms"))
		if tr.sse() {
			live := tr.dial(t, h, "hb")
			deadline := time.Now().Add(testTimeout)
			for live.sse.pings.Load() < 5 {
				if time.Now().After(deadline) {
					t.Fatalf("%d ping comments in %v", live.sse.pings.Load(), testTimeout)
				}
				time.Sleep(10 * time.Millisecond)
			}
			conns := h.waitConns(t, "hb", 1)
			if conns[0]["last_active_at"] == conns[0]["connected_at"] {
				t.Fatalf("heartbeats did not update last_active_at: %v", conns[0])
			}
			return
		}
		mute := rawDial(t, h, "hb", 0) // never answers a ping
		h.waitConns(t, "hb", 1)
		h.waitConns(t, "hb", 0)
		// The mute one got a close frame: read until EOF and look for it.
		mute.SetReadDeadline(time.Now().Add(testTimeout))
		buf := make([]byte, 4096)
		var got []byte
		for {
			n, err := mute.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !strings.Contains(string(got), "heartbeat timeout") {
			t.Fatalf("mute client got %q", got)
		}
		// Pings were written to it before it was judged: two of them.
		if n := strings.Count(string(got), "\x89\x00"); n != 2 {
			t.Fatalf("mute client got %d pings before the close, want 2: %q", n, got)
		}
	})
}

// One client that never reads, a flood aimed at it, and a thousand others:
// every one of the thousand receives every broadcast, in order, while the
// stuck one is dropped.
func TestNeverReadingClientAndThousandOthers(t *testing.T) {
	// The stuck client is dropped by its queue bound (10 MB go its way);
	// the write timeout is long so that no reader among the thousand can
	// be dropped for being slow on a loaded machine.
	h := startHerald(t, testEnv(t, "HERALD_WRITE_TIMEOUT", "20s"))
	rawDial(t, h, "stuck", 4096)
	const others, rounds = 1000, 20
	conns := make([]*websocket.Conn, others)
	for i := range conns {
		conns[i] = h.dial(t, fmt.Sprint("o", i))
	}
	h.waitConns(t, "stuck", 1)
	for i := 0; ; i++ { // wait until every connection is registered
		status, body := h.api(t, "POST", "/v1/broadcast", `{"data":"hello"}`)
		if status == 200 && mustJSON(t, body)["connections"] == float64(others+1) {
			break
		}
		if i > 500 {
			t.Fatalf("not all connected: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	errs := make(chan error, others)
	for _, c := range conns {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			n := -1
			for n < rounds-1 {
				_, b, err := c.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				if string(b) == `"hello"` {
					continue // the registration probes
				}
				var got int
				if _, err := fmt.Sscanf(string(b), "%d", &got); err != nil || got != n+1 {
					errs <- fmt.Errorf("got %q after %d", b, n)
					return
				}
				n = got
			}
			errs <- nil
		}()
	}
	pad := strings.Repeat("s", 100<<10)
	for n := range rounds {
		// Five large messages at the stuck client for every broadcast.
		for range 5 {
			h.api(t, "POST", "/v1/users/stuck/messages", fmt.Sprintf("%q", pad))
		}
		if status, body := h.api(t, "POST", "/v1/broadcast", fmt.Sprintf(`{"data":%d}`, n)); status != 200 {
			t.Fatalf("broadcast: %d %s", status, body)
		}
	}
	for range others {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	h.waitConns(t, "stuck", 0)
}

// A client that opens a socket and never finishes its handshake is cut off
// after HERALD_HANDSHAKE_TIMEOUT, so it cannot hold a descriptor forever.
func TestHandshakeTimeout(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_HANDSHAKE_TIMEOUT", "200ms"))
	nc, err := net.Dial("tcp", strings.TrimPrefix(h.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET /ws?token=%s HTTP/1.1\r\nHost: x\r\n", h.token(t, "slowloris")) // never ends the headers
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("connection not closed by the server: %v (read %q)", err, b)
	}
}

// HERALD_MAX_CONNS bounds the node: past it the upgrade (or the stream) is
// refused with 503 unavailable, and a slot frees up when a connection
// closes.
func TestMaxConnsPerNode(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t, "HERALD_MAX_CONNS", "2"))
		c1 := tr.dial(t, h, "a")
		tr.dial(t, h, "b")
		h.waitConns(t, "b", 1)
		c, status, body, err := tr.tryDial(t, h, "c")
		if c != nil || status != 503 {
			t.Fatalf("third connection: %d %s %v", status, body, err)
		}
		if !strings.Contains(body, `"code":"unavailable"`) {
			t.Fatalf("body %s", body)
		}
		c1.close()
		h.waitConns(t, "a", 0)
		deadline := time.Now().Add(testTimeout)
		for {
			c, _, _, err := tr.tryDial(t, h, "c")
			if err == nil {
				c.closeNow()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("slot never freed: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
