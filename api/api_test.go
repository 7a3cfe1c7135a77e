package api

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-gw/herald"
)

// The tests in this file go across the routes: what every route of a kind
// must do (authenticate, take only JSON, refuse malformed bodies, answer
// errors in the one shape). The tests of what each route does are in
// handlers_test.go and inbox_test.go.

// route is one method and path of the HTTP surface with a request body it
// accepts ("" for none).
type route struct{ method, path, body string }

func (r route) String() string { return r.method + " " + r.path }

// serverRoutes are the server API's routes, which take the API key.
func serverRoutes() []route {
	return []route{
		{"POST", "/v1/notify", `{"user_id":42,"json":"{}"}`},
		{"POST", "/v1/users/42/messages", `{"n":1}`},
		{"POST", "/v1/messages", `{"users":["1"],"data":1}`},
		{"POST", "/v1/broadcast", `{"data":1}`},
		{"POST", "/v1/batch", `{"messages":[{"user":"1","data":1}]}`},
		{"GET", "/v1/users/42/connections", ""},
		{"DELETE", "/v1/users/42/connections", ""},
		{"GET", "/v1/users/42/messages", ""},
		{"GET", "/v1/users/42/inbox", ""},
		{"GET", "/v1/users/42/inbox/counts", ""},
		{"POST", "/v1/users/42/inbox/seen", `{"all":true}`},
		{"POST", "/v1/users/42/inbox/read", `{"all":true}`},
		{"POST", "/v1/users/42/inbox/archive", `{"all":true}`},
	}
}

// browserRoutes are the routes browsers call with the user's client token;
// all answer CORS preflights. (POST /v1/ack's body names the connection
// newFixture gives alice.)
func browserRoutes() []route {
	return []route{
		{"GET", "/v1/inbox", ""},
		{"GET", "/v1/inbox/counts", ""},
		{"POST", "/v1/inbox/seen", `{"ids":["m1"]}`},
		{"POST", "/v1/inbox/read", `{"ids":["m1"]}`},
		{"POST", "/v1/inbox/archive", `{"ids":["m1"]}`},
		{"POST", "/v1/ack", `{"connection_id":"c1","offset":0}`},
		{"GET", "/sse", ""},
	}
}

// jsonRoutes are the routes whose body is a JSON object of named fields:
// every POST route but /v1/users/{user}/messages, whose body is the
// payload itself.
func jsonRoutes() []route {
	var out []route
	for _, r := range append(serverRoutes(), browserRoutes()...) {
		if r.method == "POST" && r.path != "/v1/users/42/messages" {
			out = append(out, r)
		}
	}
	return out
}

// request builds a request to r with body and the credential r takes: a
// client token on the browser routes, else the API key.
func (r route) request(body string) *http.Request {
	for _, b := range append(browserRoutes(), route{"GET", "/ws", ""}) {
		if b.path == r.path {
			return userRequest(r.method, r.path, body)
		}
	}
	return apiRequest(r.method, r.path, body)
}

func TestEveryRouteServesAValidRequest(t *testing.T) {
	var tests []routeTest
	for _, r := range append(serverRoutes(), browserRoutes()...) {
		tests = append(tests, routeTest{name: r.String(), req: r.request(r.body), status: http.StatusOK})
	}
	tests = append(tests,
		routeTest{name: "GET /healthz", req: newRequest("GET", "/healthz", ""), status: http.StatusOK, body: `{"status":"ok"}`},
		routeTest{name: "GET /readyz", req: newRequest("GET", "/readyz", ""), status: http.StatusOK, body: `{"status":"ready"}`},
		routeTest{name: "GET /ws", req: userRequest("GET", "/ws", ""), status: http.StatusSwitchingProtocols},
		routeTest{name: "bearer scheme in any case", req: newRequest("GET", "/v1/users/42/connections", "", "Authorization", "bEaReR "+apiKey), status: http.StatusOK},
	)
	// The management API, served by its own handlers at the root and under
	// one stage segment.
	for _, p := range []string{"/@connections/c1", "/production/@connections/c1"} {
		for _, m := range []string{"POST", "GET", "DELETE"} {
			tests = append(tests, routeTest{
				name: m + " " + p, req: newRequest(m, p, "x"), status: http.StatusOK,
				check: func(t *testing.T, _ *fixture, w *httptest.ResponseRecorder) {
					if want := strings.ToLower(m) + " c1"; w.Body.String() != want {
						t.Errorf("served by %q, want %q", w.Body, want)
					}
				},
			})
		}
	}
	runRouteTests(t, tests)
}

func TestManagementAPIIsOptional(t *testing.T) {
	srv := New(Config{APIKey: apiKey}, slog.New(slog.DiscardHandler), Deps{Hub: &fakeRegistry{}, Stream: newFakeStreams()})
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, newRequest("POST", "/@connections/c1", "x", "Authorization", "Bearer "+apiKey))
	assertError(t, w, http.StatusNotFound, herald.ENotFound, "no route")
}

func TestAuthentication(t *testing.T) {
	var tests []routeTest
	for _, r := range serverRoutes() {
		for _, c := range []struct{ name, auth, query string }{
			{"no key", "", ""},
			{"wrong key", "Bearer nope", ""},
			{"key with another scheme", "Basic " + apiKey, ""},
			{"client token", "Bearer " + aliceToken, ""},
			{"key in the query", "", "?token=" + apiKey}, // the key travels in the header only
		} {
			tests = append(tests, routeTest{
				name:   r.String() + "/" + c.name,
				req:    newRequest(r.method, r.path+c.query, r.body, "Authorization", c.auth, "Content-Type", "application/json"),
				status: http.StatusUnauthorized, code: herald.EUnauthorized, msg: "API key",
				check: observed(AuthAPIKey),
			})
		}
	}
	for _, r := range append(browserRoutes(), route{"GET", "/ws", ""}) {
		for _, c := range []struct{ name, auth string }{
			{"no token", ""},
			{"bad token", "Bearer nope"},
			{"API key", "Bearer " + apiKey},
		} {
			tests = append(tests, routeTest{
				name:   r.String() + "/" + c.name,
				req:    newRequest(r.method, r.path, r.body, "Authorization", c.auth, "Content-Type", "application/json"),
				status: http.StatusUnauthorized, code: herald.EUnauthorized, msg: "token",
				check: func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
					if len(f.ws.served)+len(f.sse.served) > 0 || len(f.streams.calls) > 0 {
						t.Errorf("an unauthenticated request got through: transports served %d+%d, streams %v", len(f.ws.served), len(f.sse.served), f.streams.calls)
					}
					observed(AuthToken)(t, f, w)
				},
			})
		}
	}
	runRouteTests(t, tests)
}

// observed returns a check that the Observer was told of exactly one
// authentication failure, of kind.
func observed(kind string) func(*testing.T, *fixture, *httptest.ResponseRecorder) {
	return func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
		t.Helper()
		if limited, failed := f.observer.counts(); len(limited) > 0 || len(failed) != 1 || failed[kind] != 1 {
			t.Errorf("observer told of limits %v and failures %v; want one %s failure", limited, failed, kind)
		}
	}
}

func TestContentType(t *testing.T) {
	var tests []routeTest
	for _, r := range append(serverRoutes(), browserRoutes()...) {
		if r.method != "POST" {
			continue
		}
		for _, c := range []struct {
			ct     string
			status int
		}{
			{"text/plain", http.StatusUnsupportedMediaType},
			{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
			{"application/json;;", http.StatusUnsupportedMediaType}, // unparsable
			{"", http.StatusOK}, // a missing one is accepted
			{"application/json; charset=utf-8", http.StatusOK},
			{"application/vnd.example+json", http.StatusOK},
		} {
			req := r.request(r.body)
			req.Header.Set("Content-Type", c.ct)
			tt := routeTest{name: r.String() + "/" + c.ct, req: req, status: c.status}
			if c.status != http.StatusOK {
				tt.code, tt.msg = herald.EUnsupportedMedia, "Content-Type"
			}
			tests = append(tests, tt)
		}
	}
	runRouteTests(t, tests)
}

func TestMalformedJSON(t *testing.T) {
	var tests []routeTest
	for _, r := range jsonRoutes() {
		for _, c := range []struct{ name, body, msg string }{
			{"truncated", `{"`, "malformed JSON"},
			{"not JSON", `user_id=42`, "malformed JSON"},
			{"trailing garbage", `{} x`, "malformed JSON"},
			{"an array", `[{}]`, "got array, want an object"},
			{"a string", `"{}"`, "got string, want an object"},
			{"empty", ``, "empty"},
			{"blank", " \n\t", "empty"},
		} {
			tests = append(tests, routeTest{
				name: r.String() + "/" + c.name, req: r.request(c.body),
				status: http.StatusBadRequest, code: herald.EInvalidJSON, msg: c.msg,
			})
		}
	}
	runRouteTests(t, tests)
}

// TestWrongTypes checks that a field of the wrong type is invalid_json and
// that the message names the field.
func TestWrongTypes(t *testing.T) {
	tests := []struct{ path, body, field string }{
		{"/v1/notify", `{"user_id":true,"json":"{}"}`, "user_id"},
		{"/v1/notify", `{"user_id":4.2,"json":"{}"}`, "user_id"},
		{"/v1/notify", `{"user_id":1e3,"json":"{}"}`, "user_id"},
		{"/v1/notify", `{"user_id":{},"json":"{}"}`, "user_id"},
		{"/v1/notify", `{"user_id":["42"],"json":"{}"}`, "user_id"},
		{"/v1/notify", `{"user_id":42,"json":{"message":"hi"}}`, "json"},
		{"/v1/notify", `{"user_id":42,"json":5}`, "json"},
		{"/v1/messages", `{"users":"a","data":1}`, "users"},
		{"/v1/messages", `{"users":[1],"data":1}`, "users"},
		{"/v1/batch", `{"messages":"x"}`, "messages"},
		{"/v1/batch", `{"messages":{"user":"1"}}`, "messages"},
		{"/v1/users/42/inbox/read", `{"ids":"m1"}`, "ids"},
		{"/v1/users/42/inbox/read", `{"ids":[1]}`, "ids"},
		{"/v1/inbox/seen", `{"all":"yes"}`, "all"},
		{"/v1/ack", `{"connection_id":5,"offset":1}`, "connection_id"},
		{"/v1/ack", `{"connection_id":"c1","offset":"1"}`, "offset"},
		{"/v1/ack", `{"connection_id":"c1","offset":-1}`, "offset"},
		{"/v1/ack", `{"connection_id":"c1","offset":1.5}`, "offset"},
	}
	var rts []routeTest
	for _, tt := range tests {
		r := route{"POST", tt.path, tt.body}
		rts = append(rts, routeTest{
			name: tt.path + " " + tt.body, req: r.request(tt.body),
			status: http.StatusBadRequest, code: herald.EInvalidJSON, msg: "field " + tt.field + " has the wrong type",
		})
	}
	runRouteTests(t, rts)
}

func TestPayloadLimits(t *testing.T) {
	// jsonString is a JSON string of n bytes in all, quotes included.
	jsonString := func(n int) string { return `"` + strings.Repeat("a", n-2) + `"` }
	over, limit := jsonString(MaxPayload+1), jsonString(MaxPayload)
	tooLarge := func(name string, req *http.Request, msg string) routeTest {
		return routeTest{name: name, req: req, status: http.StatusRequestEntityTooLarge, code: herald.EPayloadTooLarge, msg: msg}
	}
	fits := func(name string, req *http.Request) routeTest {
		return routeTest{
			name: name, req: req, status: http.StatusOK,
			check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
				if len(f.streams.published) != 1 || len(f.streams.published[0].Data) != MaxPayload {
					t.Errorf("want one message of %d bytes published", MaxPayload)
				}
			},
		}
	}
	runRouteTests(t, []routeTest{
		// The payload: at most MaxPayload bytes on every route.
		tooLarge("notify", apiRequest("POST", "/v1/notify", `{"user_id":1,"json":`+jsonString(MaxPayload+3)+`}`), "payload"),
		fits("notify at the limit", apiRequest("POST", "/v1/notify", `{"user_id":1,"json":`+jsonString(MaxPayload+2)+`}`)),
		// Escaping may make a notify body six times its payload; the
		// largest payload must fit however it is escaped.
		fits("notify at the limit, every byte escaped", apiRequest("POST", "/v1/notify", `{"user_id":1,"json":"`+strings.Repeat(`\u0001`, MaxPayload)+`"}`)),
		tooLarge("user message", apiRequest("POST", "/v1/users/42/messages", over), "payload"),
		fits("user message at the limit", apiRequest("POST", "/v1/users/42/messages", limit)),
		tooLarge("messages", apiRequest("POST", "/v1/messages", `{"users":["1"],"data":`+over+`}`), "payload"),
		fits("messages at the limit", apiRequest("POST", "/v1/messages", `{"users":["1"],"data":`+limit+`}`)),
		tooLarge("broadcast", apiRequest("POST", "/v1/broadcast", `{"data":`+over+`}`), "payload"),
		{
			name: "broadcast at the limit", req: apiRequest("POST", "/v1/broadcast", `{"data":`+limit+`}`), status: http.StatusOK,
			check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
				if len(f.streams.broadcast) != MaxPayload {
					t.Errorf("broadcast %d bytes, want %d", len(f.streams.broadcast), MaxPayload)
				}
			},
		},
		// (A batch refuses an oversized payload per message: see
		// TestBatch.)

		// The body: at most maxBody bytes (maxBatchBody for a batch),
		// whatever it holds.
		tooLarge("notify body", apiRequest("POST", "/v1/notify", `{"user_id":1,"json":"{}"}`+strings.Repeat(" ", maxBody)), "request body"),
		tooLarge("user message body", apiRequest("POST", "/v1/users/42/messages", `{}`+strings.Repeat(" ", maxBody)), "request body"),
		tooLarge("inbox mark body", userRequest("POST", "/v1/inbox/read", `{"all":true}`+strings.Repeat(" ", maxBody)), "request body"),
		tooLarge("batch body", apiRequest("POST", "/v1/batch", `{"messages":[]}`+strings.Repeat(" ", maxBatchBody)), "request body"),
	})
}

func TestRouting(t *testing.T) {
	notFound := func(method, path string) routeTest {
		return routeTest{name: method + " " + path, req: apiRequest(method, path, ""), status: http.StatusNotFound, code: herald.ENotFound, msg: path}
	}
	notAllowed := func(method, path, allow string) routeTest {
		return routeTest{
			name: method + " " + path, req: apiRequest(method, path, ""),
			status: http.StatusMethodNotAllowed, code: herald.EMethodNotAllowed, msg: method,
			check: func(t *testing.T, _ *fixture, w *httptest.ResponseRecorder) {
				if got := w.Header().Get("Allow"); got != allow {
					t.Errorf("Allow %q, want %q", got, allow)
				}
			},
		}
	}
	runRouteTests(t, []routeTest{
		notFound("GET", "/"),
		notFound("GET", "/nope"),
		notFound("GET", "/v1"),
		notFound("GET", "/v1/users/42"),
		notFound("POST", "/v1/users/42/unknown"),
		notFound("GET", "/v1/inbox/unknown"),
		notFound("GET", "/a/b/@connections/c1"), // one stage segment at most

		notAllowed("POST", "/healthz", "GET"),
		notAllowed("GET", "/v1/notify", "POST"),
		notAllowed("OPTIONS", "/v1/notify", "POST"), // the server API answers no preflights
		notAllowed("PUT", "/v1/users/42/connections", "GET, DELETE"),
		notAllowed("PATCH", "/v1/users/42/messages", "POST, GET"),
		notAllowed("GET", "/v1/batch", "POST"),
		notAllowed("DELETE", "/v1/inbox", "GET, OPTIONS"),
		notAllowed("GET", "/v1/ack", "POST, OPTIONS"),
		notAllowed("POST", "/sse", "GET, OPTIONS"),
		notAllowed("PUT", "/@connections/c1", "POST, GET, DELETE"),
	})
}

func TestDraining(t *testing.T) {
	drain := func(f *fixture) { f.srv.SetReady(false) }
	unavailable := func(name string, req *http.Request) routeTest {
		return routeTest{
			name: name, req: req, setup: drain, status: http.StatusServiceUnavailable, code: herald.EUnavailable, msg: "draining",
			check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
				// Refused before the token is even checked: the client
				// is to go to another node, whoever it is.
				if f.ws.authenticated+f.sse.authenticated > 0 {
					t.Error("a draining node authenticated a new connection")
				}
			},
		}
	}
	runRouteTests(t, []routeTest{
		unavailable("readyz", newRequest("GET", "/readyz", "")),
		unavailable("ws", userRequest("GET", "/ws", "")),
		unavailable("ws without a token", newRequest("GET", "/ws", "")),
		unavailable("sse", userRequest("GET", "/sse", "")),
		{name: "healthz", req: newRequest("GET", "/healthz", ""), setup: drain, status: http.StatusOK, body: `{"status":"ok"}`},
		// In-flight API calls finish while the node drains.
		{name: "server API", req: apiRequest("POST", "/v1/users/42/messages", `{}`), setup: drain, status: http.StatusOK},
		{name: "inbox", req: userRequest("GET", "/v1/inbox/counts", ""), setup: drain, status: http.StatusOK},
		{
			name: "ready again", req: newRequest("GET", "/readyz", ""), status: http.StatusOK, body: `{"status":"ready"}`,
			setup: func(f *fixture) { f.srv.SetReady(false); f.srv.SetReady(true) },
		},
	})
}

// A failing store takes the node out of the load balancer (/readyz 503)
// without a log line per probe; liveness and the API are unaffected.
func TestStoreHealth(t *testing.T) {
	failing := func(f *fixture) { f.health.err = errors.New("disk I/O error") }
	quiet := func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
		if strings.Contains(f.logs.String(), "disk I/O error") || strings.Contains(f.logs.String(), "level=ERROR") {
			t.Errorf("a probe was logged: %s", f.logs.String())
		}
	}
	runRouteTests(t, []routeTest{
		{name: "readyz", req: newRequest("GET", "/readyz", ""), setup: failing, status: http.StatusServiceUnavailable, code: herald.EUnavailable, msg: "store failing; the server log says why", check: quiet},
		{name: "healthz", req: newRequest("GET", "/healthz", ""), setup: failing, status: http.StatusOK, body: `{"status":"ok"}`},
		{name: "readyz names the broker", req: newRequest("GET", "/readyz", ""), setup: func(f *fixture) {
			f.health.err = &Unready{What: "broker", Err: errors.New("dial tcp 127.0.0.1:6379: connection refused")}
		}, status: http.StatusServiceUnavailable, code: herald.EUnavailable, msg: "broker failing; the server log says why"},
		{name: "recovered", req: newRequest("GET", "/readyz", ""), setup: func(f *fixture) { failing(f); f.health.err = nil }, status: http.StatusOK, body: `{"status":"ready"}`},
	})
}

func TestCORS(t *testing.T) {
	preflight := func(path, from string) *http.Request {
		return newRequest("OPTIONS", path, "", "Origin", from, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
	}
	allowed := func(from string) func(*testing.T, *fixture, *httptest.ResponseRecorder) {
		return func(t *testing.T, _ *fixture, w *httptest.ResponseRecorder) {
			h := w.Header()
			for name, want := range map[string]string{
				"Access-Control-Allow-Origin":  from,
				"Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
				"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
				"Access-Control-Max-Age":       "600",
				"Vary":                         "Origin",
			} {
				if got := h.Get(name); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
		}
	}
	noCORS := func(t *testing.T, _ *fixture, w *httptest.ResponseRecorder) {
		for _, name := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods"} {
			if got := w.Header().Get(name); got != "" {
				t.Errorf("%s %q for an origin not allowed", name, got)
			}
		}
	}
	// refused checks a foreign origin's 403: no CORS headers (the page
	// may not even read the refusal), nothing done, counted.
	refused := func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
		noCORS(t, f, w)
		if f.ws.authenticated+f.sse.authenticated > 0 || len(f.streams.calls) > 0 {
			t.Errorf("a foreign origin's request got through: %d token checks, streams %v", f.ws.authenticated+f.sse.authenticated, f.streams.calls)
		}
		if _, failed := f.observer.counts(); failed[AuthOrigin] != 1 {
			t.Errorf("observer told of %v, want one %s failure", failed, AuthOrigin)
		}
	}
	const evil = "https://evil.example"
	var tests []routeTest
	for _, r := range browserRoutes() {
		tests = append(tests,
			routeTest{name: r.path + "/preflight", req: preflight(r.path, origin), status: http.StatusNoContent, check: allowed(origin)},
			routeTest{name: r.path + "/preflight from elsewhere", req: preflight(r.path, evil), status: http.StatusForbidden, code: herald.EForbidden, msg: evil, check: refused},
		)
		req := r.request(r.body)
		req.Header.Set("Origin", origin)
		tests = append(tests, routeTest{name: r.String() + "/call", req: req, status: http.StatusOK, check: allowed(origin)})
		req = r.request(r.body)
		req.Header.Set("Origin", evil)
		tests = append(tests, routeTest{name: r.String() + "/call from elsewhere", req: req, status: http.StatusForbidden, code: herald.EForbidden, msg: "not allowed", check: refused})
		// A page served by Herald's own host is not cross-origin.
		req = r.request(r.body)
		req.Header.Set("Origin", "http://"+req.Host)
		tests = append(tests, routeTest{name: r.String() + "/same origin", req: req, status: http.StatusOK, check: allowed("http://" + req.Host)})
		// No Origin: not a browser; nothing to allow or refuse.
		tests = append(tests, routeTest{
			name: r.String() + "/no origin", req: r.request(r.body), status: http.StatusOK,
			check: func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
				noCORS(t, f, w)
				if got := w.Header().Get("Vary"); got != "Origin" {
					t.Errorf("Vary %q, want Origin: the reply depends on it", got)
				}
			},
		})
	}
	// Refusals carry the headers too, so the page can read the error.
	req := newRequest("GET", "/v1/inbox", "", "Origin", origin)
	tests = append(tests, routeTest{name: "a 401 to a browser", req: req, status: http.StatusUnauthorized, code: herald.EUnauthorized, check: allowed(origin)})
	// The server API is not for browsers: no CORS, and its Origin, if a
	// server sends one, is not checked.
	for _, from := range []string{origin, evil} {
		req = apiRequest("GET", "/v1/users/42/inbox", "")
		req.Header.Set("Origin", from)
		tests = append(tests, routeTest{name: "server API from " + from, req: req, status: http.StatusOK, check: noCORS})
	}
	runRouteTests(t, tests)

	// CORSOrigins is AllowedOrigins' alias; "*" allows any origin.
	for _, cfg := range []Config{{APIKey: apiKey, CORSOrigins: []string{"*"}}, {APIKey: apiKey, AllowedOrigins: []string{"*"}}} {
		f := newFixtureWith(t, cfg)
		w := f.serve(preflight("/v1/inbox", "https://anywhere.example"))
		allowed("https://anywhere.example")(t, f, w)
	}
}

// TestFailures checks the replies to a failing delivery path: a Herald
// error keeps its code; any other error is a 500 that shows nothing of
// the cause (it is logged instead).
func TestFailures(t *testing.T) {
	cause := errors.New("disk on fire")
	var tests []routeTest
	for _, r := range []route{
		{"POST", "/v1/notify", `{"user_id":42,"json":"{}"}`},
		{"POST", "/v1/users/42/messages", `{}`},
		{"POST", "/v1/messages", `{"users":["1"],"data":1}`},
		{"POST", "/v1/batch", `{"messages":[{"user":"1","data":1}]}`},
		{"GET", "/v1/users/42/messages", ""},
		{"GET", "/v1/users/42/inbox", ""},
		{"GET", "/v1/inbox", ""},
		{"GET", "/v1/inbox/counts", ""},
		{"POST", "/v1/inbox/read", `{"all":true}`},
	} {
		tests = append(tests,
			routeTest{
				name: r.String() + "/internal", req: r.request(r.body), setup: func(f *fixture) { f.streams.err = cause },
				status: http.StatusInternalServerError, code: herald.EInternal, msg: "internal error",
				check: func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
					if strings.Contains(w.Body.String(), "fire") {
						t.Errorf("the reply shows the cause: %s", w.Body)
					}
					if !strings.Contains(f.logs.String(), "disk on fire") {
						t.Errorf("the cause was not logged: %s", f.logs.String())
					}
				},
			},
			routeTest{
				name: r.String() + "/unavailable", req: r.request(r.body),
				setup:  func(f *fixture) { f.streams.err = herald.Errorf(herald.EUnavailable, "message store is closed") },
				status: http.StatusServiceUnavailable, code: herald.EUnavailable, msg: "message store is closed",
			},
		)
	}
	runRouteTests(t, tests)
}

// failingBody is a request body whose reading fails, as when the client
// goes away mid-upload.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestUnreadableBody(t *testing.T) {
	var tests []routeTest
	for _, r := range append(serverRoutes(), browserRoutes()...) {
		if r.method != "POST" {
			continue
		}
		req := r.request("")
		req.Body = io.NopCloser(failingBody{})
		tests = append(tests, routeTest{name: r.String(), req: req, status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: "could not read request body"})
	}
	runRouteTests(t, tests)
}

// Every refusal of /ws and /sse ends the connection (Connection: close):
// a flood of refused handshakes cannot keep idle sockets open.
func TestConnectRefusalsClose(t *testing.T) {
	for _, path := range []string{"/ws", "/sse"} {
		for _, tc := range []struct {
			name   string
			req    *http.Request
			setup  func(*fixture)
			status int
		}{
			{"no token", newRequest("GET", path, ""), nil, http.StatusUnauthorized},
			{"foreign origin", newRequest("GET", path, "", "Origin", "https://evil.example"), nil, http.StatusForbidden},
			{"draining", userRequest("GET", path, ""), func(f *fixture) { f.srv.SetReady(false) }, http.StatusServiceUnavailable},
		} {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				f := newFixture(t)
				if tc.setup != nil {
					tc.setup(f)
				}
				w := httptest.NewRecorder()
				f.handler.ServeHTTP(w, tc.req)
				if w.Code != tc.status || w.Header().Get("Connection") != "close" {
					t.Fatalf("%d, Connection %q", w.Code, w.Header().Get("Connection"))
				}
			})
		}
	}
	// An accepted one is not touched.
	f := newFixture(t)
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, userRequest("GET", "/ws", ""))
	if w.Header().Get("Connection") != "" {
		t.Fatalf("accepted: Connection %q", w.Header().Get("Connection"))
	}
}
