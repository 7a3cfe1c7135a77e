package token

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// urlFixture is a Verifier on a JWKS served over real HTTP by srv.
type urlFixture struct {
	keys  testKeys
	clock *testClock
	srv   *jwksServer
	v     *Verifier
	logs  *logBuffer
}

func newURLFixture(t *testing.T, kids ...string) *urlFixture {
	t.Helper()
	u := &urlFixture{keys: loadTestKeys(t), clock: newClock(), logs: &logBuffer{}}
	u.srv = newJWKSServer(t, u.keys.jwks(t, kids...))
	v, err := NewVerifier(t.Context(), Config{
		JWKSURL: u.srv.URL + "/.well-known/jwks.json",
		Now:     u.clock.Now,
		Logger:  slog.New(slog.NewTextHandler(u.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	u.v = v
	return u
}

// token returns a token for alice signed with kid's key under kid (with
// rsa1's key for a kid that has no test key), valid for a day so that
// advancing the clock never expires it.
func (u *urlFixture) token(t *testing.T, kid string) string {
	t.Helper()
	alg, signer := "RS256", "rsa1"
	switch {
	case strings.HasPrefix(kid, "rsa"):
		signer = kid
	case strings.HasPrefix(kid, "ec"):
		alg, signer = "ES256", kid
	case strings.HasPrefix(kid, "ed"):
		alg, signer = "EdDSA", kid
	}
	claims := map[string]any{"sub": "alice", "exp": newClock().Now().Add(24 * time.Hour).Unix()}
	return sign(t, alg, u.keys.priv(t, signer), map[string]any{"kid": kid}, claims)
}

// expect verifies kid's token and checks the outcome (kind "" = accepted)
// and the number of fetches the server has answered (-1: not checked, for
// a Verify that may have started a background fetch).
func (u *urlFixture) expect(t *testing.T, kid, kind string, fetches int32) {
	t.Helper()
	_, err := u.v.Verify(u.token(t, kid))
	if got := FailureKind(err); got != kind {
		t.Fatalf("token of %s: kind %q (%v), want %q", kid, got, err, kind)
	}
	if got := u.srv.fetches.Load(); fetches >= 0 && got != fetches {
		t.Fatalf("after token of %s: %d fetches, want %d", kid, got, fetches)
	}
}

// waitBackground waits for the periodic refresh a Verify may have started.
func (u *urlFixture) waitBackground() { u.v.jwks.bg.Wait() }

func TestJWKSFromURL(t *testing.T) {
	u := newURLFixture(t, "rsa1", "ec1", "ed1")
	for _, kid := range []string{"rsa1", "ec1", "ed1"} {
		u.expect(t, kid, "", 1)
	}
	if !strings.Contains(u.logs.String(), "JWKS loaded") {
		t.Errorf("no load logged:\n%s", u.logs)
	}
}

// TestJWKSRotation: a token with a kid the set lacks makes the verifier
// fetch the set again, at most once per MinJWKSRefresh.
func TestJWKSRotation(t *testing.T) {
	u := newURLFixture(t, "rsa1")
	u.expect(t, "rsa1", "", 1)
	u.srv.serve(http.StatusOK, u.keys.jwks(t, "rsa2", "ec2"))

	// The set was read at start, less than MinJWKSRefresh ago: no fetch.
	u.expect(t, "rsa2", KindUnknownKey, 1)
	u.clock.Advance(MinJWKSRefresh)
	u.expect(t, "rsa2", "", 2)
	u.expect(t, "ec2", "", 2)
	// rsa1 was withdrawn; the fetch it asks for is within the rate limit.
	u.expect(t, "rsa1", KindUnknownKey, 2)
	u.clock.Advance(MinJWKSRefresh - time.Nanosecond)
	u.expect(t, "nope1", KindUnknownKey, 2)
	u.clock.Advance(time.Nanosecond)
	u.expect(t, "nope1", KindUnknownKey, 3)
	if !strings.Contains(u.logs.String(), "JWKS refreshed") {
		t.Errorf("rotation not logged:\n%s", u.logs)
	}
}

// TestJWKSSingleFlight: tokens arriving while a fetch is under way wait for
// it rather than starting their own. 5,000 tokens with made-up kids cost
// one fetch; a burst of tokens signed with a new key all verify after one.
func TestJWKSSingleFlight(t *testing.T) {
	u := newURLFixture(t, "rsa1")
	burst := func(t *testing.T, toks []string, wantKind string) {
		t.Helper()
		entered, release := u.srv.holdNext()
		defer release()
		const workers = 500
		errs := make(chan error, len(toks))
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(toks); i += workers {
					_, err := u.v.Verify(toks[i])
					errs <- err
				}
			})
		}
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatal("no fetch started")
		}
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			if got := FailureKind(err); got != wantKind {
				t.Fatalf("kind %q (%v), want %q", got, err, wantKind)
			}
		}
	}

	// Made-up kids. The signature is never looked at: no key is found.
	good := strings.Split(u.token(t, "rsa1"), ".")
	bogus := make([]string, 5000)
	for i := range bogus {
		hdr := fmt.Sprintf(`{"alg":"RS256","kid":"bogus-%d"}`, i)
		bogus[i] = base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + good[1] + "." + good[2]
	}
	u.clock.Advance(MinJWKSRefresh)
	burst(t, bogus, KindUnknownKey)
	if got := u.srv.fetches.Load(); got != 2 {
		t.Fatalf("5000 unknown kids: %d fetches in all, want 2 (start and one refresh)", got)
	}

	// A newly published key.
	u.srv.serve(http.StatusOK, u.keys.jwks(t, "rsa1", "ed2"))
	u.clock.Advance(MinJWKSRefresh)
	fresh := slices.Repeat([]string{u.token(t, "ed2")}, 1000)
	burst(t, fresh, "")
	if got := u.srv.fetches.Load(); got != 3 {
		t.Fatalf("1000 tokens of a new key: %d fetches in all, want 3", got)
	}
}

// TestJWKSFailedRefreshKeepsKeys: whatever way a refresh fails, the last
// good set keeps verifying, and the failure is logged.
func TestJWKSFailedRefreshKeepsKeys(t *testing.T) {
	u := newURLFixture(t, "rsa1")
	fetches := int32(1)
	for _, tc := range []struct {
		name   string
		status int
		body   string
		logged string
	}{
		{"server error", http.StatusInternalServerError, "oops", "status 500"},
		{"not found", http.StatusNotFound, "", "status 404"},
		{"not JSON", http.StatusOK, "<html>", "not a JSON Web Key Set"},
		{"no keys", http.StatusOK, `{"keys":[]}`, "no keys"},
		{"no usable keys", http.StatusOK, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, "no usable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.srv.serve(tc.status, []byte(tc.body))
			// A periodic refresh, in the background.
			u.clock.Advance(DefaultJWKSRefresh)
			fetches++
			u.expect(t, "rsa1", "", -1)
			u.waitBackground()
			u.expect(t, "rsa1", "", fetches)
			// A refresh for an unknown kid, in the foreground.
			u.clock.Advance(MinJWKSRefresh)
			fetches++
			u.expect(t, "rsa2", KindUnknownKey, fetches)
			u.expect(t, "rsa1", "", fetches)
			if !strings.Contains(u.logs.String(), tc.logged) {
				t.Errorf("log lacks %q:\n%s", tc.logged, u.logs)
			}
		})
	}
	if !strings.Contains(u.logs.String(), "JWKS refresh failed; keeping the last good keys") {
		t.Errorf("failures not logged:\n%s", u.logs)
	}
	// Recovery replaces the set.
	u.srv.serve(http.StatusOK, u.keys.jwks(t, "rsa2"))
	u.clock.Advance(MinJWKSRefresh)
	fetches++
	u.expect(t, "rsa2", "", fetches)
	u.expect(t, "rsa1", KindUnknownKey, fetches)
}

// TestJWKSPeriodicRefresh: the set is read again every JWKSRefresh, in the
// background, so a withdrawn key stops verifying without a restart.
func TestJWKSPeriodicRefresh(t *testing.T) {
	u := newURLFixture(t, "rsa1", "rsa2")
	u.srv.serve(http.StatusOK, u.keys.jwks(t, "rsa2"))
	u.clock.Advance(DefaultJWKSRefresh - time.Nanosecond)
	u.expect(t, "rsa1", "", 1)
	u.waitBackground()
	u.expect(t, "rsa1", "", 1)
	u.clock.Advance(time.Nanosecond)
	// Due: this Verify starts a background fetch and does not wait for it.
	u.expect(t, "rsa2", "", -1)
	u.waitBackground()
	u.expect(t, "rsa1", KindUnknownKey, 2)
	u.expect(t, "rsa2", "", 2)
}

// TestJWKSRefreshNow: Refresh ignores the rate limit and reports failures.
func TestJWKSRefreshNow(t *testing.T) {
	u := newURLFixture(t, "rsa1")
	u.srv.serve(http.StatusOK, u.keys.jwks(t, "rsa2"))
	if err := u.v.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	u.expect(t, "rsa2", "", 2)
	u.srv.serve(http.StatusBadGateway, nil)
	if err := u.v.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "status 502") {
		t.Fatalf("Refresh of a failing source: %v", err)
	}
	u.expect(t, "rsa2", "", 3)

	// Without a JWKS there is nothing to refresh.
	v, err := NewVerifier(t.Context(), Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestJWKSFileRotation: keys in a file rotate by replacing the file; a
// broken or missing file keeps the keys last read.
func TestJWKSFileRotation(t *testing.T) {
	keys := loadTestKeys(t)
	clock := newClock()
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, keys.jwks(t, "ed1"))
	v, err := NewVerifier(t.Context(), Config{JWKSFile: path, Now: clock.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"sub": "alice", "exp": clock.Now().Add(24 * time.Hour).Unix()}
	tok := func(kid string) string {
		return sign(t, "EdDSA", keys.priv(t, kid), map[string]any{"kid": kid}, claims)
	}
	check := func(kid, kind string) {
		t.Helper()
		if _, err := v.Verify(tok(kid)); FailureKind(err) != kind {
			t.Fatalf("token of %s: %v, want kind %q", kid, err, kind)
		}
	}
	check("ed1", "")
	writeFile(t, path, keys.jwks(t, "ed2"))
	check("ed2", KindUnknownKey) // read at start, within the rate limit
	clock.Advance(MinJWKSRefresh)
	check("ed2", "")
	check("ed1", KindUnknownKey)

	writeFile(t, path, []byte("{broken"))
	clock.Advance(DefaultJWKSRefresh)
	check("ed2", "")
	v.jwks.bg.Wait()
	check("ed2", "")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	clock.Advance(MinJWKSRefresh)
	check("ed1", KindUnknownKey)
	check("ed2", "")
}

// TestJWKSSkipsUnusableKeys: keys Herald will not use are skipped (and
// logged at start) without failing the set; the rest verify.
func TestJWKSSkipsUnusableKeys(t *testing.T) {
	keys := loadTestKeys(t)
	clock := newClock()
	one := func(kid string) string {
		s := string(keys.jwks(t, kid))
		return strings.TrimSuffix(strings.TrimPrefix(s, `{"keys":[`), `]}`)
	}
	withMember := func(key, member string) string { return strings.TrimSuffix(key, "}") + "," + member + "}" }
	priv, err := keys["ed1"].MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	set := "{\"keys\":[" + strings.Join([]string{
		`{"kty":"oct","kid":"oct1","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}`,
		one("ec384"),
		one("rsa-small"),
		strings.Replace(one("rsa2"), `"use":"sig"`, `"use":"enc"`, 1),
		withMember(one("ec2"), `"alg":"ES384"`),
		`{"kty":"XYZ","kid":"future"}`,
		`{"kty":"OKP","crv":"X25519","kid":"x25519","x":"3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08"}`,
		string(priv), // ed1 with its private half: the public half is used
		withMember(one("rsa1"), `"alg":"RS256"`),
		withMember(one("ed2"), `"alg":"Ed25519"`),
	}, ",") + "]}"
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, []byte(set))
	logs := &logBuffer{}
	v, err := NewVerifier(t.Context(), Config{JWKSFile: path, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"sub": "alice", "exp": clock.Now().Add(time.Hour).Unix()}
	for _, tc := range []struct {
		alg, kid, kind string
	}{
		{"RS256", "rsa1", ""},
		{"EdDSA", "ed1", ""},
		{"EdDSA", "ed2", ""},
		{"HS256", "oct1", KindBadAlgorithm},
		{"ES384", "ec384", KindBadAlgorithm},
		{"RS256", "rsa-small", KindUnknownKey},
		{"RS256", "rsa2", KindUnknownKey},
		{"ES256", "ec2", KindUnknownKey},
	} {
		key := any([]byte("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"))
		if tc.alg != "HS256" {
			key = keys.priv(t, tc.kid)
		}
		_, err := v.Verify(sign(t, tc.alg, key, map[string]any{"kid": tc.kid}, claims))
		if got := FailureKind(err); got != tc.kind {
			t.Errorf("%s %s: kind %q (%v), want %q", tc.alg, tc.kid, got, err, tc.kind)
		}
	}
	for _, why := range []string{"symmetric (oct) keys are never used", "only P-256", "RSA key of 1024 bits", "is not sig", "verifies only ES256", "unsupported key type"} {
		if !strings.Contains(logs.String(), why) {
			t.Errorf("log lacks %q:\n%s", why, logs)
		}
	}
}

// TestVerifyCachedNeverWaits: VerifyCached refuses a token of an unknown
// key while the fetch it started is still held by the server, and the key
// verifies once that fetch is done.
func TestVerifyCachedNeverWaits(t *testing.T) {
	u := newURLFixture(t, "rsa1")
	u.srv.serve(http.StatusOK, u.keys.jwks(t, "rsa1", "ec2"))
	u.clock.Advance(MinJWKSRefresh)
	entered, release := u.srv.holdNext()
	defer release()
	tok := u.token(t, "ec2")
	done := make(chan error, 1)
	go func() {
		_, err := u.v.VerifyCached(tok)
		done <- err
	}()
	select {
	case err := <-done:
		if FailureKind(err) != KindUnknownKey {
			t.Fatalf("while the fetch is held: %v, want unknown_key", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("VerifyCached waited for the fetch")
	}
	<-entered
	// More tokens of the unknown key neither wait nor fetch again.
	if _, err := u.v.VerifyCached(tok); FailureKind(err) != KindUnknownKey {
		t.Fatalf("second try while held: %v", err)
	}
	release()
	u.waitBackground()
	if c, err := u.v.VerifyCached(tok); err != nil || c.User != "alice" {
		t.Fatalf("after the fetch: %+v, %v", c, err)
	}
	if got := u.srv.fetches.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2", got)
	}
}
