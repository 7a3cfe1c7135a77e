package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// sseModes are the I/O strategies an adopted stream runs on here.
func sseModes(t *testing.T) []string {
	if runtime.GOOS != "linux" {
		return []string{IOGoroutine}
	}
	return []string{IOEpoll, IOGoroutine}
}

// ssePrelude is what the handler below writes first: a close-delimited
// response head, then an event naming the session, as package sse does.
func ssePrelude(id herald.ConnID) []byte {
	return []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" +
		"event: connected\ndata: " + string(id) + "\n\n")
}

// sseServer is a gateway adopting event streams behind a loopback HTTP
// server, the way package sse hands them over.
type sseServer struct {
	h    *hub.Hub
	sm   *session.Manager
	iss  *token.Issuer
	addr string
}

func serveSSE(t *testing.T, mode string, cfg session.Config) *sseServer {
	t.Helper()
	iss, err := token.NewIssuer([]byte("test-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(0)
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	sm := session.NewManager(cfg, h, store, iss, slog.New(slog.DiscardHandler))
	g, err := New(Config{IO: mode}, sm, iss, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go g.Run(ctx)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := g.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if !sm.Reserve() {
			http.Error(w, "full", http.StatusServiceUnavailable)
			return
		}
		nc, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			sm.Release()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		p := session.Params{User: claims.User, Format: wire.FormatSSE, RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent()}
		if err := g.AdoptSSE(nc, p, ssePrelude); err != nil {
			t.Errorf("AdoptSSE: %v", err)
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return &sseServer{h: h, sm: sm, iss: iss, addr: strings.TrimPrefix(srv.URL, "http://")}
}

// open starts user u's stream over a raw TCP connection and reads the
// response head; the body reader then yields the events.
func (s *sseServer) open(t *testing.T, u herald.UserID) (net.Conn, *http.Response, *bufio.Reader) {
	t.Helper()
	tok, err := s.iss.Mint(u, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	// A safety net for a broken server, not a timing assumption: every
	// read below expects bytes that are already on their way.
	_ = nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/sse?token="+tok, nil)
	if err := req.Write(nc); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), req)
	if err != nil {
		t.Fatal(err)
	}
	return nc, resp, bufio.NewReader(resp.Body)
}

// readEvent returns the next event block, blank line excluded.
func readEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, b.String())
		}
		if line == "\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

// waitFor polls cond, bounded by a count of rounds rather than a clock.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 20000 {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gone waits until no connection is left: none in the hub, no slot held.
func (s *sseServer) gone(t *testing.T) {
	t.Helper()
	waitFor(t, "the stream left the hub and gave its slot back", func() bool { return s.h.Len() == 0 && s.sm.Open() == 0 })
}

// An adopted stream starts with the prelude as a close-delimited response,
// carries what the hub sends and the heartbeat comment, ignores what the
// client sends, survives heartbeats it cannot answer, and ends with a close
// event and the end of the response when its session is closed.
func TestSSEStream(t *testing.T) {
	for _, mode := range sseModes(t) {
		t.Run(mode, func(t *testing.T) {
			s := serveSSE(t, mode, session.Config{})
			nc, resp, br := s.open(t, "u")
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("response %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if len(resp.TransferEncoding) != 0 || resp.ContentLength != -1 || !resp.Close {
				t.Fatalf("not close-delimited: Transfer-Encoding %v, Content-Length %d, Close %v", resp.TransferEncoding, resp.ContentLength, resp.Close)
			}
			waitFor(t, "the session joined the hub", func() bool { return s.h.Len() == 1 })
			id := s.h.UserConns("u")[0].ID()
			if ev := readEvent(t, br); ev != "event: connected\ndata: "+string(id)+"\n" {
				t.Fatalf("first event %q, want the prelude's for %s", ev, id)
			}

			s.h.SendUser(&herald.Message{ID: "m1", User: "u", Offset: 1, Epoch: "e", Data: []byte(`{"a":1}`)})
			if ev := readEvent(t, br); !strings.HasPrefix(ev, "id: e:1\ndata: {\"type\":\"message\"") {
				t.Fatalf("message event %q", ev)
			}
			// Bytes from the client are discarded, not parsed as WebSocket
			// frames (these would be a protocol error there).
			if _, err := nc.Write([]byte("GET /again HTTP/1.1\r\n\r\n\x88\x80garbage")); err != nil {
				t.Fatal(err)
			}
			// Heartbeats the client cannot answer never make it dead.
			for range 5 {
				s.sm.HeartbeatAll()
			}
			for range 5 {
				if ev := readEvent(t, br); ev != ": ping\n" {
					t.Fatalf("heartbeat %q", ev)
				}
			}
			s.h.SendUser(&herald.Message{ID: "m2", User: "u", Offset: 2, Epoch: "e", Data: []byte(`{"a":2}`)})
			if ev := readEvent(t, br); !strings.HasPrefix(ev, "id: e:2\ndata: ") {
				t.Fatalf("message after client bytes and heartbeats %q", ev)
			}

			s.h.CloseUser("u", wire.CloseDisconnected, "disconnected by the server")
			if ev := readEvent(t, br); ev != "event: close\ndata: {\"type\":\"close\",\"code\":4003,\"reason\":\"disconnected by the server\"}\n" {
				t.Fatalf("close event %q", ev)
			}
			if b, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the close event: %q, %v; want the end of the response", b, err)
			}
			nc.Close()
			s.gone(t)
		})
	}
}

// A client that goes away (a closed tab) is noticed by the reader's EOF:
// the session leaves the hub at once and the slot is given back.
func TestSSEClientEOF(t *testing.T) {
	for _, mode := range sseModes(t) {
		t.Run(mode, func(t *testing.T) {
			s := serveSSE(t, mode, session.Config{})
			nc, _, br := s.open(t, "u")
			readEvent(t, br)
			waitFor(t, "the session joined the hub", func() bool { return s.h.Len() == 1 && s.sm.Open() == 1 })
			nc.Close()
			s.gone(t)
		})
	}
}

// A stream whose client stops reading is closed with 4008 once its queue
// overflows; the close event goes out past the bound, last, and the client
// finds it after everything that was queued before it.
func TestSSESlowConsumer(t *testing.T) {
	for _, mode := range sseModes(t) {
		t.Run(mode, func(t *testing.T) {
			s := serveSSE(t, mode, session.Config{MaxQueueFrames: 8, MaxQueueBytes: 256 << 10})
			nc, _, br := s.open(t, "u")
			readEvent(t, br)
			waitFor(t, "the session joined the hub", func() bool { return s.h.Len() == 1 })
			sess := s.h.UserConns("u")[0].(*session.Session)
			ev := wire.Event("", "", []byte(`"`+strings.Repeat("x", 32<<10)+`"`))
			sent := 0
			for sess.Send(ev, 0) {
				// The kernel's buffers on both ends fill first; a few
				// hundred events of 32 KiB outgrow any loopback default.
				if sent++; sent == 1<<16 {
					t.Fatal("the queue never overflowed")
				}
			}
			var last string
			for n := 0; ; n++ {
				line, err := br.ReadString('\n')
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d events: %v", n, err)
				}
				if strings.HasPrefix(line, "event: ") || strings.HasPrefix(line, "data: {") {
					last += line
				} else if strings.HasPrefix(line, "data: \"") {
					last = ""
				}
			}
			if want := fmt.Sprintf("event: close\ndata: {\"type\":\"close\",\"code\":%d,\"reason\":\"send queue full\"}\n", wire.CloseSlowConsumer); last != want {
				t.Fatalf("stream ended with %q, want %q", last, want)
			}
			nc.Close()
			s.gone(t)
		})
	}
}

// When the client cannot take even the prelude, the stream ends like any
// failed write: the connection and its slot are given back and the
// session leaves the hub.
func TestAdoptSSEFailedPrelude(t *testing.T) {
	iss, _ := token.NewIssuer([]byte("0123456789abcdef0123456789abcdef"))
	h := hub.New(0)
	sm := testSessions(h)
	g, err := New(Config{IO: IOGoroutine}, sm, iss, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	server, client := net.Pipe()
	client.Close()
	if !sm.Reserve() {
		t.Fatal("no slot")
	}
	if err := g.AdoptSSE(server, session.Params{User: "u", Format: wire.FormatSSE}, ssePrelude); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for sm.Open() != 0 || h.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after a failed prelude: %d slots held, %d in the hub", sm.Open(), h.Len())
		}
		time.Sleep(time.Millisecond)
	}
}

// The SSE mode costs an idle connection nothing: its flag sits in the
// padding next to the other small fields, and conn stays the size it was
// before (on 64-bit systems).
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit systems")
	}
	if got := unsafe.Sizeof(conn{}); got > 64 {
		t.Fatalf("conn is %d bytes, was 64: idle connections are what a node holds most of", got)
	}
}
