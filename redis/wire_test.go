package redis

import (
	"bytes"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

// wireCases are envelopes of every kind and edge the encoder must carry.
func wireCases() []envelope {
	zone := time.FixedZone("UTC+05:30", 5*3600+1800)
	return []envelope{
		{node: "n1", kind: kindMessages, msgs: []*herald.Message{
			{ID: "a", User: "42", Offset: 1, Epoch: "e", Time: time.Date(2025, 3, 4, 5, 6, 7, 891011121, zone), Data: []byte(`{"x":1}`)},
			{ID: "b", User: "42", Offset: math.MaxUint64, Epoch: "e", Time: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Data: []byte{}},
			{ID: "", User: "42", Offset: 3, Epoch: "other", Time: time.Date(1600, 1, 1, 0, 0, 0, 999999999, time.UTC)},
		}},
		{node: "", kind: kindMessages, msgs: []*herald.Message{
			{ID: "ü", User: "user ✓ with spaces/é", Offset: 1<<53 + 1, Epoch: "e", Time: time.Now(), Data: []byte{0xff, 0, 0x80}},
		}},
		{node: "n2", kind: kindBroadcast, broadcast: &herald.Message{Data: []byte("bare")}},
		{node: "n2", kind: kindBroadcast, broadcast: &herald.Message{ID: "b", User: "u", Offset: 7, Epoch: "e",
			Time: time.Date(2262, 4, 12, 0, 0, 0, 1, time.UTC), Data: bytes.Repeat([]byte{7}, 70000)}},
		{node: "n3", kind: kindControl, control: herald.Control{Kind: herald.ControlPush, User: "42", Data: []byte(`{}`)}},
		{node: "n3", kind: kindControl, control: herald.Control{Kind: herald.ControlDisconnectConn, User: "43", Conn: "c3",
			Code: math.MaxUint16, Reason: "policy ✓", Data: []byte{}}},
	}
}

func encode(e envelope) []byte {
	switch e.kind {
	case kindMessages:
		return encodeMessages(nil, e.node, e.msgs[0].User, e.msgs)
	case kindBroadcast:
		return encodeBroadcast(nil, e.node, e.broadcast)
	default:
		return encodeControl(nil, e.node, e.control)
	}
}

// normalise gives the times of e the form decoding produces (UTC, no
// monotonic reading), so that decoded and original compare with DeepEqual.
func normalise(e envelope) envelope {
	for i, m := range e.msgs {
		c := *m
		c.Time = m.Time.UTC().Round(0)
		e.msgs[i] = &c
	}
	if e.broadcast != nil {
		c := *e.broadcast
		c.Time = c.Time.UTC().Round(0)
		e.broadcast = &c
	}
	return e
}

// TestWireRoundTrip checks that every field comes back exactly, times to
// the nanosecond in UTC, nil payloads as nil and empty ones as empty.
func TestWireRoundTrip(t *testing.T) {
	for _, want := range wireCases() {
		t.Run(want.kind.String(), func(t *testing.T) {
			p := encode(want)
			got, err := decode(p)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := normalise(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decode(encode(e)) =\n\t%+v\nwant\n\t%+v", got, want)
			}
			for _, m := range got.msgs {
				if m.Time.Location() != time.UTC {
					t.Errorf("time %v not in UTC", m.Time)
				}
			}
		})
	}
}

// TestWireRejects checks that decode refuses what no Herald node sends.
func TestWireRejects(t *testing.T) {
	ok := encodeMessages(nil, "n", "u", []*herald.Message{{ID: "a", User: "u", Offset: 1, Epoch: "e"}})
	cases := []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"other version", append([]byte{2}, ok[1:]...)},
		{"unknown kind", append([]byte{wireVersion, 9}, ok[2:]...)},
		{"truncated", ok[:len(ok)-1]},
		{"trailing bytes", append(append([]byte{}, ok...), 0)},
		{"no messages", append(appendString(appendHeader(nil, kindMessages, "n"), "u"), 0)},
		{"huge count", append(appendString(appendHeader(nil, kindMessages, "n"), "u"), 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"uncommitted message", encodeMessages(nil, "n", "u", []*herald.Message{{ID: "a", User: "u"}})},
		{"no user", encodeMessages(nil, "n", "", []*herald.Message{{ID: "a", Offset: 1, Epoch: "e"}})},
		{"nanoseconds out of range", func() []byte {
			p := appendString(appendHeader(nil, kindBroadcast, "n"), "")
			p = appendString(p, "")
			p = append(p, 0)
			p = appendString(p, "")
			p = append(p, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03) // 1e9 ns
			return append(p, 0)
		}()},
		{"invalid control", encodeControl(nil, "n", herald.Control{Kind: 0, User: "u"})},
		{"control without connection", encodeControl(nil, "n", herald.Control{Kind: herald.ControlPostToConn, User: "u"})},
		{"close code out of range", func() []byte {
			p := appendHeader(nil, kindControl, "n")
			p = append(p, byte(herald.ControlDisconnectConn))
			p = appendString(p, "")
			p = appendString(p, "c")
			p = append(p, 0x80, 0x80, 0x04) // 65536
			p = appendString(p, "")
			return append(p, 0)
		}()},
	}
	for _, tc := range cases {
		if e, err := decode(tc.p); err == nil {
			t.Errorf("%s: decoded %+v, want an error", tc.name, e)
		}
	}
}

// FuzzDecode feeds decode arbitrary bytes, as anything publishing under the
// prefix could: it must never panic, and what it accepts must survive
// another round trip unchanged.
func FuzzDecode(f *testing.F) {
	for _, e := range wireCases() {
		f.Add(encode(e))
	}
	f.Add([]byte{})
	f.Add([]byte{wireVersion, byte(kindMessages), 0, 1, 'u', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := decode(p)
		if err != nil {
			return
		}
		again, err := decode(encode(e))
		if err != nil {
			t.Fatalf("decode accepted %x but not its re-encoding: %v", p, err)
		}
		if !reflect.DeepEqual(again, normalise(e)) {
			t.Fatalf("round trip changed the envelope:\n\t%+v\n\t%+v", e, again)
		}
	})
}
