package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/session"
)

// In epoll mode a send writes straight to the connection's descriptor
// number. When a connection closes, the kernel hands that number to the
// next socket it opens, usually the next client's: a send racing with the
// close must never land there. Here user a's connection is closed by its
// client while a sender hammers user a, and user b connects right after
// (most likely on a's old descriptor): b must receive only its own
// message. Not a timing test; each round either shows a leak or not.
func TestSendNeverReachesAReusedDescriptor(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the epoll I/O strategy is Linux-only")
	}
	h, iss, addr := serveGateway(t, IOEpoll)

	dial := func(user herald.UserID) (net.Conn, *bufio.Reader) {
		t.Helper()
		tok, err := iss.Mint(user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		nc, br, _, err := ws.Dialer{Timeout: 20 * time.Second}.Dial(context.Background(), "ws://"+addr+"/ws?token="+tok)
		if err != nil {
			// Frames meant for another connection in front of the
			// handshake reply break it: that is a leak too.
			t.Fatalf("dial %s (a write for another connection may have reached this socket): %v", user, err)
		}
		if br == nil {
			br = bufio.NewReader(nc)
		}
		return nc, br
	}
	waitUser := func(user herald.UserID, n int) {
		t.Helper()
		for i := 0; len(h.UserConns(user)) != n; i++ {
			if i == 20000 {
				t.Fatalf("user %s never had %d connections", user, n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	for round := range 50 {
		a, _ := dial("a")
		waitUser("a", 1)

		var stop atomic.Bool
		var sender sync.WaitGroup
		sender.Go(func() {
			m := &herald.Message{ID: "x", User: "a", Data: []byte(`"for-a"`)}
			for !stop.Load() {
				h.SendUser(m)
			}
		})
		a.Close()
		b, br := dial("b")
		waitUser("b", 1)
		waitUser("a", 0) // a's close has been noticed and torn down
		stop.Store(true)
		sender.Wait()

		want := fmt.Sprintf(`"for-b %d"`, round)
		h.SendUser(&herald.Message{ID: "y", User: "b", Data: []byte(want)})
		_ = b.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			p, op, err := wsutil.ReadServerData(struct {
				io.Reader
				io.Writer
			}{br, b})
			if err != nil {
				t.Fatalf("round %d: read b: %v", round, err)
			}
			if op != ws.OpText {
				continue // a ping, say
			}
			if string(p) != want {
				t.Fatalf("round %d: b received %q: a write for another connection reached b's socket", round, p)
			}
			break
		}
		b.Close()
		waitUser("b", 0)
	}
}

// The read side of the same race: in epoll mode a worker reads the
// connection's own descriptor, and the connection closes it when it is
// torn down. Here client a sends pings as fast as it can and goes away
// while they are still being read, and client b connects right after
// (its descriptor most likely a's old number) and sends one ping of its
// own: b must get exactly its own pong back. A read made in a's name on
// b's socket would swallow b's ping (no pong, or a's echo instead).
func TestReadNeverReachesAReusedDescriptor(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the epoll I/O strategy is Linux-only")
	}
	s := serveWith(t, Config{IO: IOEpoll}, session.Config{})
	ping := func(w io.Writer, p string) error {
		f := ws.NewFrame(ws.OpPing, true, []byte(p))
		return ws.WriteFrame(w, ws.MaskFrameInPlace(f))
	}
	for round := range 50 {
		a, _ := dialWS(t, s, "a")
		waitFor(t, "a joined the hub", func() bool { return len(s.h.UserConns("a")) == 1 })
		var pinger sync.WaitGroup
		pinger.Go(func() {
			for ping(a, "for-a") == nil {
			}
		})
		time.Sleep(time.Millisecond) // let a few pings through; not a timing condition
		a.Close()
		pinger.Wait()

		b, br := dialWS(t, s, "b")
		want := fmt.Sprintf("for-b %d", round)
		if err := ping(b, want); err != nil {
			t.Fatalf("round %d: ping b: %v", round, err)
		}
		for {
			f, err := ws.ReadFrame(br)
			if err != nil {
				t.Fatalf("round %d: no pong for b: %v", round, err)
			}
			if f.Header.OpCode != ws.OpPong {
				continue // the server's own ping, say
			}
			if string(f.Payload) != want {
				t.Fatalf("round %d: b's pong is %q, want %q: a read or write crossed connections", round, f.Payload, want)
			}
			break
		}
		b.Close()
		waitFor(t, "a and b were torn down", func() bool { return s.sm.Open() == 0 })
	}
}

// In epoll mode a writer whose socket is full parks until the poller sees
// it writable again. A client that reads nothing while far more than the
// kernel's buffers hold is sent, then reads everything, must receive every
// message in order; one that never reads is dropped once WriteTimeout
// passes, with no socket deadline to do it. Both modes, for comparison.
func TestWriterWaitsForWritable(t *testing.T) {
	for _, mode := range []string{IOEpoll, IOGoroutine} {
		t.Run(mode, func(t *testing.T) {
			s := serveWith(t, Config{IO: mode}, session.Config{MaxQueueFrames: 1024, MaxQueueBytes: 64 << 20})
			const msgs, size = 256, 64 << 10 // 16 MiB: more than loopback buffers hold on both ends
			nc, br := dialWS(t, s, "slow")
			waitFor(t, "the connection joined the hub", func() bool { return s.h.Len() == 1 })
			for i := range msgs {
				data := fmt.Sprintf(`"%04d%s"`, i, strings.Repeat("x", size))
				if r := s.h.SendUser(&herald.Message{ID: "m", User: "slow", Data: []byte(data)}); len(r.Failed) != 0 {
					t.Fatalf("message %d refused: %+v", i, r)
				}
			}
			_ = nc.SetReadDeadline(time.Now().Add(60 * time.Second))
			for i := 0; i < msgs; {
				p, op, err := wsutil.ReadServerData(struct {
					io.Reader
					io.Writer
				}{br, nc})
				if err != nil {
					t.Fatalf("after %d messages: %v", i, err)
				}
				if op != ws.OpText {
					continue
				}
				if want := fmt.Sprintf(`"%04d`, i); !strings.HasPrefix(string(p), want) || len(p) != size+6 {
					t.Fatalf("message %d: got %d bytes starting %.8q", i, len(p), p)
				}
				i++
			}
		})
		t.Run(mode+"/timeout", func(t *testing.T) {
			s := serveWith(t, Config{IO: mode, WriteTimeout: 300 * time.Millisecond}, session.Config{MaxQueueFrames: 1024, MaxQueueBytes: 64 << 20})
			dialWS(t, s, "deaf") // never read
			waitFor(t, "the connection joined the hub", func() bool { return s.h.Len() == 1 })
			data := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
			for range 256 {
				s.h.SendUser(&herald.Message{ID: "m", User: "deaf", Data: data})
			}
			waitFor(t, "the connection was dropped after its write timeout", func() bool { return s.sm.Open() == 0 })
		})
	}
}
