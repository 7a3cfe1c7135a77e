package api

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/herald-gw/herald"
)

// routeScopes is docs/api.md's scopes table: the scopes (besides admin)
// each server API route takes.
var routeScopes = map[string][]Scope{
	"POST /v1/notify":                 {ScopePublish},
	"POST /v1/users/42/messages":      {ScopePublish},
	"POST /v1/messages":               {ScopePublish},
	"POST /v1/broadcast":              {ScopePublish},
	"POST /v1/batch":                  {ScopePublish},
	"GET /v1/users/42/connections":    {ScopeRead, ScopeConnections},
	"DELETE /v1/users/42/connections": {ScopeConnections},
	"GET /v1/users/42/messages":       {ScopeRead},
	"GET /v1/users/42/inbox":          {ScopeRead},
	"GET /v1/users/42/inbox/counts":   {ScopeRead},
	"POST /v1/users/42/inbox/seen":    {ScopePublish},
	"POST /v1/users/42/inbox/read":    {ScopePublish},
	"POST /v1/users/42/inbox/archive": {ScopePublish},
}

// Each named key may use the routes of its scopes and gets 403 naming
// the scope needed on the others; admin and the legacy key may use all.
func TestScopes(t *testing.T) {
	var tests []routeTest
	for _, r := range serverRoutes() {
		need, ok := routeScopes[r.String()]
		if !ok {
			t.Fatalf("%s has no row in routeScopes", r)
		}
		for _, k := range append(fixtureKeys(), APIKey{Name: DefaultKeyName, Secret: apiKey}) {
			req := newRequest(r.method, r.path, r.body, "Authorization", "Bearer "+k.Secret, "Content-Type", "application/json")
			name := r.String() + "/" + k.Name
			if k.Name == DefaultKeyName || slices.Contains(k.Scopes, ScopeAdmin) || slices.ContainsFunc(k.Scopes, func(s Scope) bool { return slices.Contains(need, s) }) {
				tests = append(tests, routeTest{name: name, req: req, status: http.StatusOK})
				continue
			}
			tests = append(tests, routeTest{
				name: name, req: req, status: http.StatusForbidden, code: herald.EForbidden, msg: string(need[0]) + " ",
				check: func(t *testing.T, f *fixture, w *httptest.ResponseRecorder) {
					if !strings.Contains(w.Body.String(), k.Name) {
						t.Errorf("the refusal does not name the key %q: %s", k.Name, w.Body)
					}
					if len(f.streams.calls) > 0 {
						t.Errorf("a refused key reached the delivery path: %v", f.streams.calls)
					}
					if _, failed := f.observer.counts(); failed[AuthScope] != 1 {
						t.Errorf("observer told of %v, want one %s failure", failed, AuthScope)
					}
				},
			})
		}
	}
	runRouteTests(t, tests)
}

// Every server route is in the scopes table, and the table has no route
// that is not served.
func TestScopesTableIsComplete(t *testing.T) {
	var served []string
	for _, r := range serverRoutes() {
		served = append(served, r.String())
	}
	for r := range routeScopes {
		if !slices.Contains(served, r) {
			t.Errorf("routeScopes lists %s, which serverRoutes lacks", r)
		}
	}
}

// The key's name — never its secret — reaches the logs, the request's
// context and the caller's RequestInfo.
func TestKeyName(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		f := newFixture(t)
		var seen string
		h := f.srv.requireKey(ScopeRead)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = KeyName(r.Context()) }))
		h.ServeHTTP(httptest.NewRecorder(), newRequest("GET", "/", "", "Authorization", "Bearer "+secretOf(ScopeRead)))
		if seen != "read-key" {
			t.Errorf("KeyName %q, want read-key", seen)
		}
	})
	for _, c := range []struct {
		name   string
		secret string
		req    func(auth string) *http.Request
		setup  func(*fixture)
		want   string // RequestInfo.KeyName
		logged bool   // whether the name must be in the logs
	}{
		{name: "success", secret: secretOf(ScopeRead), req: func(a string) *http.Request {
			return newRequest("GET", "/v1/users/42/messages", "", "Authorization", a)
		}, want: "read-key"},
		{name: "legacy key", secret: apiKey, req: func(a string) *http.Request {
			return newRequest("GET", "/v1/users/42/messages", "", "Authorization", a)
		}, want: DefaultKeyName},
		{name: "refused for its scope", secret: secretOf(ScopeRead), req: func(a string) *http.Request {
			return newRequest("POST", "/v1/broadcast", `{"data":1}`, "Authorization", a)
		}, want: "read-key", logged: true},
		{name: "internal error", secret: secretOf(ScopePublish), req: func(a string) *http.Request {
			return newRequest("POST", "/v1/users/42/messages", `{}`, "Authorization", a)
		}, setup: func(f *fixture) { f.streams.err = errors.New("disk on fire") }, want: "publish-key", logged: true},
		{name: "unknown key", secret: "nope", req: func(a string) *http.Request {
			return newRequest("GET", "/v1/users/42/messages", "", "Authorization", a)
		}, want: ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			if c.setup != nil {
				c.setup(f)
			}
			var info RequestInfo
			req := c.req("Bearer " + c.secret)
			f.serve(req.WithContext(WithRequestInfo(req.Context(), &info)))
			if info.KeyName != c.want {
				t.Errorf("RequestInfo.KeyName %q, want %q", info.KeyName, c.want)
			}
			logs := f.logs.String()
			if c.logged && !strings.Contains(logs, "key="+c.want) {
				t.Errorf("the logs lack key=%s:\n%s", c.want, logs)
			}
			if strings.Contains(logs, c.secret) {
				t.Errorf("the logs hold the secret:\n%s", logs)
			}
		})
	}
}

func TestKeySetLookup(t *testing.T) {
	keys, err := NewKeySet(
		APIKey{Name: "a", Secret: "secret-a", Scopes: []Scope{ScopeRead}},
		APIKey{Name: "b", Secret: "secret-b", Scopes: []Scope{ScopePublish, ScopeRead}},
		APIKey{Name: "c", Secret: "secret-a-longer", Scopes: []Scope{ScopeAdmin}},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ secret, want string }{
		{"secret-a", "a"},
		{"secret-b", "b"},
		{"secret-a-longer", "c"},
		{"secret-", ""},   // a prefix
		{"secret-aa", ""}, // one more byte
		{"SECRET-A", ""},
		{"", ""},
	} {
		got := ""
		if e := keys.lookup(c.secret); e != nil {
			got = e.name
		}
		if got != c.want {
			t.Errorf("lookup(%q) = %q, want %q", c.secret, got, c.want)
		}
	}
	var none *KeySet
	if none.lookup("x") != nil {
		t.Error("a nil KeySet knows a key")
	}
	r := newRequest("GET", "/", "", "Authorization", "Bearer secret-b")
	if name, err := keys.AuthorizeConnections(r); name != "b" || herald.ErrorCodeOf(err) != herald.EForbidden || !strings.Contains(err.Error(), "connections") {
		t.Errorf("AuthorizeConnections of a key without the scope: %q, %v", name, err)
	}
	r = newRequest("GET", "/", "", "Authorization", "Bearer secret-a-longer")
	if name, err := keys.AuthorizeConnections(r); name != "c" || err != nil {
		t.Errorf("AuthorizeConnections of an admin key: %q, %v", name, err)
	}
}

func TestNewKeySetRefuses(t *testing.T) {
	read := []Scope{ScopeRead}
	for _, c := range []struct {
		name string
		keys []APIKey
		msg  string
	}{
		{"no name", []APIKey{{Secret: "s", Scopes: read}}, "1 to 64"},
		{"long name", []APIKey{{Name: strings.Repeat("n", 65), Secret: "s", Scopes: read}}, "1 to 64"},
		{"name with a space", []APIKey{{Name: "a b", Secret: "s", Scopes: read}}, "may hold only"},
		{"name with a colon", []APIKey{{Name: "a:b", Secret: "s", Scopes: read}}, "may hold only"},
		{"no secret", []APIKey{{Name: "a", Scopes: read}}, "no secret"},
		{"no scopes", []APIKey{{Name: "a", Secret: "s"}}, "no scopes"},
		{"unknown scope", []APIKey{{Name: "a", Secret: "s", Scopes: []Scope{"write"}}}, `unknown scope "write"`},
		{"same name", []APIKey{{Name: "a", Secret: "s", Scopes: read}, {Name: "a", Secret: "t", Scopes: read}}, "twice"},
		{"same secret", []APIKey{{Name: "a", Secret: "s", Scopes: read}, {Name: "b", Secret: "s", Scopes: read}}, "same secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewKeySet(c.keys...)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %v, want one containing %q", err, c.msg)
			}
		})
	}
}

func TestParseAPIKeys(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []APIKey
		err  bool
	}{
		{"", nil, false},
		{"ci:publish:s3cret-0123456789ab", []APIKey{{Name: "ci", Secret: "s3cret-0123456789ab", Scopes: []Scope{ScopePublish}}}, false},
		{"ci:publish+read:a:b+c=", []APIKey{{Name: "ci", Secret: "a:b+c=", Scopes: []Scope{ScopePublish, ScopeRead}}}, false},
		{" a:read:x , b:admin:y ,", []APIKey{{Name: "a", Secret: "x", Scopes: []Scope{ScopeRead}}, {Name: "b", Secret: "y", Scopes: []Scope{ScopeAdmin}}}, false},
		{"a::x", []APIKey{{Name: "a", Secret: "x"}}, false}, // no scopes: Validate refuses it
		{"just-a-secret", nil, true},
		{"a:read", nil, true},
	} {
		got, err := ParseAPIKeys(c.in)
		if (err != nil) != c.err || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseAPIKeys(%q) = %+v, %v; want %+v, error %v", c.in, got, err, c.want, c.err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") && strings.Contains(err.Error(), c.in) {
			t.Errorf("the error quotes the entry, which may be a secret: %v", err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := APIKey{Name: "ci", Secret: "0123456789abcdef", Scopes: []Scope{ScopePublish}}
	for _, c := range []struct {
		name string
		cfg  Config
		msg  string // "" = valid
	}{
		{"zero", Config{}, ""},
		{"fixture", fixtureConfig(), ""},
		{"legacy and named", Config{APIKey: "short", APIKeys: []APIKey{good}}, ""},
		{"limits", Config{ConnectRate: DefaultConnectRate, ConnectBurst: DefaultConnectBurst, KeyRate: 5}, ""},
		{"named key called default", Config{APIKey: "k", APIKeys: []APIKey{{Name: DefaultKeyName, Secret: "0123456789abcdef", Scopes: []Scope{ScopeRead}}}}, "twice"},
		{"short secret", Config{APIKeys: []APIKey{{Name: "ci", Secret: "0123456789", Scopes: []Scope{ScopeRead}}}}, "at least 16"},
		{"secret with a space", Config{APIKeys: []APIKey{{Name: "ci", Secret: "0123456789 abcdef", Scopes: []Scope{ScopeRead}}}}, "printable ASCII"},
		{"secret with a comma", Config{APIKeys: []APIKey{{Name: "ci", Secret: "0123456789,abcdef", Scopes: []Scope{ScopeRead}}}}, "commas"},
		{"unknown scope", Config{APIKeys: []APIKey{{Name: "ci", Secret: "0123456789abcdef", Scopes: []Scope{"all"}}}}, "unknown scope"},
		{"bad origin", Config{AllowedOrigins: []string{"app.example"}}, "allowed origins"},
		{"bad CORS origin", Config{CORSOrigins: []string{"https://app.example/"}}, "allowed origins"},
		{"negative connect rate", Config{ConnectRate: -1}, "negative"},
		{"negative key burst", Config{KeyRate: 1, KeyBurst: -1}, "negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.msg == "" && err != nil || c.msg != "" && (err == nil || !strings.Contains(err.Error(), c.msg)) {
				t.Errorf("Validate: %v, want %q", err, c.msg)
			}
			if err != nil && strings.Contains(err.Error(), "0123456789") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

// New refuses what Validate would, fail-closed and loudly: no key works,
// no foreign origin does.
func TestNewFailsClosed(t *testing.T) {
	var logs syncBuffer
	srv := New(Config{APIKey: apiKey, APIKeys: []APIKey{{Name: "x", Secret: apiKey, Scopes: []Scope{ScopeRead}}}, AllowedOrigins: []string{"nonsense"}},
		slog.New(slog.NewTextHandler(&logs, nil)), Deps{Hub: &fakeRegistry{}, Gateway: &fakeTransport{}, SSE: &fakeTransport{}, Stream: newFakeStreams()})
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, apiRequest("GET", "/v1/users/42/messages", ""))
	assertError(t, w, http.StatusUnauthorized, herald.EUnauthorized, "API key")
	w = httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, newRequest("GET", "/sse?token="+aliceToken, "", "Origin", "https://nonsense.example"))
	assertError(t, w, http.StatusForbidden, herald.EForbidden, "origin")
	for _, want := range []string{"API keys refused", "allowed origins refused"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("not logged: %q\n%s", want, logs.String())
		}
	}
}
