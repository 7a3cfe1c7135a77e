package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-gw/herald"
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
