package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/herald-gw/herald"
)

// Every reply carries the security headers, whatever its route and
// status: successes, every kind of error, preflights, streams, upgrades
// and the management API's own replies.
func TestSecurityHeaders(t *testing.T) {
	withOrigin := func(r *http.Request, o string) *http.Request { r.Header.Set("Origin", o); return r }
	tests := []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"health", newRequest("GET", "/healthz", ""), 200},
		{"server API", apiRequest("GET", "/v1/users/42/connections", ""), 200},
		{"browser API", userRequest("GET", "/v1/inbox", ""), 200},
		{"sse", userRequest("GET", "/sse", ""), 200},
		{"ws", userRequest("GET", "/ws", ""), 101},
		{"preflight", newRequest("OPTIONS", "/v1/inbox", "", "Origin", origin), 204},
		{"management API", newRequest("GET", "/@connections/c1", ""), 200},
		{"400", apiRequest("POST", "/v1/notify", `{}`), 400},
		{"401", newRequest("GET", "/v1/users/42/connections", ""), 401},
		{"403 scope", newRequest("POST", "/v1/broadcast", `{"data":1}`, "Authorization", "Bearer "+secretOf(ScopeRead)), 403},
		{"403 origin", withOrigin(userRequest("GET", "/ws", ""), "https://evil.example"), 403},
		{"404", newRequest("GET", "/nope", ""), 404},
		{"405", newRequest("PUT", "/v1/notify", ""), 405},
		{"413", apiRequest("POST", "/v1/users/42/messages", strings.Repeat(" ", maxBody+1)), 413},
		{"415", newRequest("POST", "/v1/notify", "x", "Authorization", "Bearer "+apiKey, "Content-Type", "text/plain"), 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			w := f.serve(tt.req)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			for name, want := range map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
				"X-Frame-Options":        "DENY",
			} {
				if got := w.Header().Get(name); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
		})
	}
	t.Run("429", func(t *testing.T) {
		f := newFixtureWith(t, Config{APIKey: apiKey, KeyRate: 1, KeyBurst: 1})
		f.serve(apiRequest("GET", "/v1/users/42/connections", ""))
		w := f.serve(apiRequest("GET", "/v1/users/42/connections", ""))
		if w.Code != http.StatusTooManyRequests || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("status %d, nosniff %q", w.Code, w.Header().Get("X-Content-Type-Options"))
		}
	})
}

// TestOriginPolicy is the allowed-origin rule, case by case.
func TestOriginPolicy(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		host    string // the request's Host header
		origin  string
		want    bool
	}{
		// An empty list: the request's own origin only.
		{"same origin", nil, "herald.example", "https://herald.example", true},
		{"same origin over http", nil, "herald.example", "http://herald.example", true},
		{"same origin, explicit default port", nil, "herald.example", "https://herald.example:443", true},
		{"same origin, Host with the default port", nil, "herald.example:443", "https://herald.example", true},
		{"same origin, other port", nil, "herald.example:8080", "http://herald.example:8080", true},
		{"same origin, case", nil, "Herald.Example:8080", "http://herald.EXAMPLE:8080", true},
		{"same origin, IPv6", nil, "[::1]:8080", "http://[::1]:8080", true},
		{"port differs", nil, "herald.example:8080", "http://herald.example:9090", false},
		{"default port differs", nil, "herald.example", "https://herald.example:8443", false},
		{"Host has a port the origin lacks", nil, "herald.example:8080", "https://herald.example", false},
		{"another host", nil, "herald.example", "https://app.example", false},
		{"a subdomain is another origin", nil, "herald.example", "https://www.herald.example", false},
		{"null", nil, "herald.example", "null", false},
		{"garbage", nil, "herald.example", "::", false},

		// "*": any origin.
		{"any", []string{"*"}, "herald.example", "https://anything.example", true},
		{"any, null", []string{"*"}, "herald.example", "null", true},

		// Listed origins, and the own origin besides.
		{"listed", []string{"https://app.example"}, "herald.example", "https://app.example", true},
		{"listed, case and default port", []string{"HTTPS://App.Example:443"}, "herald.example", "https://app.example", true},
		{"listed with a port", []string{"http://localhost:3000"}, "herald.example", "http://localhost:3000", true},
		{"listed, own origin still allowed", []string{"https://app.example"}, "herald.example", "https://herald.example", true},
		{"listed, other scheme", []string{"https://app.example"}, "herald.example", "http://app.example", false},
		{"listed, other port", []string{"https://app.example"}, "herald.example", "https://app.example:8443", false},
		{"listed, other host", []string{"https://app.example"}, "herald.example", "https://app.example.evil", false},
		{"other schemes", []string{"capacitor://localhost"}, "herald.example", "capacitor://localhost", true},

		// A leading wildcard: any subdomain, not the domain itself.
		{"wildcard", []string{"https://*.example.com"}, "herald.example", "https://app.example.com", true},
		{"wildcard, deeper", []string{"https://*.example.com"}, "herald.example", "https://a.b.example.com", true},
		{"wildcard, not the apex", []string{"https://*.example.com"}, "herald.example", "https://example.com", false},
		{"wildcard, lookalike", []string{"https://*.example.com"}, "herald.example", "https://evilexample.com", false},
		{"wildcard, other scheme", []string{"https://*.example.com"}, "herald.example", "http://app.example.com", false},
		{"wildcard, other port", []string{"https://*.example.com"}, "herald.example", "https://app.example.com:8443", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newOriginPolicy(tt.allowed)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/ws", nil)
			r.Host = tt.host
			if got := p.allows(tt.origin, r); got != tt.want {
				t.Errorf("allows(%q) with Host %q and %q = %v, want %v", tt.origin, tt.host, tt.allowed, got, tt.want)
			}
		})
	}
}

func TestOriginPolicyRefusesBadEntries(t *testing.T) {
	for _, bad := range []string{
		"app.example",                   // no scheme
		"https://app.example/",          // a path, even "/"
		"https://app.example/dashboard", // a path
		"https://app.example?x=1",       // a query
		"https://user@app.example",      // user info
		"https://",                      // no host
		"https://*",                     // a wildcard of nothing
		"null",
	} {
		if _, err := newOriginPolicy([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if err := (Config{AllowedOrigins: []string{bad}}).Validate(); err == nil {
			t.Errorf("Validate accepted %q", bad)
		}
	}
}

// A page from a foreign origin is refused on /ws and /sse with 403
// forbidden before anything else: before the connect limit, before the
// token is looked at and before the transport does anything.
func TestConnectOrigin(t *testing.T) {
	var tests []routeTest
	for _, path := range []string{"/ws", "/sse"} {
		ok := http.StatusOK
		if path == "/ws" {
			ok = http.StatusSwitchingProtocols
		}
		for _, c := range []struct {
			name, origin string
			allowed      bool
		}{
			{"allowed origin", origin, true},
			{"own origin", "http://example.com", true}, // httptest.NewRequest's Host
			{"no origin (not a browser)", "", true},
			{"foreign origin", "https://evil.example", false},
			{"null origin", "null", false},
		} {
			req := userRequest("GET", path, "")
			if c.origin != "" {
				req.Header.Set("Origin", c.origin)
			}
			tt := routeTest{name: path + "/" + c.name, req: req, status: ok}
			if !c.allowed {
				tt.status, tt.code, tt.msg = http.StatusForbidden, herald.EForbidden, "not allowed"
				tt.check = func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
					if f.ws.authenticated+f.sse.authenticated > 0 || len(f.ws.served)+len(f.sse.served) > 0 {
						t.Error("the token was checked or the transport ran for a foreign origin")
					}
				}
			}
			tests = append(tests, tt)
		}
		// Without a token too: the origin is refused first.
		req := newRequest("GET", path, "", "Origin", "https://evil.example")
		tests = append(tests, routeTest{name: path + "/foreign origin, no token", req: req, status: http.StatusForbidden, code: herald.EForbidden, msg: "evil.example"})
	}
	runRouteTests(t, tests)
}

// Over real HTTP, with a real WebSocket client sending its Origin: a
// foreign page's handshake fails with 403, before the upgrade.
func TestConnectOriginOverHTTP(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?token=" + aliceToken
	_, resp, err := websocket.Dial(t.Context(), wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial from a foreign origin: err %v, response %+v; want a 403", err, resp)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q on the refusal", got)
	}

	// And /sse, as an EventSource of a foreign page would ask.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/sse?token="+aliceToken, nil)
	req.Header.Set("Origin", "https://evil.example")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("sse from a foreign origin: %d, Access-Control-Allow-Origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	// An allowed page streams, with its CORS header.
	req, _ = http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/sse?token="+aliceToken, nil)
	req.Header.Set("Origin", origin)
	if res, err = srv.Client().Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("sse from an allowed origin: %d, Access-Control-Allow-Origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	if ws, sse := f.ws.tokenChecks(), f.sse.tokenChecks(); ws != 0 || sse != 1 {
		t.Errorf("token checks: ws %d, sse %d; want 0 and 1 (the allowed stream only)", ws, sse)
	}
}

// The transport's refusals keep their code: a WebSocket version Herald
// does not speak is 426 upgrade_required, with the headers the transport
// set (the gateway names the version it speaks).
func TestUpgradeRequired(t *testing.T) {
	runRouteTests(t, []routeTest{{
		name: "ws", req: userRequest("GET", "/ws", ""), status: http.StatusUpgradeRequired, code: herald.EUpgradeRequired, msg: "version",
		setup: func(f *fixture) {
			f.ws.err = herald.Errorf(herald.EUpgradeRequired, "WebSocket version \"8\" is not supported")
		},
	}})
}
