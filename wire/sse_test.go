package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

func TestEvent(t *testing.T) {
	cases := []struct {
		name, event, id, data, want string
	}{
		{"message", "", "", `{"a":1}`, "data: {\"a\":1}\n\n"},
		{"named with id", "reset", "e:4", `{}`, "event: reset\nid: e:4\ndata: {}\n\n"},
		{"empty data", "x", "", ``, "event: x\ndata: \n\n"},
		// A data field cannot hold a line break: each line gets its own
		// data: line, and EventSource joins them with \n again.
		{"LF", "", "", "{\n\"a\":1\n}", "data: {\ndata: \"a\":1\ndata: }\n\n"},
		{"CRLF", "", "", "a\r\nb", "data: a\ndata: b\n\n"},
		{"CR", "", "", "a\rb", "data: a\ndata: b\n\n"},
		{"trailing newline", "", "", "a\n", "data: a\ndata: \n\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(Event(tc.event, tc.id, []byte(tc.data))); got != tc.want {
				t.Fatalf("Event = %q, want %q", got, tc.want)
			}
		})
	}
}

// A stored message's event carries "<epoch>:<offset>" as its id, so the
// browser's reconnect resumes from it; an unstored one carries none.
func TestMessageEvent(t *testing.T) {
	ts := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	stored := string(MessageEvent(&herald.Message{ID: "m", Offset: 17, Epoch: "ep", Time: ts, Data: []byte(`{"x":1}`)}))
	want := "id: ep:17\ndata: {\"type\":\"message\",\"id\":\"m\",\"offset\":17,\"epoch\":\"ep\",\"ts\":\"2026-11-26T08:00:00Z\",\"data\":{\"x\":1}}\n\n"
	if stored != want {
		t.Fatalf("stored: %q, want %q", stored, want)
	}
	unstored := string(MessageEvent(&herald.Message{ID: "b", Time: ts, Data: []byte(`1`)}))
	if strings.Contains(unstored, "id:") || !strings.HasPrefix(unstored, "data: ") {
		t.Fatalf("unstored: %q", unstored)
	}
	// A payload that is not JSON is embedded as a JSON string: no raw
	// line break can reach the event.
	odd := string(MessageEvent(&herald.Message{ID: "c", Time: ts, Data: []byte("two\nlines")}))
	if strings.Count(odd, "data: ") != 1 {
		t.Fatalf("non-JSON payload split the event: %q", odd)
	}
}

func TestEncodeAndControlPerFormat(t *testing.T) {
	m := &herald.Message{ID: "m", Offset: 1, Epoch: "e", Data: []byte(`{}`)}
	if got := Encode(FormatRaw, m); string(got[2:]) != `{}` {
		t.Fatalf("raw: %q", got)
	}
	if got := Encode(FormatV1, m); !strings.HasPrefix(string(got[2:]), `{"type":"message"`) {
		t.Fatalf("v1: %q", got)
	}
	if got := Encode(FormatSSE, m); !strings.HasPrefix(string(got), "id: e:1\n") {
		t.Fatalf("sse: %q", got)
	}
	body := []byte(`{"type":"reconnect"}`)
	if Control(FormatRaw, "reconnect", body) != nil {
		t.Fatal("raw connections got a control message")
	}
	if got := Control(FormatV1, "reconnect", body); string(got[2:]) != string(body) || got[0] != 0x80|OpText {
		t.Fatalf("v1 control: %q", got)
	}
	if got := string(Control(FormatSSE, "reconnect", body)); got != "event: reconnect\ndata: {\"type\":\"reconnect\"}\n\n" {
		t.Fatalf("sse control: %q", got)
	}
	if got := string(SSERetry(2000)); got != "retry: 2000\n\n" {
		t.Fatalf("retry: %q", got)
	}
}

func TestCloseEvent(t *testing.T) {
	for _, reason := range []string{"token expired", `a "quoted" \ reason`, "tab\tand\nline", "bad \xff utf-8", "ünïcode"} {
		ev := string(CloseEvent(4001, reason))
		data, ok := strings.CutPrefix(ev, "event: close\ndata: ")
		if !ok || !strings.HasSuffix(data, "\n\n") {
			t.Fatalf("event %q", ev)
		}
		var got struct {
			Type   string `json:"type"`
			Code   uint16 `json:"code"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSuffix(data, "\n\n")), &got); err != nil {
			t.Fatalf("%q: %v", ev, err)
		}
		want := strings.ToValidUTF8(reason, "\uFFFD")
		if got.Type != "close" || got.Code != 4001 || got.Reason != want {
			t.Fatalf("decoded %+v from %q", got, ev)
		}
	}
}
