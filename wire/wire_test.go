package wire

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-gw/herald"
)

// clientFrame builds a masked client frame with gobwas/ws, an independent
// implementation of the framing.
func clientFrame(t *testing.T, fin bool, op ws.OpCode, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f = ws.MaskFrameInPlace(f)
	if err := ws.WriteFrame(&buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseHeader(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 70000)
	for _, tc := range []struct {
		name     string
		frame    []byte
		max      int
		wantOK   bool
		wantCode uint16
		wantLen  int
	}{
		{"small text", clientFrame(t, true, ws.OpText, []byte("hi")), 1024, true, 0, 2},
		{"16-bit length", clientFrame(t, true, ws.OpBinary, big[:300]), 1024, true, 0, 300},
		{"64-bit length", clientFrame(t, true, ws.OpBinary, big), 1 << 20, true, 0, len(big)},
		{"too big 16-bit", clientFrame(t, true, ws.OpText, big[:2000]), 1024, false, CloseTooBig, 0},
		{"too big 64-bit", clientFrame(t, true, ws.OpText, big), 1024, false, CloseTooBig, 0},
		{"short", []byte{0x81}, 1024, false, 0, 0},
		{"short extended length", []byte{0x81, 0xFE, 0x01}, 1024, false, 0, 0},
		{"unmasked", Frame(OpText, []byte("x")), 1024, false, CloseProtocolError, 0},
		{"reserved bits", []byte{0xC1, 0x80, 0, 0, 0, 0}, 1024, false, CloseProtocolError, 0},
		{"unknown opcode", []byte{0x83, 0x80, 0, 0, 0, 0}, 1024, false, CloseProtocolError, 0},
		{"fragmented ping", clientFrame(t, false, ws.OpPing, nil), 1024, false, CloseProtocolError, 0},
		// A 64-bit length must have its top bit clear (§5.2); once it was
		// converted to a negative int and, with a negative limit, passed.
		{"64-bit length top bit", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 1 << 20, false, CloseProtocolError, 0},
		{"ping top bit, negative limit", []byte{0x89, 0xFF, 0xFF, '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0'}, -32, false, CloseProtocolError, 0},
		// A control frame too long is a protocol error whatever the data limit.
		{"ping 64-bit length", []byte{0x89, 0xFF, 0, 0, 0, 0, 0, 0, 0x10, 0, 1, 2, 3, 4}, 1024, false, CloseProtocolError, 0},
		{"negative limit counts as 0", clientFrame(t, true, ws.OpText, []byte("hi")), -1, false, CloseTooBig, 0},
		{"negative limit, empty frame", clientFrame(t, true, ws.OpText, nil), -1, true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok, err := ParseHeader(tc.frame, tc.max)
			if tc.wantCode != 0 {
				pe, isPE := err.(*ProtocolError)
				if !isPE || pe.Code != tc.wantCode {
					t.Fatalf("err = %v, want close %d", err, tc.wantCode)
				}
				return
			}
			if err != nil || ok != tc.wantOK {
				t.Fatalf("ok=%v err=%v", ok, err)
			}
			if !ok {
				return
			}
			if h.Length != tc.wantLen || h.Size+h.Length != len(tc.frame) {
				t.Fatalf("header %+v for %d-byte frame", h, len(tc.frame))
			}
			p := append([]byte(nil), tc.frame[h.Size:]...)
			Unmask(p, h.Mask)
			if !bytes.Equal(p, big[:len(p)]) && !bytes.Equal(p, []byte("hi")) {
				t.Fatalf("payload did not unmask")
			}
		})
	}
}

// Server frames must parse with an independent reader.
func TestServerFramesRoundTrip(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte("z"), n)
		f, err := ws.ReadFrame(bytes.NewReader(DataFrame(p)))
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpText || !f.Header.Fin || f.Header.Masked || !bytes.Equal(f.Payload, p) {
			t.Fatalf("n=%d: header %+v", n, f.Header)
		}
	}
	if f, _ := ws.ReadFrame(bytes.NewReader(DataFrame([]byte{0xff}))); f.Header.OpCode != ws.OpBinary {
		t.Fatalf("invalid UTF-8 must go as binary, got %v", f.Header.OpCode)
	}
	f, _ := ws.ReadFrame(bytes.NewReader(CloseFrame(4008, "send queue full")))
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if code != 4008 || reason != "send queue full" {
		t.Fatalf("close %d %q", code, reason)
	}
}

func TestEnvelope(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		m    herald.Message
		want string
	}{
		{"stored", herald.Message{ID: "a1", Offset: 17, Epoch: "e", Time: ts, Data: []byte(`{"x":1}`)},
			`{"type":"message","id":"a1","offset":17,"epoch":"e","ts":"2026-01-02T03:04:05Z","data":{"x":1}}`},
		{"not stored", herald.Message{ID: "a2", Data: []byte(`[1]`)}, `{"type":"message","id":"a2","data":[1]}`},
		{"not JSON", herald.Message{ID: "a3", Data: []byte(`hello "you"`)}, `{"type":"message","id":"a3","data":"hello \"you\""}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendEnvelope(nil, &tc.m))
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatal("invalid JSON")
			}
		})
	}
}

func BenchmarkMessageFrame(b *testing.B) {
	m := &herald.Message{ID: "0190aabbccdd00112233445566", Offset: 12345, Epoch: "abcdef0123456789", Time: time.Now(), Data: []byte(`{"type":"order.shipped","order":123456,"eta":"2026-12-01"}`)}
	for _, p := range []herald.Protocol{herald.ProtocolRaw, herald.ProtocolV1} {
		b.Run(p.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = MessageFrame(m, p)
			}
		})
	}
}
