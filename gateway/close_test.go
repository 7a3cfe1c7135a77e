package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-gw/herald/wire"
)

// A client's close frame is answered per RFC 6455 §5.5.1 and §7.4: a valid
// code is echoed (an empty close with 1000), while a code that may not
// appear on the wire, a one-byte payload or a reason that is not UTF-8
// fails the connection with 1002 or 1007. 1005, 1006 and 1015 are never
// sent.
func TestClientCloseFrames(t *testing.T) {
	code := func(c uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, c), reason...)
	}
	cases := []struct {
		name    string
		payload []byte
		want    uint16
	}{
		{"normal", code(1000, "bye"), 1000},
		{"going away", code(1001, ""), 1001},
		{"application code", code(3000, ""), 3000},
		{"private code", code(4999, "x"), 4999},
		{"empty", nil, wire.CloseNormal},
		{"one byte", []byte{0x03}, wire.CloseProtocolError},
		{"below 1000", code(999, ""), wire.CloseProtocolError},
		{"no status 1005", code(1005, ""), wire.CloseProtocolError},
		{"abnormal 1006", code(1006, ""), wire.CloseProtocolError},
		{"TLS 1015", code(1015, ""), wire.CloseProtocolError},
		{"reserved 1016", code(1016, ""), wire.CloseProtocolError},
		{"reserved 2999", code(2999, ""), wire.CloseProtocolError},
		{"5000", code(5000, ""), wire.CloseProtocolError},
		{"reason not UTF-8", code(1000, "\xff\xfe"), wire.CloseInvalidPayload},
	}
	for _, mode := range []string{IOEpoll, IOGoroutine} {
		t.Run(mode, func(t *testing.T) {
			_, iss, addr := serveGateway(t, mode)
			tok, err := iss.Mint("u", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					nc, br, _, err := ws.Dialer{Timeout: 20 * time.Second}.Dial(context.Background(), "ws://"+addr+"/ws?token="+tok)
					if err != nil {
						t.Fatal(err)
					}
					defer nc.Close()
					if br == nil {
						br = bufio.NewReader(nc)
					}
					f := ws.NewFrame(ws.OpClose, true, bytes.Clone(tc.payload)) // masking works in place
					if err := ws.WriteFrame(nc, ws.MaskFrameInPlace(f)); err != nil {
						t.Fatal(err)
					}
					_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
					for {
						got, err := ws.ReadFrame(br)
						if err != nil {
							t.Fatalf("no close frame: %v", err)
						}
						if got.Header.OpCode != ws.OpClose {
							continue
						}
						if len(got.Payload) < 2 {
							t.Fatalf("close frame without a code: %x", got.Payload)
						}
						if c := binary.BigEndian.Uint16(got.Payload); c != tc.want {
							t.Fatalf("close code %d, want %d", c, tc.want)
						}
						return
					}
				})
			}
		})
	}
}
