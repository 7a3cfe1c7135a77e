package session

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/herald-gw/herald/wire"
)

// FuzzHandleMessage feeds arbitrary client messages to a herald.v1
// session: it never panics, refuses what is not JSON with 1003 and
// nothing else, and everything it answers is a JSON object with a type.
func FuzzHandleMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"ping"}`, `{"type":"pong"}`, `{"type":"ack","offset":1}`, `{"type":"ack"}`,
		`{"type":"ack","offset":18446744073709551615}`, `{"type":"resume","since":0,"epoch":"e"}`,
		`{"type":"resume"}`, `{"type":"refresh","token":"x.y.z"}`, `{"type":"nope"}`, `[]`, `null`,
		`{"type":1}`, `{"offset":-1,"type":"ack"}`, `not json`, ``,
	} {
		f.Add([]byte(seed), []byte(`{"type":"ack","offset":2}`))
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		fx := newFixture(t, Config{})
		tr := &testTransport{}
		s := fx.open(t, tr, Params{Format: wire.FormatV1})
		msgs := fx.appendN(t, "u", 3, 10)
		s.Send(wire.Encode(wire.FormatV1, msgs[0]), 1)
		for _, p := range [][]byte{first, second} {
			err := s.HandleMessage(p)
			var pe *wire.ProtocolError
			switch {
			case err == nil:
			case errors.As(err, &pe) && pe.Code == wire.CloseUnsupported:
				if json.Valid(p) && len(p) > 0 && p[0] == '{' {
					t.Fatalf("a JSON object was refused: %q", p)
				}
			default:
				t.Fatalf("HandleMessage(%q) = %v", p, err)
			}
		}
		if s.Acked() > 1 {
			t.Fatalf("acked %d; only offset 1 was sent", s.Acked())
		}
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, fr := range tr.frames {
			var m struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(framePayload(fr), &m); err != nil || m.Type == "" {
				t.Fatalf("answer is not a typed JSON object: %q", framePayload(fr))
			}
		}
	})
}
