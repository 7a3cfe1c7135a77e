package token

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// testKeys are the private keys of testdata/test-keys.jwks.json, by kid:
// rsa1, rsa2 (2048-bit), rsa-small (1024-bit), ec1, ec2 (P-256), ec384
// (P-384), ed1, ed2 (Ed25519). They are committed rather than generated so
// that fuzz seeds signed with them verify in every fuzz worker, and so that
// no test waits on RSA key generation. They protect nothing.
type testKeys map[string]jose.JSONWebKey

func loadTestKeys(tb testing.TB) testKeys {
	tb.Helper()
	b, err := os.ReadFile("testdata/test-keys.jwks.json")
	if err != nil {
		tb.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		tb.Fatal(err)
	}
	keys := make(testKeys)
	for _, k := range set.Keys {
		keys[k.KeyID] = k
	}
	return keys
}

// priv returns the private key of kid, for signing.
func (k testKeys) priv(tb testing.TB, kid string) crypto.Signer {
	tb.Helper()
	jk, ok := k[kid]
	if !ok {
		tb.Fatalf("no test key %q", kid)
	}
	return jk.Key.(crypto.Signer)
}

// pub returns the public key of kid.
func (k testKeys) pub(tb testing.TB, kid string) crypto.PublicKey {
	return k.priv(tb, kid).Public()
}

// jwks returns a public JWKS of kids, each with its kid and use "sig".
func (k testKeys) jwks(tb testing.TB, kids ...string) []byte {
	tb.Helper()
	var set jose.JSONWebKeySet
	for _, kid := range kids {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.pub(tb, kid), KeyID: kid, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sign returns a token with header hdr (alg added) and claims, signed with
// key by alg. Claims are a map so a test can put any JSON in any claim;
// json.RawMessage values go in as written.
func sign(tb testing.TB, alg string, key any, hdr map[string]any, claims map[string]any) string {
	tb.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	maps.Copy(h, hdr)
	hb, err := json.Marshal(h)
	if err != nil {
		tb.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc(hb) + "." + enc(cb)
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		tb.Fatalf("no signing method %q", alg)
	}
	sig, err := m.Sign(signing, key)
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + enc(sig)
}

// with returns base with over applied; a nil value in over deletes the claim.
func with(base, over map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range over {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// testClock is an injected clock that moves only when told to.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// quiet is a logger for tests that do not look at logs.
func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logBuffer collects log output for tests that do look, safely for the
// background refreshes that write to it.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// jwksServer is a real HTTP server serving a key set that a test can
// change, fail, or hold, and that counts the fetches it answers.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32

	mu     sync.Mutex
	body   []byte
	status int
	// hold, when not nil, makes the next fetch announce itself on entered
	// and wait for hold to be closed before answering.
	hold    chan struct{}
	entered chan struct{}
}

func newJWKSServer(tb testing.TB, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		hold, entered := s.hold, s.entered
		s.hold, s.entered = nil, nil
		s.mu.Unlock()
		if hold != nil {
			close(entered)
			<-hold
		}
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	tb.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// holdNext makes the next fetch block: it returns a channel closed when
// that fetch has arrived, and a function that lets it answer.
func (s *jwksServer) holdNext() (entered <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold, in := make(chan struct{}), make(chan struct{})
	s.hold, s.entered = hold, in
	return in, sync.OnceFunc(func() { close(hold) })
}

// writeFile replaces path's content by renaming a new file over it, as an
// operator rotating keys should, so a reader never sees half a file.
func writeFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}
