package schematest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A connection id as the gateway makes them: 12 random bytes, base64url.
const connID = "Zm9vYmFyYmF6cXV4"

// example is one message and what the schema must say about it. want is
// "" for a valid message; for an invalid one it names the reason: a
// JSON Schema keyword the mismatch comes from ("minimum", "required", …)
// or, for what Check says itself, a piece of its error text. Naming the
// reason keeps an invalid example from passing for the wrong one, say a
// typo elsewhere in it.
type example struct {
	name string
	kind string // Check's kind
	msg  string
	want string
}

var examples = []example{
	// herald.v1, server → client.
	{"stored message", "ServerMessage", `{"type":"message","id":"019ab2c3d4e5f60718293a4b5c","offset":17,"epoch":"3f9c0d1e2a4b5c6d","ts":"2026-11-25T12:00:00.123Z","data":{"message":"hi"}}`, ""},
	{"unstored message", "ServerMessage", `{"type":"message","id":"019ab2c3d4e5f60718293a4b5c","ts":"2026-11-25T12:00:00Z","data":"not JSON, so a string"}`, ""},
	{"message with null data", "ServerMessage", `{"type":"message","id":"a","offset":1,"epoch":"e","ts":"2026-11-25T12:00:00.123456789+01:00","data":null}`, ""},
	{"message with array data", "ServerMessage", `{"type":"message","id":"a","ts":"2026-11-25T12:00:00Z","data":[1,{"a":[]}]}`, ""},
	{"message at offset 2^64-1", "ServerMessage", `{"type":"message","id":"a","offset":18446744073709551615,"epoch":"e","ts":"2026-11-25T12:00:00Z","data":0}`, ""},
	{"message without id", "ServerMessage", `{"type":"message","ts":"2026-11-25T12:00:00Z","data":1}`, "required"},
	{"message with empty id", "ServerMessage", `{"type":"message","id":"","ts":"2026-11-25T12:00:00Z","data":1}`, "minLength"},
	{"message without ts", "ServerMessage", `{"type":"message","id":"a","data":1}`, "required"},
	{"message without data", "ServerMessage", `{"type":"message","id":"a","ts":"2026-11-25T12:00:00Z"}`, "required"},
	{"message with offset, without epoch", "ServerMessage", `{"type":"message","id":"a","offset":17,"ts":"2026-11-25T12:00:00Z","data":1}`, "dependentRequired"},
	{"message with epoch, without offset", "ServerMessage", `{"type":"message","id":"a","epoch":"e","ts":"2026-11-25T12:00:00Z","data":1}`, "dependentRequired"},
	{"message with empty epoch", "ServerMessage", `{"type":"message","id":"a","offset":17,"epoch":"","ts":"2026-11-25T12:00:00Z","data":1}`, "minLength"},
	{"message at offset 0", "ServerMessage", `{"type":"message","id":"a","offset":0,"epoch":"e","ts":"2026-11-25T12:00:00Z","data":1}`, "minimum"},
	{"message with a string offset", "ServerMessage", `{"type":"message","id":"a","offset":"17","epoch":"e","ts":"2026-11-25T12:00:00Z","data":1}`, "type"},
	{"message with a fractional offset", "ServerMessage", `{"type":"message","id":"a","offset":1.5,"epoch":"e","ts":"2026-11-25T12:00:00Z","data":1}`, "type"},
	{"message beyond offset 2^64-1", "ServerMessage", `{"type":"message","id":"a","offset":18446744073709551616,"epoch":"e","ts":"2026-11-25T12:00:00Z","data":1}`, "maximum"},
	{"message with an extra field", "ServerMessage", `{"type":"message","id":"a","ts":"2026-11-25T12:00:00Z","data":1,"user":"42"}`, "additionalProperties"},
	{"message at hour 25", "ServerMessage", `{"type":"message","id":"a","ts":"2026-11-25T25:00:00Z","data":1}`, "format"},
	{"message with a date for ts", "ServerMessage", `{"type":"message","id":"a","ts":"2026-11-25","data":1}`, "format"},
	{"message without a time zone", "ServerMessage", `{"type":"message","id":"a","ts":"2026-11-25T12:00:00","data":1}`, "format"},
	{"message with a Unix time for ts", "ServerMessage", `{"type":"message","id":"a","ts":1764072000,"data":1}`, "type"},
	{"ping", "ServerMessage", `{"type":"ping"}`, ""},
	{"ping with an extra field", "ServerMessage", `{"type":"ping","t":1}`, "additionalProperties"},
	{"pong", "ServerMessage", `{"type":"pong"}`, ""},
	{"pong with an extra field", "ServerMessage", `{"type":"pong","t":1}`, "additionalProperties"},
	{"reset", "ServerMessage", `{"type":"reset","epoch":"3f9c0d1e2a4b5c6d","offset":17}`, ""},
	{"reset of an empty stream", "ServerMessage", `{"type":"reset","epoch":"3f9c0d1e2a4b5c6d","offset":0}`, ""},
	{"reset without epoch", "ServerMessage", `{"type":"reset","offset":17}`, "required"},
	{"reset at a negative offset", "ServerMessage", `{"type":"reset","epoch":"e","offset":-1}`, "minimum"},
	{"counts", "ServerMessage", `{"type":"counts","unread":2,"unseen":0}`, ""},
	{"counts after a mark", "ServerMessage", `{"type":"counts","unread":2,"unseen":0,"mark":"read","ids":["019ab2c3d4e5f60718293a4b5c"]}`, ""},
	{"counts with negative unread", "ServerMessage", `{"type":"counts","unread":-1,"unseen":0}`, "minimum"},
	{"counts with negative unseen", "ServerMessage", `{"type":"counts","unread":0,"unseen":-3}`, "minimum"},
	{"counts with a string count", "ServerMessage", `{"type":"counts","unread":"2","unseen":0}`, "type"},
	{"counts without unseen", "ServerMessage", `{"type":"counts","unread":2}`, "required"},
	{"counts with an unknown mark", "ServerMessage", `{"type":"counts","unread":2,"unseen":0,"mark":"unread","ids":["a"]}`, "enum"},
	{"counts with ids, without mark", "ServerMessage", `{"type":"counts","unread":2,"unseen":0,"ids":["a"]}`, "dependentRequired"},
	{"counts with numeric ids", "ServerMessage", `{"type":"counts","unread":2,"unseen":0,"mark":"seen","ids":[17]}`, "type"},
	{"reconnect", "ServerMessage", `{"type":"reconnect"}`, ""},
	{"reconnect with an extra field", "ServerMessage", `{"type":"reconnect","after":5}`, "additionalProperties"},
	{"refreshed", "ServerMessage", `{"type":"refreshed","expires":"2026-11-25T13:00:00Z"}`, ""},
	{"refreshed without expires", "ServerMessage", `{"type":"refreshed"}`, "required"},
	{"refreshed with a bad date", "ServerMessage", `{"type":"refreshed","expires":"tomorrow"}`, "format"},
	{"error unknown_type", "ServerMessage", `{"type":"error","code":"unknown_type","message":"unknown message type"}`, ""},
	{"error bad_resume", "ServerMessage", `{"type":"error","code":"bad_resume","message":"resume must be the first message and carry since"}`, ""},
	{"error invalid_token", "ServerMessage", `{"type":"error","code":"invalid_token","message":"token is for another user"}`, ""},
	{"error bad_ack", "ServerMessage", `{"type":"error","code":"bad_ack","message":"offset 99 was never sent"}`, ""},
	{"error with an unknown code", "ServerMessage", `{"type":"error","code":"invalid_json","message":"…"}`, "enum"},
	{"error without message", "ServerMessage", `{"type":"error","code":"bad_ack"}`, "required"},
	{"unknown server type", "ServerMessage", `{"type":"messages","id":"a","ts":"2026-11-25T12:00:00Z","data":1}`, `type "messages" is not a ServerMessage`},
	{"client type from the server", "ServerMessage", `{"type":"ack","offset":1}`, `type "ack" is not a ServerMessage`},
	{"SSE type on herald.v1", "ServerMessage", `{"type":"connected","connection_id":"` + connID + `","epoch":"e"}`, `type "connected" is not a ServerMessage`},
	{"server message without type", "ServerMessage", `{"unread":2,"unseen":0}`, `string member "type"`},
	{"server message with a numeric type", "ServerMessage", `{"type":1}`, `string member "type"`},
	{"server message that is an array", "ServerMessage", `[{"type":"ping"}]`, "is a JSON object"},
	{"server message cut short", "ServerMessage", `{"type":"ping"`, "not a JSON document"},
	{"two server messages", "ServerMessage", `{"type":"ping"}{"type":"ping"}`, "not a JSON document"},

	// herald.v1, client → server.
	{"client ping", "ClientMessage", `{"type":"ping"}`, ""},
	{"client ping with an extra field", "ClientMessage", `{"type":"ping","id":1}`, "additionalProperties"},
	{"client pong", "ClientMessage", `{"type":"pong"}`, ""},
	{"client pong with an extra field", "ClientMessage", `{"type":"pong","id":1}`, "additionalProperties"},
	{"ack", "ClientMessage", `{"type":"ack","offset":17}`, ""},
	{"ack of nothing", "ClientMessage", `{"type":"ack","offset":0}`, ""},
	{"ack at offset 2^64-1", "ClientMessage", `{"type":"ack","offset":18446744073709551615}`, ""},
	{"ack without offset", "ClientMessage", `{"type":"ack"}`, "required"},
	{"ack at a negative offset", "ClientMessage", `{"type":"ack","offset":-1}`, "minimum"},
	{"ack beyond offset 2^64-1", "ClientMessage", `{"type":"ack","offset":18446744073709551616}`, "maximum"},
	{"ack with a string offset", "ClientMessage", `{"type":"ack","offset":"17"}`, "type"},
	{"ack with a fractional offset", "ClientMessage", `{"type":"ack","offset":16.5}`, "type"},
	{"resume", "ClientMessage", `{"type":"resume","since":17,"epoch":"3f9c0d1e2a4b5c6d"}`, ""},
	{"resume without epoch", "ClientMessage", `{"type":"resume","since":0}`, ""},
	{"resume with an empty epoch", "ClientMessage", `{"type":"resume","since":0,"epoch":""}`, ""},
	{"resume without since", "ClientMessage", `{"type":"resume","epoch":"e"}`, "required"},
	{"resume since a negative offset", "ClientMessage", `{"type":"resume","since":-1}`, "minimum"},
	{"resume with a numeric epoch", "ClientMessage", `{"type":"resume","since":1,"epoch":5}`, "type"},
	{"resume with a misspelt epoch", "ClientMessage", `{"type":"resume","since":1,"epcoh":"e"}`, "additionalProperties"},
	{"refresh", "ClientMessage", `{"type":"refresh","token":"eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}`, ""},
	{"refresh without token", "ClientMessage", `{"type":"refresh"}`, "required"},
	{"refresh with an empty token", "ClientMessage", `{"type":"refresh","token":""}`, "minLength"},
	{"unknown client type", "ClientMessage", `{"type":"subscribe","topic":"x"}`, `type "subscribe" is not a ClientMessage`},
	{"server type from a client", "ClientMessage", `{"type":"reset","epoch":"e","offset":1}`, `type "reset" is not a ClientMessage`},
	{"client message that is a string", "ClientMessage", `"ping"`, "is a JSON object"},

	// Server-Sent Events: the data of each event.
	{"SSE stored message", "sse/message", `{"type":"message","id":"a","offset":17,"epoch":"3f9c0d1e2a4b5c6d","ts":"2026-11-25T12:00:00.123Z","data":{"message":"hi"}}`, ""},
	{"SSE unstored message", "sse/message", `{"type":"message","id":"a","ts":"2026-11-25T12:00:00.123Z","data":"broadcast"}`, ""},
	{"SSE message with offset, without epoch", "sse/message", `{"type":"message","id":"a","offset":17,"ts":"2026-11-25T12:00:00Z","data":1}`, "dependentRequired"},
	{"SSE message event carrying counts", "sse/message", `{"type":"counts","unread":2,"unseen":0}`, "const"},
	{"SSE connected", "sse/connected", `{"type":"connected","connection_id":"` + connID + `","epoch":"3f9c0d1e2a4b5c6d"}`, ""},
	{"SSE connected without epoch", "sse/connected", `{"type":"connected","connection_id":"` + connID + `"}`, "required"},
	{"SSE connected with a short id", "sse/connected", `{"type":"connected","connection_id":"abc","epoch":"e"}`, "pattern"},
	{"SSE connected with a base64 id", "sse/connected", `{"type":"connected","connection_id":"Zm9vYmFyYmF6cXV+","epoch":"e"}`, "pattern"},
	{"SSE connected with an extra field", "sse/connected", `{"type":"connected","connection_id":"` + connID + `","epoch":"e","user":"42"}`, "additionalProperties"},
	{"SSE reset", "sse/reset", `{"type":"reset","epoch":"e","offset":0}`, ""},
	{"SSE reset at a negative offset", "sse/reset", `{"type":"reset","epoch":"e","offset":-5}`, "minimum"},
	{"SSE counts", "sse/counts", `{"type":"counts","unread":0,"unseen":0,"mark":"archived","ids":["a","b"]}`, ""},
	{"SSE counts with negative unseen", "sse/counts", `{"type":"counts","unread":0,"unseen":-1}`, "minimum"},
	{"SSE reconnect", "sse/reconnect", `{"type":"reconnect"}`, ""},
	{"SSE reconnect carrying a ping", "sse/reconnect", `{"type":"ping"}`, "const"},
	{"SSE close on expiry", "sse/close", `{"type":"close","code":4001,"reason":"token expired"}`, ""},
	{"SSE close on drain", "sse/close", `{"type":"close","code":1012,"reason":"server restarting"}`, ""},
	{"SSE close without a reason text", "sse/close", `{"type":"close","code":1000,"reason":""}`, ""},
	{"SSE close with an unknown code", "sse/close", `{"type":"close","code":4002,"reason":"x"}`, "enum"},
	{"SSE close with a string code", "sse/close", `{"type":"close","code":"4001","reason":"token expired"}`, "enum"},
	{"SSE close without reason", "sse/close", `{"type":"close","code":4001}`, "required"},
	{"SSE close with a null reason", "sse/close", `{"type":"close","code":4001,"reason":null}`, "type"},
	{"unknown SSE event", "sse/ping", `{"type":"ping"}`, "no entry point #/$defs/sse/ping"},

	// POST /v1/ack.
	{"ack request", "AckRequest", `{"connection_id":"` + connID + `","offset":17}`, ""},
	{"ack request of nothing", "AckRequest", `{"connection_id":"` + connID + `","offset":0}`, ""},
	{"ack request without connection_id", "AckRequest", `{"offset":17}`, "required"},
	{"ack request without offset", "AckRequest", `{"connection_id":"` + connID + `"}`, "required"},
	{"ack request at a negative offset", "AckRequest", `{"connection_id":"` + connID + `","offset":-1}`, "minimum"},
	{"ack request with a string offset", "AckRequest", `{"connection_id":"` + connID + `","offset":"17"}`, "type"},
	{"ack request with a long id", "AckRequest", `{"connection_id":"` + connID + `A","offset":17}`, "pattern"},
	{"ack request with an extra field", "AckRequest", `{"connection_id":"` + connID + `","offset":17,"user_id":"42"}`, "additionalProperties"},
	{"ack request that is a herald.v1 ack", "AckRequest", `{"type":"ack","offset":17}`, "required"},
}

func TestExamples(t *testing.T) {
	t.Parallel()
	v := New(t)
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			err := v.Check(ex.kind, []byte(ex.msg))
			switch {
			case ex.want == "" && err != nil:
				t.Errorf("Check(%q, %s):\n%v\nwant it valid", ex.kind, ex.msg, err)
			case ex.want != "" && err == nil:
				t.Errorf("Check(%q, %s) = nil, want an error (%s)", ex.kind, ex.msg, ex.want)
			case ex.want != "" && !because(err, ex.want):
				t.Errorf("Check(%q, %s):\n%v\nwant it refused because of %s", ex.kind, ex.msg, err, ex.want)
			}
		})
	}
}

// because reports whether err is about want: a keyword of the schema that
// a leaf of the validation error comes from, or a piece of err's text.
func because(err error, want string) bool {
	if strings.Contains(err.Error(), want) {
		return true
	}
	var verr *jsonschema.ValidationError
	return errors.As(err, &verr) && slices.Contains(keywords(verr), want)
}

// keywords lists the schema keywords that the leaves of e come from.
func keywords(e *jsonschema.ValidationError) []string {
	if len(e.Causes) == 0 {
		return e.ErrorKind.KeywordPath()
	}
	var kws []string
	for _, c := range e.Causes {
		kws = append(kws, keywords(c)...)
	}
	return kws
}

// TestExamplesCoverEveryMessage keeps the table honest as the protocol
// grows: every type of every union, every SSE event and the ack body have
// a valid example and an invalid one.
func TestExamplesCoverEveryMessage(t *testing.T) {
	t.Parallel()
	v := New(t)
	type key struct{ kind, typ string }
	var need []key
	for kind, byType := range v.unions {
		for typ := range byType {
			need = append(need, key{kind, typ})
		}
	}
	for kind := range v.schemas {
		if strings.HasPrefix(kind, "sse/") || kind == "AckRequest" {
			need = append(need, key{kind, ""})
		}
	}
	if len(need) < 5+8+6+1 {
		t.Fatalf("only %d things to cover: the unions or SSE events were not found", len(need))
	}
	valid, invalid := map[key]bool{}, map[key]bool{}
	for _, ex := range examples {
		k := key{ex.kind, ""}
		if v.unions[ex.kind] != nil {
			var m struct{ Type string }
			_ = json.Unmarshal([]byte(ex.msg), &m)
			k.typ = m.Type
		}
		if ex.want == "" {
			valid[k] = true
		} else {
			invalid[k] = true
		}
	}
	for _, k := range need {
		if !valid[k] {
			t.Errorf("no valid example of %s %s", k.kind, k.typ)
		}
		if !invalid[k] {
			t.Errorf("no invalid example of %s %s", k.kind, k.typ)
		}
	}
}

// TestSSEEventPairs checks #/$defs/SSEEvent, the {event, data} model of a
// parsed event, against the per-event schemas: every valid data example
// is valid with its event name, and invalid with another.
func TestSSEEventPairs(t *testing.T) {
	t.Parallel()
	v := New(t)
	n := 0
	for _, ex := range examples {
		event, ok := strings.CutPrefix(ex.kind, "sse/")
		if !ok || ex.want != "" {
			continue
		}
		n++
		pair := fmt.Sprintf(`{"event":%q,"data":%s}`, event, ex.msg)
		if err := v.Check("SSEEvent", []byte(pair)); err != nil {
			t.Errorf("%s: %s:\n%v", ex.name, pair, err)
		}
		other := "message"
		if event == "message" {
			other = "reconnect"
		}
		pair = fmt.Sprintf(`{"event":%q,"data":%s}`, other, ex.msg)
		if err := v.Check("SSEEvent", []byte(pair)); err == nil {
			t.Errorf("%s: %s is valid, want the data to mismatch the event", ex.name, pair)
		}
	}
	if n == 0 {
		t.Fatal("no valid SSE examples")
	}
	for _, pair := range []string{
		`{"event":"ping","data":{"type":"ping"}}`,
		`{"event":"reconnect"}`,
		`{"event":"reconnect","data":{"type":"reconnect"},"id":"e:1"}`,
	} {
		if err := v.Check("SSEEvent", []byte(pair)); err == nil {
			t.Errorf("%s is valid, want an error", pair)
		}
	}
}

// recorder is a testing.TB that records failures instead of failing, to
// test what the reporting methods and New report. Methods it does not
// implement panic (the embedded TB is nil).
type recorder struct {
	testing.TB
	mu      sync.Mutex
	errs    []string
	fataled bool
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// Fatalf records, then ends the goroutine as testing's Fatalf does.
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.mu.Lock()
	r.fataled = true
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

func TestReportingMethods(t *testing.T) {
	t.Parallel()
	v := New(t)
	tests := []struct {
		name string
		call func(testing.TB)
		want string // in the one failure reported; "" for none
	}{
		{"server message", func(tb testing.TB) { v.ServerMessage(tb, []byte(`{"type":"reconnect"}`)) }, ""},
		{"bad server message", func(tb testing.TB) { v.ServerMessage(tb, []byte(`{"type":"counts","unread":-1,"unseen":0}`)) }, `{"type":"counts","unread":-1,"unseen":0}`},
		{"client message", func(tb testing.TB) { v.ClientMessage(tb, []byte(`{"type":"ack","offset":3}`)) }, ""},
		{"bad client message", func(tb testing.TB) { v.ClientMessage(tb, []byte(`{"type":"ack","offset":-3}`)) }, "#/$defs/ClientMessage"},
		{"SSE message event", func(tb testing.TB) {
			v.SSEEvent(tb, "", []byte(`{"type":"message","id":"a","ts":"2026-11-25T12:00:00Z","data":{}}`))
		}, ""},
		{"SSE message event by name", func(tb testing.TB) {
			v.SSEEvent(tb, "message", []byte(`{"type":"message","id":"a","ts":"2026-11-25T12:00:00Z","data":{}}`))
		}, ""},
		{"SSE event without a name carrying counts", func(tb testing.TB) { v.SSEEvent(tb, "", []byte(`{"type":"counts","unread":0,"unseen":0}`)) }, "#/$defs/sse/message"},
		{"SSE counts event", func(tb testing.TB) { v.SSEEvent(tb, "counts", []byte(`{"type":"counts","unread":0,"unseen":0}`)) }, ""},
		{"SSE data on two lines", func(tb testing.TB) {
			v.SSEEvent(tb, "counts", []byte("{\"type\":\"counts\",\n\"unread\":0,\"unseen\":0}"))
		}, ""},
		{"unknown SSE event", func(tb testing.TB) { v.SSEEvent(tb, "ping", []byte(`{"type":"ping"}`)) }, `unknown SSE event "ping"`},
		{"SSE event named like a path", func(tb testing.TB) {
			v.SSEEvent(tb, "../AckRequest", []byte(`{"connection_id":"`+connID+`","offset":1}`))
		}, "unknown SSE event"},
		{"ack request", func(tb testing.TB) { v.AckRequest(tb, []byte(`{"connection_id":"`+connID+`","offset":1}`)) }, ""},
		{"bad ack request", func(tb testing.TB) { v.AckRequest(tb, []byte(`{"connection_id":"`+connID+`"}`)) }, "POST /v1/ack body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			tt.call(rec)
			errs := rec.failures()
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Errorf("reported %q, want nothing", errs)
			case tt.want != "" && len(errs) != 1:
				t.Errorf("reported %q, want one failure", errs)
			case tt.want != "" && !strings.Contains(errs[0], tt.want):
				t.Errorf("reported %q, want it to mention %q", errs[0], tt.want)
			}
		})
	}
}

func TestFailureCutsLongMessages(t *testing.T) {
	t.Parallel()
	v := New(t)
	big := fmt.Sprintf(`{"type":"message","id":"a","ts":"2026-11-25T12:00:00Z","data":%q,"extra":1}`, strings.Repeat("é", 64<<10))
	rec := &recorder{}
	v.ServerMessage(rec, []byte(big))
	errs := rec.failures()
	if len(errs) != 1 {
		t.Fatalf("reported %d failures, want 1", len(errs))
	}
	if len(errs[0]) > 8<<10 {
		t.Errorf("failure is %d bytes long, want the %d-byte message cut short", len(errs[0]), len(big))
	}
	if !strings.Contains(errs[0], fmt.Sprintf("(%d bytes)", len(big))) {
		t.Errorf("failure %.200q… does not give the message's length", errs[0])
	}
}

// TestConcurrentUse shares one Validator between goroutines, as e2e tests
// reading several connections do; run it with -race.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	v := New(t)
	good := []byte(`{"type":"message","id":"a","offset":17,"epoch":"e","ts":"2026-11-25T12:00:00Z","data":{"n":1}}`)
	bad := []byte(`{"type":"message","id":"a","offset":17,"ts":"2026-11-25T12:00:00Z","data":{"n":1}}`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				v.ServerMessage(t, good)
				v.SSEEvent(t, "", good)
				if err := v.Check("ServerMessage", bad); err == nil {
					t.Error("offset without epoch is valid")
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestSchemaDocumentsItself checks what the schema promises its readers
// and the TypeScript client generated from it: a description on every
// definition, and definitions of objects closed to unknown members.
func TestSchemaDocumentsItself(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, SchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema string                     `json:"$schema"`
		ID     string                     `json:"$id"`
		Title  string                     `json:"title"`
		Defs   map[string]json.RawMessage `json:"$defs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != "https://json-schema.org/draft/2020-12/schema" || doc.ID == "" || doc.Title == "" {
		t.Errorf("$schema %q, $id %q, title %q: want draft 2020-12, an $id and a title", doc.Schema, doc.ID, doc.Title)
	}
	type def struct {
		Description          string          `json:"description"`
		Properties           map[string]any  `json:"properties"`
		AdditionalProperties json.RawMessage `json:"additionalProperties"`
	}
	check := func(name string, raw json.RawMessage) {
		var d def
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Errorf("#/$defs/%s: %v", name, err)
			return
		}
		if strings.TrimSpace(d.Description) == "" {
			t.Errorf("#/$defs/%s has no description", name)
		}
		if d.Properties != nil && string(d.AdditionalProperties) != "false" {
			t.Errorf("#/$defs/%s has properties but not additionalProperties: false", name)
		}
	}
	for name, raw := range doc.Defs {
		if name != "sse" {
			check(name, raw)
			continue
		}
		var events map[string]json.RawMessage
		if err := json.Unmarshal(raw, &events); err != nil {
			t.Fatalf("#/$defs/sse: %v", err)
		}
		for event, raw := range events {
			if event == "description" {
				continue
			}
			check("sse/"+event, raw)
		}
	}
}

func TestNew(t *testing.T) {
	schema, err := os.ReadFile(filepath.Join("..", SchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	// newIn runs New in a module laid out by files, from its directory
	// dir, and returns the Validator and what New reported.
	newIn := func(t *testing.T, files map[string]string, dir string) (*Validator, *recorder) {
		root := t.TempDir()
		for name, text := range files {
			path := filepath.Join(root, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		wd := filepath.Join(root, filepath.FromSlash(dir))
		if err := os.MkdirAll(wd, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Chdir(wd)
		rec := &recorder{}
		var v *Validator
		done := make(chan struct{})
		go func() { // Fatalf ends the goroutine it is called on
			defer close(done)
			v = New(rec)
		}()
		<-done
		return v, rec
	}

	t.Run("from a package directory", func(t *testing.T) {
		v, rec := newIn(t, map[string]string{"go.mod": "module m\n", SchemaFile: string(schema)}, "a/b")
		if v == nil || len(rec.failures()) > 0 {
			t.Fatalf("New = %v, reported %q", v, rec.failures())
		}
		if err := v.Check("ClientMessage", []byte(`{"type":"ping"}`)); err != nil {
			t.Error(err)
		}
	})
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"without a schema", map[string]string{"go.mod": "module m\n"}, "protocol.schema.json"},
		{"with a schema that is not JSON", map[string]string{"go.mod": "module m\n", SchemaFile: `{"$defs":`}, "protocol.schema.json"},
		{"with a schema that does not compile", map[string]string{"go.mod": "module m\n", SchemaFile: strings.Replace(string(schema), `"minimum": 0`, `"minimum": "0"`, 1)}, "compile"},
		{"with a broken reference", map[string]string{"go.mod": "module m\n", SchemaFile: strings.Replace(string(schema), `"#/$defs/Pong"`, `"#/$defs/Pongg"`, 1)}, "compile"},
		{"without an entry point", map[string]string{"go.mod": "module m\n", SchemaFile: strings.Replace(string(schema), `"AckRequest": {`, `"AckRequestBody": {`, 1)}, "no entry point #/$defs/AckRequest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, rec := newIn(t, tt.files, "pkg")
			errs := rec.failures()
			if v != nil || !rec.fataled || len(errs) != 1 || !strings.Contains(errs[0], tt.want) {
				t.Errorf("New = %v, fatal %v, reported %q; want nil and one fatal failure mentioning %q", v, rec.fataled, errs, tt.want)
			}
		})
	}
}
