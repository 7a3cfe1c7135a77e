package gateway

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/herald-gw/herald"
)

// A connection is in the hub before its handshake answer is written: a
// message sent the moment the client sees its socket open — with no wait
// for the registration — reaches it.
func TestRegisteredBeforeOpen(t *testing.T) {
	for _, mode := range []string{IOEpoll, IOGoroutine} {
		t.Run(mode, func(t *testing.T) {
			h, iss, addr := serveGateway(t, mode)
			for i := range 50 {
				user := herald.UserID(fmt.Sprint("open-", mode, "-", i))
				tok, _ := iss.Mint(user, time.Hour)
				nc, br, _, err := ws.Dialer{Timeout: 20 * time.Second}.Dial(context.Background(), "ws://"+addr+"/ws?token="+tok)
				if err != nil {
					t.Fatal(err)
				}
				if res := h.SendUser(&herald.Message{ID: "m", User: user, Data: []byte(`"hi"`)}); res.Connections != 1 {
					t.Fatalf("round %d: sent to %d connections right after the handshake, want 1", i, res.Connections)
				}
				_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
				var rw io.ReadWriter = nc
				if br != nil { // bytes already read behind the handshake
					rw = struct {
						io.Reader
						io.Writer
					}{br, nc}
				}
				data, err := wsutil.ReadServerText(rw)
				if err != nil || string(data) != `"hi"` {
					t.Fatalf("round %d: read %q, %v", i, data, err)
				}
				nc.Close()
			}
		})
	}
}
