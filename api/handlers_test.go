package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
)

// published returns a check that the delivery path got exactly these
// messages, user and payload bytes, in this order.
func published(want ...string) func(*testing.T, *fixture, *httptest.ResponseRecorder) {
	return func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
		t.Helper()
		var got []string
		for _, m := range f.streams.published {
			got = append(got, string(m.User)+" "+string(m.Data))
		}
		if !slices.Equal(got, want) {
			t.Errorf("published %q, want %q", got, want)
		}
	}
}

// ids returns a JSON array of n distinct strings.
func ids(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote("id-" + strconv.Itoa(i)))
	}
	b.WriteByte(']')
	return b.String()
}

func TestNotify(t *testing.T) {
	notify := func(body string) *http.Request { return apiRequest("POST", "/v1/notify", body) }
	invalid := func(name, body, msg string) routeTest {
		return routeTest{name: name, req: notify(body), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: msg}
	}
	runRouteTests(t, []routeTest{
		{
			// The original Lambda's payload: the bytes of the json string
			// are the payload.
			name: "integer user id", req: notify(`{"user_id":42,"json":"{\"message\":\"hi\"}"}`),
			setup:  func(f *fixture) { f.streams.conns["42"] = 2 },
			status: http.StatusOK, body: `{"user_id":"42","id":"m1","offset":1,"connections":2}`,
			check: published(`42 {"message":"hi"}`),
		},
		{name: "string user id", req: notify(`{"user_id":"42","json":"{}"}`), status: http.StatusOK, check: published(`42 {}`)},
		{name: "negative user id", req: notify(`{"user_id":-7,"json":"{}"}`), status: http.StatusOK, check: published(`-7 {}`)},
		{
			// Kept as written: a float64 would round it.
			name: "user id beyond float64", req: notify(`{"user_id":12345678901234567890123,"json":"{}"}`),
			status: http.StatusOK, check: published(`12345678901234567890123 {}`),
		},
		{name: "escaped string user id", req: notify(`{"user_id":"a\u0062","json":"{}"}`), status: http.StatusOK, check: published(`ab {}`)},
		{name: "payload that is not JSON", req: notify(`{"user_id":1,"json":"hi there"}`), status: http.StatusOK, check: published(`1 hi there`)},
		{name: "unknown fields are ignored", req: notify(`{"user_id":1,"json":"{}","extra":true}`), status: http.StatusOK},
		{
			name: "failed connections are reported", req: notify(`{"user_id":1,"json":"{}"}`),
			setup: func(f *fixture) {
				f.streams.conns["1"] = 1
				f.streams.failed["1"] = []hub.Failure{{ID: "c9", Error: "send queue full"}}
			},
			status: http.StatusOK, body: `{"user_id":"1","id":"m1","offset":1,"connections":1,"failed":[{"id":"c9","error":"send queue full"}]}`,
		},
		invalid("no user id", `{"json":"{}"}`, "user_id is required"),
		invalid("null user id", `{"user_id":null,"json":"{}"}`, "user_id is required"),
		invalid("empty user id", `{"user_id":"","json":"{}"}`, "user_id: user id is empty"),
		invalid("blank user id", `{"user_id":" \t","json":"{}"}`, "user_id: user id is empty"),
		invalid("no json", `{"user_id":42}`, "json is required"),
		invalid("null json", `{"user_id":42,"json":null}`, "json is required"),
	})
}

func TestUserMessage(t *testing.T) {
	post := func(user, body string) *http.Request { return apiRequest("POST", "/v1/users/"+user+"/messages", body) }
	runRouteTests(t, []routeTest{
		{
			// Delivered as-is: the payload is the body's bytes.
			name: "object", req: post("42", `{"a": [1, 2]}`), setup: func(f *fixture) { f.streams.conns["42"] = 3 },
			status: http.StatusOK, body: `{"user_id":"42","id":"m1","offset":1,"connections":3}`,
			check: published(`42 {"a": [1, 2]}`),
		},
		{name: "string", req: post("42", `"hi"`), status: http.StatusOK, check: published(`42 "hi"`)},
		{name: "number", req: post("42", `5`), status: http.StatusOK, check: published(`42 5`)},
		{name: "percent-encoded user", req: post("a%20b", `{}`), status: http.StatusOK, check: published(`a b {}`)},
		{name: "offsets count per user", req: post("42", `{}`),
			setup:  func(f *fixture) { f.streams.offsets["42"] = 16 },
			status: http.StatusOK, body: `{"user_id":"42","id":"m1","offset":17,"connections":0}`},
		{name: "blank user", req: post("%20", `{}`), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: "user id is empty"},
		{name: "not JSON", req: post("42", `{"a":`), status: http.StatusBadRequest, code: herald.EInvalidJSON, msg: "payload is not valid JSON"},
		// docs/api.md's error table: an empty body is invalid_json.
		{name: "empty body", req: post("42", ``), status: http.StatusBadRequest, code: herald.EInvalidJSON, msg: "request body is empty"},
	})
}

func TestMultiMessage(t *testing.T) {
	post := func(body string) *http.Request { return apiRequest("POST", "/v1/messages", body) }
	invalid := func(name, body, msg string) routeTest {
		return routeTest{name: name, req: post(body), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: msg}
	}
	runRouteTests(t, []routeTest{
		{
			name: "a user listed twice gets the message once", req: post(`{"users":["1","2","1","3","2"],"data":{"m":"hi"}}`),
			setup:  func(f *fixture) { f.streams.conns["1"], f.streams.conns["3"] = 2, 1 },
			status: http.StatusOK,
			body: `{"users":[
				{"user_id":"1","id":"m1","offset":1,"connections":2},
				{"user_id":"2","id":"m2","offset":1,"connections":0},
				{"user_id":"3","id":"m3","offset":1,"connections":1}],"connections":3}`,
			check: func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
				published(`1 {"m":"hi"}`, `2 {"m":"hi"}`, `3 {"m":"hi"}`)(t, f, w)
				if f.streams.batches != 1 {
					t.Errorf("%d Publish calls, want one for all users", f.streams.batches)
				}
			},
		},
		{name: "as many users as allowed", req: post(`{"users":` + ids(MaxUsers) + `,"data":1}`), status: http.StatusOK},
		{
			// docs/api.md calls a missing data invalid_request; null is
			// a value, the payload "null".
			name: "null data", req: post(`{"users":["1"],"data":null}`), status: http.StatusOK, check: published(`1 null`),
		},
		invalid("no users", `{"data":1}`, "at least one user"),
		invalid("empty users", `{"users":[],"data":1}`, "at least one user"),
		invalid("an empty user id", `{"users":["1",""],"data":1}`, "users[1]: user id is empty"),
		invalid("a blank user id", `{"users":["1","  "],"data":1}`, "users[1]: user id is empty"),
		invalid("too many users", `{"users":`+ids(MaxUsers+1)+`,"data":1}`, strconv.Itoa(MaxUsers)),
		invalid("no data", `{"users":["1"]}`, "data is required"),
	})
}

func TestBroadcast(t *testing.T) {
	runRouteTests(t, []routeTest{
		{
			name: "broadcast", req: apiRequest("POST", "/v1/broadcast", `{"data":{"m": "maintenance"}}`),
			setup:  func(f *fixture) { f.streams.bcConns = 1234 },
			status: http.StatusOK, body: `{"id":"b1","connections":1234}`,
			check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
				if got := string(f.streams.broadcast); got != `{"m": "maintenance"}` {
					t.Errorf("broadcast %s", got)
				}
			},
		},
		{name: "no data", req: apiRequest("POST", "/v1/broadcast", `{}`), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: "data is required"},
	})
}

func TestBatch(t *testing.T) {
	post := func(body string) *http.Request { return apiRequest("POST", "/v1/batch", body) }
	messages := func(n int) string {
		return `{"messages":[` + strings.Repeat(`{"user":"1","data":1},`, n-1) + `{"user":"1","data":1}]}`
	}
	over := `"` + strings.Repeat("a", MaxPayload-1) + `"`
	invalid := func(name, body, msg string) routeTest {
		return routeTest{name: name, req: post(body), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: msg}
	}
	runRouteTests(t, []routeTest{
		{
			// A bad message gets its own error; the others are delivered,
			// in one Publish, and results keep the request's order.
			name: "per-message errors",
			req: post(`{"messages":[
				{"user":"42","data":{"n":1}},
				{"user":43,"data":"two"},
				{"user":"","data":1},
				{"user":true,"data":1},
				{"user":"x"},
				{"user":"y","data":` + over + `},
				7,
				{"data":1}]}`),
			setup:  func(f *fixture) { f.streams.conns["42"] = 2 },
			status: http.StatusOK,
			body: `{"results":[
				{"user_id":"42","id":"m1","offset":1,"connections":2},
				{"user_id":"43","id":"m2","offset":1,"connections":0},
				{"error":{"code":"invalid_request","message":"user: user id is empty"}},
				{"error":{"code":"invalid_json","message":"field user has the wrong type: got non-integer, want string"}},
				{"error":{"code":"invalid_request","message":"data is required"}},
				{"error":{"code":"payload_too_large","message":"payload is 131073 bytes; the limit is 131072"}},
				{"error":{"code":"invalid_json","message":"wrong type: got number, want an object"}},
				{"error":{"code":"invalid_request","message":"user is required"}}
			],"accepted":2,"connections":2}`,
			check: func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
				published(`42 {"n":1}`, `43 "two"`)(t, f, w)
				if f.streams.batches != 1 {
					t.Errorf("%d Publish calls, want 1", f.streams.batches)
				}
			},
		},
		{
			// Well-typed messages are decoded in one pass; errors found
			// after it are reported the same way.
			name: "per-message errors, all well-typed", req: post(`{"messages":[{"user":"1","data":1},{"user":"","data":1}]}`),
			status: http.StatusOK,
			body: `{"results":[
				{"user_id":"1","id":"m1","offset":1,"connections":0},
				{"error":{"code":"invalid_request","message":"user: user id is empty"}}
			],"accepted":1,"connections":0}`,
		},
		{
			name: "no valid message", req: post(`{"messages":[{"user":""},{"user":1}]}`), status: http.StatusOK,
			body: `{"results":[
				{"error":{"code":"invalid_request","message":"user: user id is empty"}},
				{"error":{"code":"invalid_request","message":"data is required"}}
			],"accepted":0,"connections":0}`,
			check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
				if len(f.streams.calls) > 0 {
					t.Errorf("the delivery path was called: %v", f.streams.calls)
				}
			},
		},
		{name: "as many messages as allowed", req: post(messages(MaxBatch)), status: http.StatusOK},
		invalid("no messages", `{}`, "at least one message"),
		invalid("empty messages", `{"messages":[]}`, "at least one message"),
		invalid("null messages", `{"messages":null}`, "at least one message"),
		invalid("too many messages", messages(MaxBatch+1), strconv.Itoa(MaxBatch)),
		// Too many is counted before the messages are looked at.
		invalid("too many messages, some wrongly typed", `{"messages":[`+strings.Repeat(`{"user":true},`, MaxBatch)+`1]}`, strconv.Itoa(MaxBatch)),
	})
}

func TestConnections(t *testing.T) {
	conns := func(f *fixture) {
		f.hub.conns = append(f.hub.conns, &fakeConn{id: "c2", user: "42"}, &fakeConn{id: "c3", user: "43"}, &fakeConn{id: "c4", user: "42"})
	}
	info := func(id string) string {
		b, _ := json.Marshal(herald.ConnInfo{ID: herald.ConnID(id), User: "42", Protocol: herald.SubprotocolV1, ConnectedAt: testTime()})
		return string(b)
	}
	runRouteTests(t, []routeTest{
		{
			name: "list, oldest first", req: apiRequest("GET", "/v1/users/42/connections", ""), setup: conns,
			status: http.StatusOK, body: `{"connections":[` + info("c2") + `,` + info("c4") + `]}`,
		},
		{
			// An empty list, not null and not an error.
			name: "none", req: apiRequest("GET", "/v1/users/44/connections", ""), setup: conns,
			status: http.StatusOK, body: `{"connections":[]}`,
		},
		{name: "blank user", req: apiRequest("GET", "/v1/users/%20/connections", ""), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: "user id"},
		{
			name: "disconnect", req: apiRequest("DELETE", "/v1/users/a%2Fb/connections", ""),
			setup:  func(f *fixture) { f.streams.closed = 2 },
			status: http.StatusOK, body: `{"user_id":"a/b","closed":2}`,
			check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
				if f.streams.disconnected != "a/b" {
					t.Errorf("disconnected %q", f.streams.disconnected)
				}
			},
		},
		{name: "disconnect a blank user", req: apiRequest("DELETE", "/v1/users/%20/connections", ""), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: "user id"},
	})
}

// TestWaitAck covers ?wait=ack on the two routes that take it.
func TestWaitAck(t *testing.T) {
	for _, r := range []route{
		{"POST", "/v1/users/42/messages", `{}`},
		{"POST", "/v1/notify", `{"user_id":42,"json":"{}"}`},
	} {
		t.Run(r.path, func(t *testing.T) {
			var tests []routeTest
			for _, c := range []struct{ query, msg string }{
				{"wait=yes", "wait must be"},
				{"wait=ACK", "wait must be"},
				{"wait=ack&timeout=abc", "timeout must be"},
				{"wait=ack&timeout=2", "timeout must be"}, // no unit
				{"wait=ack&timeout=0s", "timeout must be"},
				{"wait=ack&timeout=-1s", "timeout must be"},
				{"wait=ack&timeout=30.001s", "timeout must be"},
			} {
				tests = append(tests, routeTest{
					name: c.query, req: apiRequest(r.method, r.path+"?"+c.query, r.body),
					status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: c.msg,
				})
			}
			tests = append(tests,
				routeTest{
					name: "no wait", req: apiRequest(r.method, r.path, r.body), status: http.StatusOK,
					setup: func(f *fixture) { f.streams.conns["42"] = 3 },
					body:  `{"user_id":"42","id":"m1","offset":1,"connections":3}`,
					check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
						if slices.Contains(f.streams.calls, "WaitAck") {
							t.Error("waited without wait=ack")
						}
					},
				},
				// A timeout is only read with wait=ack.
				routeTest{name: "timeout without wait", req: apiRequest(r.method, r.path+"?timeout=abc", r.body), status: http.StatusOK},
				routeTest{
					// acked: 0 is an answer (nobody confirmed), not left out.
					name: "nobody acked", req: apiRequest(r.method, r.path+"?wait=ack", r.body), status: http.StatusOK,
					setup: func(f *fixture) { f.streams.conns["42"], f.streams.wait.conns = 3, 2 },
					body:  `{"user_id":"42","id":"m1","offset":1,"connections":2,"acked":0}`,
				},
			)
			runRouteTests(t, tests)

			// The wait is for the message's offset, bounded by the timeout.
			for _, c := range []struct {
				query string
				d     time.Duration
			}{
				{"wait=ack", defaultAckWait},
				{"wait=ack&timeout=250ms", 250 * time.Millisecond},
				{"wait=ack&timeout=30s", MaxAckWait},
			} {
				t.Run(c.query, func(t *testing.T) {
					f := newFixture(t)
					f.streams.offsets["42"] = 16
					f.streams.wait.conns, f.streams.wait.acked = 3, 1
					before := time.Now()
					w := f.serve(apiRequest(r.method, r.path+"?"+c.query, r.body))
					after := time.Now()
					if w.Code != http.StatusOK {
						t.Fatalf("status %d: %s", w.Code, w.Body)
					}
					assertJSON(t, w, `{"user_id":"42","id":"m1","offset":17,"connections":3,"acked":1}`)
					got := f.streams.wait
					if got.user != "42" || got.offset != 17 {
						t.Errorf("waited for %s's offset %d, want 42's 17", got.user, got.offset)
					}
					// The deadline was set between before and after.
					if !got.hasDeadline || got.deadline.Before(before.Add(c.d)) || got.deadline.After(after.Add(c.d)) {
						t.Errorf("wait deadline %v (set: %v), want %v after the request", got.deadline, got.hasDeadline, c.d)
					}
				})
			}
		})
	}
}

func TestAck(t *testing.T) {
	conns := func(f *fixture) {
		f.hub.conns = append(f.hub.conns,
			&fakeConn{id: "bobs", user: "bob"},
			ackless{&fakeConn{id: "raw", user: "alice"}},
			&fakeConn{id: "c5", user: "alice", acked: 3, ackErr: herald.Errorf(herald.EInvalidRequest, "offset 9 was not sent to this connection (last sent: 5)")},
		)
	}
	ack := func(body string) *http.Request { return userRequest("POST", "/v1/ack", body) }
	fail := func(name, body string, status int, code herald.ErrorCode, msg string) routeTest {
		return routeTest{name: name, req: ack(body), setup: conns, status: status, code: code, msg: msg}
	}
	runRouteTests(t, []routeTest{
		{
			name: "ack", req: ack(`{"connection_id":"c1","offset":5}`), setup: conns,
			status: http.StatusOK, body: `{"connection_id":"c1","acked":5}`,
		},
		{
			name: "token in the query", req: newRequest("POST", "/v1/ack?token="+aliceToken, `{"connection_id":"c1","offset":5}`), setup: conns,
			status: http.StatusOK, body: `{"connection_id":"c1","acked":5}`,
		},
		fail("no connection id", `{"offset":1}`, http.StatusBadRequest, herald.EInvalidRequest, "connection_id is required"),
		fail("empty connection id", `{"connection_id":"","offset":1}`, http.StatusBadRequest, herald.EInvalidRequest, "connection_id is required"),
		fail("no offset", `{"connection_id":"c1"}`, http.StatusBadRequest, herald.EInvalidRequest, "offset is required"),
		fail("null offset", `{"connection_id":"c1","offset":null}`, http.StatusBadRequest, herald.EInvalidRequest, "offset is required"),
		fail("unknown connection", `{"connection_id":"nope","offset":1}`, http.StatusNotFound, herald.ENotFound, "no open connection"),
		// Another user's connection is missing, not forbidden: ids are
		// not to be probed.
		fail("another user's connection", `{"connection_id":"bobs","offset":1}`, http.StatusNotFound, herald.ENotFound, "no open connection"),
		fail("a connection that takes no acks", `{"connection_id":"raw","offset":1}`, http.StatusNotFound, herald.ENotFound, "no open connection"),
		fail("refused by the session", `{"connection_id":"c5","offset":9}`, http.StatusBadRequest, herald.EInvalidRequest, "not sent"),
	})
}

func TestTransports(t *testing.T) {
	servedAlice := func(tr func(*fixture) *fakeTransport) func(*testing.T, *fixture, *httptest.ResponseRecorder) {
		return func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
			if got := tr(f).served; !slices.Equal(got, []token.Claims{{User: "alice"}}) {
				t.Errorf("served %v, want alice once", got)
			}
		}
	}
	ws := func(f *fixture) *fakeTransport { return f.ws }
	sse := func(f *fixture) *fakeTransport { return f.sse }
	runRouteTests(t, []routeTest{
		{name: "ws", req: userRequest("GET", "/ws", ""), status: http.StatusSwitchingProtocols, check: servedAlice(ws)},
		{name: "sse", req: newRequest("GET", "/sse?token="+aliceToken, ""), status: http.StatusOK, check: servedAlice(sse)},
		// A transport's refusal before the upgrade is reported as it says.
		{
			name: "ws refused", req: userRequest("GET", "/ws", ""),
			setup: func(f *fixture) {
				f.ws.err = herald.Errorf(herald.EInvalidRequest, "expected a WebSocket upgrade request")
			},
			status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: "upgrade",
		},
		{
			name: "sse refused", req: userRequest("GET", "/sse", ""),
			setup: func(f *fixture) {
				f.sse.err = herald.Errorf(herald.EUnavailable, "connection limit of this node reached")
			},
			status: http.StatusServiceUnavailable, code: herald.EUnavailable, msg: "connection limit",
		},
	})
}

// TestUserIDRule checks that herald.CheckUserID guards every place a user
// id enters the API — the path, user_id, users[], a batch message's user —
// with its message, naming the field.
func TestUserIDRule(t *testing.T) {
	long := strings.Repeat("a", herald.MaxUserIDLen+1)
	longest := strings.Repeat("a", herald.MaxUserIDLen)
	ids := []struct {
		name, id string
		msg      string // "" = valid
	}{
		{"blank", " \t", "user id is empty"},
		{"NUL", "a\x00b", "control character"},
		{"escape", "a\x1bb", "control character"},
		{"newline", "alice\nadmin", "control character"},
		{"C1 control", "a\u0085b", "control character"},
		{"257 bytes", long, "257 bytes"},
		{"not UTF-8", "a\xffb", "UTF-8"},
		{"256 bytes", longest, ""},
		{"unicode", "zoë", ""},
	}
	var tests []routeTest
	for _, c := range ids {
		js, _ := json.Marshal(c.id)
		if !utf8.ValidString(c.id) {
			// json.Marshal would replace the bad byte; send it raw.
			js = []byte(`"` + c.id + `"`)
		}
		path := url.PathEscape(c.id)
		reqs := []struct {
			where string
			req   *http.Request
			field string
		}{
			{"path", apiRequest("POST", "/v1/users/"+path+"/messages", `{}`), ""},
			{"path of a read", apiRequest("GET", "/v1/users/"+path+"/inbox", ""), ""},
			{"path of connections", apiRequest("DELETE", "/v1/users/"+path+"/connections", ""), ""},
			{"notify", apiRequest("POST", "/v1/notify", `{"user_id":`+string(js)+`,"json":"{}"}`), "user_id: "},
			{"messages", apiRequest("POST", "/v1/messages", `{"users":["ok",`+string(js)+`],"data":1}`), "users[1]: "},
		}
		for _, r := range reqs {
			if r.where == "messages" && !utf8.ValidString(c.id) {
				// encoding/json decodes a []string's invalid UTF-8 as
				// U+FFFD: the id that arrives is valid. (user_id and a
				// batch's user are read as raw bytes and refused.)
				continue
			}
			tt := routeTest{name: c.name + "/" + r.where, req: r.req, status: http.StatusOK}
			if c.msg != "" {
				tt.status, tt.code, tt.msg = http.StatusBadRequest, herald.EInvalidRequest, r.field
				tt.check = func(t *testing.T, _ *fixture, w *httptest.ResponseRecorder) {
					if !strings.Contains(w.Body.String(), c.msg) {
						t.Errorf("the message does not say %q: %s", c.msg, w.Body)
					}
				}
			}
			tests = append(tests, tt)
		}
		// A batch refuses the one message, not the request.
		tt := routeTest{
			name: c.name + "/batch", req: apiRequest("POST", "/v1/batch", `{"messages":[{"user":`+string(js)+`,"data":1}]}`), status: http.StatusOK,
			check: func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
				var reply struct {
					Results []struct {
						Error *struct{ Code, Message string } `json:"error"`
					} `json:"results"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil || len(reply.Results) != 1 {
					t.Fatalf("reply %s (%v)", w.Body, err)
				}
				e := reply.Results[0].Error
				switch {
				case c.msg == "" && e != nil:
					t.Errorf("a valid id refused: %+v", e)
				case c.msg != "" && (e == nil || e.Code != string(herald.EInvalidRequest) || !strings.HasPrefix(e.Message, "user: ") || !strings.Contains(e.Message, c.msg)):
					t.Errorf("result error %+v, want invalid_request \"user: …%s…\"", e, c.msg)
				}
			},
		}
		tests = append(tests, tt)
	}
	runRouteTests(t, tests)
}
