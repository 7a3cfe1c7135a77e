package session

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-gw/herald/wire"
)

// wantRateLimited checks that err closes the connection with 4030.
func wantRateLimited(t *testing.T, err error) {
	t.Helper()
	var pe *wire.ProtocolError
	if !errors.As(err, &pe) || pe.Code != wire.CloseRateLimited || pe.Reason != "message rate exceeded" {
		t.Fatalf("past the limit: %v, want close %d \"message rate exceeded\"", err, wire.CloseRateLimited)
	}
}

// A client may send MessageBurst messages at once and MessageRate a
// second after that; one more closes it with 4030. Every kind of message
// counts — herald.v1 of any type, raw ones, WebSocket pings — except an
// ack that moves the acknowledged offset forward. The clock is the
// manager's, stepped by hand.
func TestMessageRateLimit(t *testing.T) {
	const rate, burst = 2, 5
	pingMsg := func(s *Session) error { return s.HandleMessage([]byte(`{"type":"ping"}`)) }
	cases := []struct {
		name   string
		format wire.Format
		send   func(s *Session) error
	}{
		{"herald.v1 ping", wire.FormatV1, pingMsg},
		{"herald.v1 unknown type", wire.FormatV1, func(s *Session) error { return s.HandleMessage([]byte(`{"type":"nope"}`)) }},
		{"herald.v1 field of the wrong type", wire.FormatV1, func(s *Session) error { return s.HandleMessage([]byte(`{"type":"ack","offset":"1"}`)) }},
		{"herald.v1 ack that moves nothing", wire.FormatV1, func(s *Session) error { return s.HandleMessage([]byte(`{"type":"ack","offset":0}`)) }},
		{"herald.v1 ack of an offset never sent", wire.FormatV1, func(s *Session) error { return s.HandleMessage([]byte(`{"type":"ack","offset":99}`)) }},
		{"herald.v1 refresh", wire.FormatV1, func(s *Session) error { return s.HandleMessage([]byte(`{"type":"refresh","token":"x"}`)) }},
		{"raw message", wire.FormatRaw, func(s *Session) error { return s.HandleMessage([]byte("anything")) }},
		{"WebSocket ping", wire.FormatRaw, func(s *Session) error { return s.CountPing() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{MessageRate: rate, MessageBurst: burst})
			tr := &testTransport{}
			s := f.open(t, tr, Params{Format: tc.format})
			for i := range burst {
				if err := tc.send(s); err != nil {
					t.Fatalf("message %d of the burst: %v", i+1, err)
				}
			}
			wantRateLimited(t, tc.send(s))

			// A second later the rate's worth is allowed again, and no more.
			s = f.open(t, &testTransport{}, Params{Format: tc.format})
			for range burst {
				if err := tc.send(s); err != nil {
					t.Fatal(err)
				}
			}
			f.clock.Advance(time.Second)
			for i := range rate {
				if err := tc.send(s); err != nil {
					t.Fatalf("message %d after a second: %v", i+1, err)
				}
			}
			wantRateLimited(t, tc.send(s))
		})
	}
}

// A client that acks every message it is sent, however many, is never
// closed for it: an ack that moves the acknowledged offset forward is
// free, since there cannot be more of them than messages sent.
func TestAdvancingAcksAreFree(t *testing.T) {
	f := newFixture(t, Config{MessageRate: 1, MessageBurst: 2})
	tr := &testTransport{}
	s := f.open(t, tr, Params{Format: wire.FormatV1})
	msgs := f.appendN(t, "u", 50, 10)
	for _, m := range msgs {
		s.Send(wire.Encode(wire.FormatV1, m), m.Offset)
		if err := s.HandleMessage(fmt.Appendf(nil, `{"type":"ack","offset":%d}`, m.Offset)); err != nil {
			t.Fatalf("ack of %d: %v", m.Offset, err)
		}
	}
	if s.Acked() != 50 {
		t.Fatalf("acked %d, want 50", s.Acked())
	}
	// Repeating the last ack moves nothing: that one counts.
	for range 2 {
		if err := s.HandleMessage([]byte(`{"type":"ack","offset":50}`)); err != nil {
			t.Fatal(err)
		}
	}
	wantRateLimited(t, s.HandleMessage([]byte(`{"type":"ack","offset":50}`)))
}

// A negative MessageRate turns the limit off; zero takes the defaults.
func TestMessageRateSettings(t *testing.T) {
	f := newFixture(t, Config{MessageRate: -1})
	s := f.open(t, &testTransport{}, Params{Format: wire.FormatV1})
	for i := range 10 * DefaultMessageBurst {
		if err := s.HandleMessage([]byte(`{"type":"ping"}`)); err != nil {
			t.Fatalf("message %d without a limit: %v", i+1, err)
		}
	}
	if s.lim != nil {
		t.Fatal("a limiter was made for a session without a limit")
	}

	f = newFixture(t, Config{})
	if c := f.m.Config(); c.MessageRate != DefaultMessageRate || c.MessageBurst != DefaultMessageBurst {
		t.Fatalf("defaults %v/s burst %d, want %v/s burst %d", c.MessageRate, c.MessageBurst, DefaultMessageRate, DefaultMessageBurst)
	}
	s = f.open(t, &testTransport{}, Params{Format: wire.FormatV1})
	if s.lim != nil {
		t.Fatal("a limiter was made before the client sent anything")
	}
	for range DefaultMessageBurst {
		if err := s.HandleMessage([]byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
	}
	wantRateLimited(t, s.HandleMessage([]byte(`{"type":"ping"}`)))
}
