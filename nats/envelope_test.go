package nats

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

// encodeEnvelope encodes env as the Broker would (messages in one
// envelope, whatever their size).
func encodeEnvelope(env envelope) []byte {
	b := appendHeader(nil, env.kind, env.node)
	switch env.kind {
	case kindMessages:
		b = appendUser(b, env.msgs[0].User)
		for _, m := range env.msgs {
			b = appendBatched(b, m)
		}
	case kindBroadcast:
		b = appendBroadcast(b, env.msgs[0])
	case kindControl:
		b = appendControl(b, env.control)
	}
	return b
}

// sameEnvelope reports whether two envelopes hold the same values: times
// by instant, payloads by bytes and nil-ness.
func sameEnvelope(a, b envelope) bool {
	if a.node != b.node || a.kind != b.kind || len(a.msgs) != len(b.msgs) {
		return false
	}
	for i := range a.msgs {
		x, y := *a.msgs[i], *b.msgs[i]
		if !x.Time.Equal(y.Time) || !bytes.Equal(x.Data, y.Data) || (x.Data == nil) != (y.Data == nil) {
			return false
		}
		x.Time, y.Time, x.Data, y.Data = time.Time{}, time.Time{}, nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	ca, cb := a.control, b.control
	if !bytes.Equal(ca.Data, cb.Data) || (ca.Data == nil) != (cb.Data == nil) {
		return false
	}
	ca.Data, cb.Data = nil, nil
	return reflect.DeepEqual(ca, cb)
}

func roundTripCases() []struct {
	name string
	env  envelope
} {
	zone := time.FixedZone("UTC+05:30", 5*3600+1800)
	msg := func(id string, off uint64, t time.Time, data []byte) *herald.Message {
		return &herald.Message{ID: id, User: "user ✓.*>", Offset: off, Epoch: "e1", Time: t, Data: data}
	}
	return []struct {
		name string
		env  envelope
	}{
		{"messages", envelope{node: "n1", kind: kindMessages, msgs: []*herald.Message{
			msg("a", 1, time.Date(2025, 3, 4, 5, 6, 7, 891011121, zone), []byte(`{"x":1}`)),
			msg("b", 2, time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), []byte{0xff, 0}),
			msg("", math.MaxUint64, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), []byte{}),
			msg("nil", 1<<53+1, time.Time{}, nil),
		}}},
		{"broadcast, zero time and no id", envelope{node: "n2", kind: kindBroadcast, msgs: []*herald.Message{{Data: []byte("bare")}}}},
		{"broadcast with every field", envelope{node: "", kind: kindBroadcast, msgs: []*herald.Message{
			{ID: "b", User: "u", Offset: 3, Epoch: "e", Time: time.Date(2025, 1, 1, 0, 0, 0, 1, time.UTC), Data: nil}}}},
		{"push", envelope{node: "n", kind: kindControl, control: herald.Control{Kind: herald.ControlPush, User: "42", Data: []byte(`{}`)}}},
		{"disconnect user", envelope{node: "n", kind: kindControl, control: herald.Control{Kind: herald.ControlDisconnectUser, User: "u", Code: 4001, Reason: "revoked ✓"}}},
		{"post to conn", envelope{node: "n", kind: kindControl, control: herald.Control{Kind: herald.ControlPostToConn, Conn: "c=", Data: []byte{}}}},
		{"disconnect conn, every field", envelope{node: "n", kind: kindControl, control: herald.Control{
			Kind: herald.ControlDisconnectConn, User: "u", Conn: "c", Code: math.MaxUint16, Reason: "r", Data: []byte("x")}}},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := encodeEnvelope(tc.env)
			got, err := decode(p)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !sameEnvelope(got, tc.env) {
				t.Fatalf("decoded %+v, want %+v", got, tc.env)
			}
			for _, m := range got.msgs {
				// The zero time comes back as the zero value, so IsZero
				// and == work on the receiving side too.
				if m.Time.IsZero() && m.Time != (time.Time{}) {
					t.Errorf("zero time decoded as %#v", m.Time)
				}
				if m.Time.Location() != time.UTC {
					t.Errorf("time decoded in %v, want UTC", m.Time.Location())
				}
			}
			// A receiver appending to one payload must not overwrite the
			// next one, which shares the NATS message's memory.
			if len(got.msgs) > 1 && got.msgs[0].Data != nil && cap(got.msgs[0].Data) != len(got.msgs[0].Data) {
				t.Errorf("payload capacity %d beyond its length %d", cap(got.msgs[0].Data), len(got.msgs[0].Data))
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := encodeEnvelope(roundTripCases()[0].env)
	control := func(c herald.Control) []byte {
		return encodeEnvelope(envelope{node: "n", kind: kindControl, control: c})
	}
	messages := func(m herald.Message) []byte {
		return encodeEnvelope(envelope{node: "n", kind: kindMessages, msgs: []*herald.Message{&m}})
	}
	tests := []struct {
		name, want string
		p          []byte
	}{
		{"empty", "ends early", nil},
		{"other version", "version 2", append([]byte{2}, valid[1:]...)},
		{"unknown kind", "kind 9", append([]byte{envelopeVersion, 9}, valid[2:]...)},
		{"truncated", "ends early", valid[:len(valid)-1]},
		{"node length past the end", "ends early", []byte{envelopeVersion, byte(kindMessages), 50, 'n'}},
		{"overlong varint", "malformed varint", append([]byte{envelopeVersion, byte(kindMessages)}, bytes.Repeat([]byte{0xff}, 11)...)},
		{"no messages", "has none", appendUser(appendHeader(nil, kindMessages, "n"), "u")},
		{"no user", "no user", appendUser(appendHeader(nil, kindMessages, "n"), "")},
		{"message without offset", "not committed", messages(herald.Message{User: "u", Epoch: "e"})},
		{"message without epoch", "not committed", messages(herald.Message{User: "u", Offset: 1})},
		{"nanoseconds out of range", "nanoseconds", func() []byte {
			b := appendBroadcast(appendHeader(nil, kindBroadcast, "n"), &herald.Message{})
			// The broadcast ends with time (sec, nsec=0) and data (nil):
			// replace nsec by 10^9.
			b = binary.AppendUvarint(b[:len(b)-2], uint64(time.Second))
			return append(b, 0)
		}()},
		{"trailing bytes", "trailing", append(encodeEnvelope(roundTripCases()[1].env), 0)},
		{"invalid control kind", "not valid", control(herald.Control{Kind: 9, User: "u"})},
		{"push without user", "no user", control(herald.Control{Kind: herald.ControlPush})},
		{"post without connection", "no connection", control(herald.Control{Kind: herald.ControlPostToConn, User: "u"})},
		{"close code beyond 16 bits", "close code", func() []byte {
			b := append(appendHeader(nil, kindControl, "n"), byte(herald.ControlDisconnectConn))
			b = appendString(appendString(b, ""), "c")
			b = append(b, 0x80, 0x80, 0x04) // 65536
			return append(appendString(b, ""), 0)
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// FuzzDecode feeds decode arbitrary bytes, as anything that can publish on
// the subjects can. It must never panic, and what it accepts must encode
// back to an envelope that decodes to the same values.
func FuzzDecode(f *testing.F) {
	for _, tc := range roundTripCases() {
		f.Add(encodeEnvelope(tc.env))
	}
	f.Add([]byte{envelopeVersion, byte(kindMessages), 0, 1, 'u'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		env, err := decode(p)
		if err != nil {
			return
		}
		switch env.kind {
		case kindMessages:
			if len(env.msgs) == 0 {
				t.Fatal("accepted an envelope of no messages")
			}
			if err := herald.CheckCommitted(env.msgs); err != nil {
				t.Fatalf("accepted messages the contract forbids: %v", err)
			}
		case kindBroadcast:
			if len(env.msgs) != 1 {
				t.Fatalf("broadcast of %d messages", len(env.msgs))
			}
		case kindControl:
			if err := herald.CheckControl(env.control); err != nil {
				t.Fatalf("accepted a control the contract forbids: %v", err)
			}
		}
		again, err := decode(encodeEnvelope(env))
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if !sameEnvelope(again, env) {
			t.Fatalf("round trip changed %+v into %+v", env, again)
		}
	})
}

func TestUserToken(t *testing.T) {
	users := []herald.UserID{"42", "a.b", "*", ">", "a b\tc", "user ✓ with spaces/é", "..", "-_", herald.UserID(strings.Repeat("é", herald.MaxUserIDLen/2))}
	seen := map[string]herald.UserID{}
	for _, u := range users {
		tok := userToken(u)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Errorf("user %q: token %q is not one plain subject token", u, tok)
		}
		if len(tok) > 342 {
			t.Errorf("user %q: token of %d bytes", u, len(tok))
		}
		if o, ok := seen[tok]; ok {
			t.Errorf("users %q and %q share token %q", o, u, tok)
		}
		seen[tok] = u
	}
	s := subjects{prefix: "p.q"}
	if got, want := s.user("a.b"), "p.q.u.YS5i"; got != want {
		t.Errorf("user subject %q, want %q", got, want)
	}
	if got := s.control(herald.Control{Kind: herald.ControlPostToConn, User: "u", Conn: "c"}); got != "p.q.c" {
		t.Errorf("connection control on %q, want p.q.c", got)
	}
	if got := s.control(herald.Control{Kind: herald.ControlPush, User: "u"}); got != s.user("u") {
		t.Errorf("user control on %q, want the user's subject %q", got, s.user("u"))
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"herald", true},
		{"herald_test_0a1b.x-y", true},
		{"", false},
		{".herald", false},
		{"herald.", false},
		{"a..b", false},
		{"a.*", false},
		{"a.>", false},
		{"a b", false},
		{"a\tb", false},
	} {
		if err := checkPrefix(tc.prefix); (err == nil) != tc.ok {
			t.Errorf("checkPrefix(%q) = %v, want ok %v", tc.prefix, err, tc.ok)
		}
	}
}
