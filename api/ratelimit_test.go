package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

func TestAddrLimiter(t *testing.T) {
	now := testTime()
	l := newAddrLimiter(1, 3, maxLimitedAddrs)
	a, b := netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("203.0.113.8/32")
	for i := range 3 {
		if wait := l.admit(a, now); wait != 0 {
			t.Fatalf("connect %d of the burst refused (wait %s)", i+1, wait)
		}
	}
	if wait := l.admit(a, now); wait != time.Second {
		t.Errorf("past the burst: wait %s, want 1s", wait)
	}
	// A refusal takes no token: a client retrying too early does not push
	// its own turn further away.
	if wait := l.admit(a, now.Add(500*time.Millisecond)); wait != 500*time.Millisecond {
		t.Errorf("half a second later: wait %s, want 0.5s", wait)
	}
	if wait := l.admit(b, now); wait != 0 {
		t.Errorf("another address was refused (wait %s)", wait)
	}
	if wait := l.admit(a, now.Add(time.Second)); wait != 0 {
		t.Errorf("a second later: wait %s, want 0", wait)
	}

	if newAddrLimiter(0, 100, maxLimitedAddrs) != nil {
		t.Error("rate 0 is a limiter; want none (no limit)")
	}
	// Burst 0: one second's worth.
	l = newAddrLimiter(5, 0, maxLimitedAddrs)
	for i := range 5 {
		if l.admit(a, now) != 0 {
			t.Fatalf("connect %d of a default burst of 5 refused", i+1)
		}
	}
	if l.admit(a, now) == 0 {
		t.Error("a default burst is more than one second's worth")
	}
}

// The limiter's memory is bounded whatever a flood of distinct addresses
// does, and idle buckets (full again, so no different from new ones) are
// dropped as time passes.
func TestAddrLimiterIsBounded(t *testing.T) {
	now := testTime()
	const limit = 1024
	l := newAddrLimiter(1, 10, limit)
	addr := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10 + byte(i>>24), byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for i := range 100 * limit {
		l.admit(addr(i), now)
		if i%61 != 0 {
			continue // l.len locks every shard: look now and then
		}
		if n := l.len(); n > limit {
			t.Fatalf("after %d addresses the limiter holds %d, more than %d", i+1, n, limit)
		}
	}

	// Idle: 10 tokens at 1/s refill in 10 s. Fill up (below the bound),
	// step past it, and the next addresses sweep the old ones out.
	l = newAddrLimiter(1, 10, 1<<20)
	for i := range 5000 {
		l.admit(addr(i), now)
	}
	if n := l.len(); n != 5000 {
		t.Fatalf("holds %d, want 5000", n)
	}
	now = now.Add(10 * time.Second)
	for i := range 5000 {
		l.admit(addr(1e6+i), now)
	}
	// 5000 new addresses reach every one of the 64 shards (the chance
	// that one is missed is about e^-78), each sweeping its idle buckets.
	if n := l.len(); n != 5000 {
		t.Errorf("holds %d after the first 5000 went idle, want 5000", n)
	}
}

func TestConnectKey(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	for _, c := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string // the key; "" = not limited
	}{
		{"IPv4 peer", "203.0.113.7:4321", nil, nil, "203.0.113.7/32"},
		{"IPv6 peer counts as its /64", "[2001:db8:1:2:3:4:5:6]:4321", nil, nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6", "[::ffff:203.0.113.7]:4321", nil, nil, "203.0.113.7/32"},
		{"loopback", "127.0.0.1:4321", nil, nil, ""},
		{"IPv6 loopback", "[::1]:4321", nil, nil, ""},
		{"private", "192.168.1.20:4321", nil, nil, ""},
		{"IPv6 private", "[fd00::1]:4321", nil, nil, ""},
		{"link-local", "[fe80::1%eth0]:4321", nil, nil, ""},
		{"unreadable", "@", nil, nil, ""},
		{"X-Forwarded-For ignored by default", "203.0.113.7:4321", []string{"198.51.100.1"}, nil, "203.0.113.7/32"},
		{"X-Forwarded-For ignored from an untrusted peer", "203.0.113.7:4321", []string{"198.51.100.1"}, proxies, "203.0.113.7/32"},
		{"trusted proxy", "10.1.2.3:4321", []string{"198.51.100.1"}, proxies, "198.51.100.1/32"},
		{"trusted proxies in a chain", "10.1.2.3:4321", []string{"198.51.100.1, 10.9.9.9", "10.8.8.8"}, proxies, "198.51.100.1/32"},
		{"a spoofed entry left of the client", "10.1.2.3:4321", []string{"1.1.1.1, 198.51.100.1"}, proxies, "198.51.100.1/32"},
		{"with a port", "10.1.2.3:4321", []string{"198.51.100.1:5555"}, proxies, "198.51.100.1/32"},
		{"IPv6 with a port", "[2001:db8:ffff::1]:4321", []string{"[2001:db8:1::7]:5555"}, proxies, "2001:db8:1::/64"},
		{"garbage stops the walk", "10.1.2.3:4321", []string{"198.51.100.1, garbage, 10.9.9.9"}, proxies, ""}, // the last good one is the trusted 10.9.9.9
		{"all trusted", "10.1.2.3:4321", []string{"10.7.7.7"}, proxies, ""},
		{"trusted proxy, no header", "10.1.2.3:4321", nil, proxies, ""},
		{"client on a private network behind the proxy", "10.1.2.3:4321", []string{"192.168.1.5"}, proxies, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws", nil)
			r.RemoteAddr = c.remote
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			key, ok := connectKey(r, c.trusted)
			got := ""
			if ok {
				got = key.String()
			}
			if got != c.want {
				t.Errorf("key %q, want %q", got, c.want)
			}
		})
	}
}

// connectFrom is a client token's connect to path from a public address.
func connectFrom(path, addr string) *http.Request {
	r := userRequest("GET", path, "")
	r.RemoteAddr = addr + ":4321"
	return r
}

// The connect limit: past the burst, 429 too_many_requests with
// Retry-After, before the token is looked at; /ws and /sse share the
// address's bucket; time refills it.
func TestConnectLimit(t *testing.T) {
	f := newFixtureWith(t, Config{APIKey: apiKey, ConnectRate: 0.1, ConnectBurst: 2})
	statuses := func(reqs ...*http.Request) (out []int) {
		for _, r := range reqs {
			out = append(out, f.serve(r).Code)
		}
		return out
	}
	if got := statuses(connectFrom("/ws", "203.0.113.7"), connectFrom("/sse", "203.0.113.7")); fmt.Sprint(got) != "[101 200]" {
		t.Fatalf("the burst: %v", got)
	}
	checks := f.ws.authenticated + f.sse.authenticated
	for _, path := range []string{"/ws", "/sse"} {
		w := f.serve(connectFrom(path, "203.0.113.7"))
		assertError(t, w, http.StatusTooManyRequests, herald.ETooManyRequests, "connects")
		if got := w.Header().Get("Retry-After"); got != "10" { // one token per 10 s
			t.Errorf("%s: Retry-After %q, want 10", path, got)
		}
	}
	if f.ws.authenticated+f.sse.authenticated != checks {
		t.Error("a limited connect had its token checked")
	}
	if limited, _ := f.observer.counts(); limited[LimitConnect] != 2 {
		t.Errorf("observer told of %v, want 2 %s", limited, LimitConnect)
	}
	// Others are not limited: another address, one behind a private
	// address, a preflight, the server API.
	if got := statuses(
		connectFrom("/ws", "203.0.113.8"),
		connectFrom("/ws", "10.0.0.1"), connectFrom("/ws", "10.0.0.1"), connectFrom("/ws", "10.0.0.1"),
		newRequest("OPTIONS", "/sse", "", "Origin", "http://example.com"),
		apiRequest("GET", "/v1/users/42/connections", ""),
	); fmt.Sprint(got) != "[101 101 101 101 204 200]" {
		t.Errorf("others: %v", got)
	}
	f.clock.Step(9 * time.Second)
	if w := f.serve(connectFrom("/ws", "203.0.113.7")); w.Header().Get("Retry-After") != "1" {
		t.Errorf("9 s later: %d, Retry-After %q; want 429 and 1", w.Code, w.Header().Get("Retry-After"))
	}
	f.clock.Step(time.Second)
	if got := statuses(connectFrom("/ws", "203.0.113.7")); fmt.Sprint(got) != "[101]" {
		t.Errorf("10 s later: %v", got)
	}
	// A draining node answers 503 without spending a token.
	f.srv.SetReady(false)
	f.clock.Step(10 * time.Second)
	statuses(connectFrom("/ws", "203.0.113.7"), connectFrom("/ws", "203.0.113.7"), connectFrom("/ws", "203.0.113.7"))
	f.srv.SetReady(true)
	if got := statuses(connectFrom("/ws", "203.0.113.7")); fmt.Sprint(got) != "[101]" {
		t.Errorf("after draining: %v", got)
	}
}

// The key limit counts per key name: one key's burst does not touch
// another's, and unknown keys are refused (401) without counting.
func TestKeyLimit(t *testing.T) {
	f := newFixtureWith(t, Config{APIKey: apiKey, APIKeys: fixtureKeys(), KeyRate: 2, KeyBurst: 3})
	read := func(secret string) int {
		return f.serve(newRequest("GET", "/v1/users/42/messages", "", "Authorization", "Bearer "+secret)).Code
	}
	for i := range 3 {
		if got := read(secretOf(ScopeRead)); got != 200 {
			t.Fatalf("request %d of the burst: %d", i+1, got)
		}
	}
	w := f.serve(newRequest("GET", "/v1/users/42/messages", "", "Authorization", "Bearer "+secretOf(ScopeRead)))
	assertError(t, w, http.StatusTooManyRequests, herald.ETooManyRequests, "API key")
	if got := w.Header().Get("Retry-After"); got != "1" { // half a second, rounded up
		t.Errorf("Retry-After %q, want 1", got)
	}
	if got := read(secretOf(ScopeAdmin)); got != 200 {
		t.Errorf("another key: %d", got)
	}
	if got := read("unknown"); got != 401 {
		t.Errorf("an unknown key: %d", got)
	}
	if limited, failed := f.observer.counts(); limited[LimitAPIKey] != 1 || failed[AuthAPIKey] != 1 {
		t.Errorf("observer told of limits %v and failures %v", limited, failed)
	}
	f.clock.Step(500 * time.Millisecond)
	if got := read(secretOf(ScopeRead)); got != 200 {
		t.Errorf("half a second later: %d", got)
	}
}

// Over real HTTP: a loopback peer (a local proxy, say) is not limited
// unless trusted; trusted, the client in X-Forwarded-For is.
func TestLimitsOverHTTP(t *testing.T) {
	f := newFixtureWith(t, Config{
		APIKey: apiKey, ConnectRate: 1, ConnectBurst: 1, KeyRate: 1, KeyBurst: 1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	})
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	get := func(path string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	sse := "/sse?token=" + aliceToken
	if res := get(sse, "X-Forwarded-For", "203.0.113.7"); res.StatusCode != 200 {
		t.Fatalf("first connect: %d", res.StatusCode)
	}
	res := get(sse, "X-Forwarded-For", "203.0.113.7")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" {
		t.Errorf("second connect: %d, Retry-After %q; want 429 and 1", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if res := get(sse, "X-Forwarded-For", "203.0.113.8"); res.StatusCode != 200 {
		t.Errorf("another client behind the proxy: %d", res.StatusCode)
	}
	if res := get(sse, "X-Forwarded-For", "192.168.0.9"); res.StatusCode != 200 {
		t.Errorf("a private client behind the proxy: %d", res.StatusCode)
	}
	for i := range 3 {
		if res := get(sse); res.StatusCode != 200 {
			t.Errorf("the proxy itself, connect %d: %d", i+1, res.StatusCode)
		}
	}
	if res := get("/v1/users/42/connections", "Authorization", "Bearer "+apiKey); res.StatusCode != 200 {
		t.Errorf("first API request: %d", res.StatusCode)
	}
	res = get("/v1/users/42/connections", "Authorization", "Bearer "+apiKey)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" {
		t.Errorf("second API request: %d, Retry-After %q; want 429 and 1", res.StatusCode, res.Header.Get("Retry-After"))
	}
	f.clock.Step(time.Second)
	if res := get(sse, "X-Forwarded-For", "203.0.113.7"); res.StatusCode != 200 {
		t.Errorf("a second later: %d", res.StatusCode)
	}
}
