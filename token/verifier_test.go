package token

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

const (
	testIss = "https://id.example"
	testAud = "herald"
)

// fixture is a Verifier accepting the HS256 test secret and the keys rsa1,
// ec1 and ed1 from a JWKS file, requiring iss and aud, on a test clock.
type fixture struct {
	keys   testKeys
	clock  *testClock
	v      *Verifier
	path   string         // the JWKS file
	claims map[string]any // claims that pass every check
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{keys: loadTestKeys(t), clock: newClock()}
	f.path = filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, f.path, f.keys.jwks(t, "rsa1", "ec1", "ed1"))
	cfg := Config{
		Secret:   testSecret,
		JWKSFile: f.path,
		Issuers:  []string{"https://other.example", testIss},
		Audience: testAud,
		Now:      f.clock.Now,
		Logger:   quiet(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	f.claims = map[string]any{
		"sub": "alice",
		"exp": f.clock.Now().Add(time.Hour).Unix(),
		"iat": f.clock.Now().Unix(),
		"iss": testIss,
		"aud": testAud,
	}
	return f
}

// rs256 signs claims (the fixture's, changed by over) with rsa1 under its kid.
func (f *fixture) rs256(t *testing.T, over map[string]any) string {
	return sign(t, "RS256", f.keys.priv(t, "rsa1"), map[string]any{"kid": "rsa1"}, with(f.claims, over))
}

// checkRefusal asserts err is the EUnauthorized refusal with msg and kind,
// and does not repeat tok.
func checkRefusal(t *testing.T, tok string, err error, msg, kind string) {
	t.Helper()
	if herald.ErrorCodeOf(err) != herald.EUnauthorized {
		t.Fatalf("err = %v, want unauthorized", err)
	}
	if got := herald.ErrorMessageOf(err); got != msg {
		t.Errorf("message = %q, want %q", got, msg)
	}
	if got := FailureKind(err); got != kind {
		t.Errorf("kind = %q, want %q", got, kind)
	}
	if len(tok) > 8 && strings.Contains(err.Error(), tok) {
		t.Errorf("error repeats the token: %v", err)
	}
}

func TestVerifierRefuses(t *testing.T) {
	f := newFixture(t, nil)
	enc := base64.RawURLEncoding.EncodeToString
	now := f.clock.Now()
	good := f.rs256(t, nil)
	gp := strings.Split(good, ".")
	rsa1 := f.keys.priv(t, "rsa1")
	hs := func(claims map[string]any) string { return sign(t, "HS256", testSecret, nil, claims) }
	// A header and claims with a signature that is not checked because an
	// earlier check refuses the token.
	unsigned := func(hdr string) string { return enc([]byte(hdr)) + "." + gp[1] + "." + gp[2] }
	longAlg := "\x00" + strings.Repeat("A", 60)

	for _, tc := range []struct {
		name, tok, msg, kind string
	}{
		{"empty", "", "missing token", KindMissing},
		{"garbage", "not-a-jwt", "malformed token", KindMalformed},
		{"two parts", gp[0] + "." + gp[1], "malformed token", KindMalformed},
		{"four parts", good + ".x", "malformed token", KindMalformed},
		{"header not base64url", "!!!." + gp[1] + "." + gp[2], "malformed token", KindMalformed},
		{"header padded", gp[0] + "=." + gp[1] + "." + gp[2], "malformed token", KindMalformed},
		{"header not JSON", unsigned("nope"), "malformed token", KindMalformed},
		{"alg a number", unsigned(`{"alg":5}`), "malformed token", KindMalformed},
		{"kid a number", unsigned(`{"alg":"RS256","kid":5}`), "malformed token", KindMalformed},
		{"header null", unsigned(`null`), "malformed token", KindMalformed},
		{"header names are case-sensitive", unsigned(`{"ALG":"RS256","kid":"rsa1"}`), `token algorithm "" not allowed`, KindBadAlgorithm},
		{"crit header", sign(t, "RS256", rsa1, map[string]any{"kid": "rsa1", "crit": []string{"b64"}, "b64": false}, f.claims), "malformed token", KindMalformed},
		{"claims not JSON", func() string {
			tok := hs(f.claims)
			p := strings.Split(tok, ".")
			return p[0] + "." + enc([]byte("x")) + "." + p[2]
		}(), "malformed token", KindMalformed},
		{"signature not base64url", gp[0] + "." + gp[1] + ".***", "malformed token", KindMalformed},
		{"too long", gp[0] + "." + strings.Repeat("A", MaxTokenLen) + "." + gp[2], "malformed token", KindMalformed},

		{"alg none", enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + gp[1] + ".", `token algorithm "none" not allowed`, KindBadAlgorithm},
		{"alg missing", unsigned(`{"typ":"JWT"}`), `token algorithm "" not allowed`, KindBadAlgorithm},
		{"alg HS512", sign(t, "HS512", testSecret, nil, f.claims), `token algorithm "HS512" not allowed`, KindBadAlgorithm},
		{"alg PS256 with an RSA key", sign(t, "PS256", rsa1, map[string]any{"kid": "rsa1"}, f.claims), `token algorithm "PS256" not allowed`, KindBadAlgorithm},
		{"alg ES384", sign(t, "ES384", f.keys.priv(t, "ec384"), nil, f.claims), `token algorithm "ES384" not allowed`, KindBadAlgorithm},
		{"alg echoed sanitized and cut", unsigned(`{"alg":` + mustJSON(t, longAlg) + `}`), `token algorithm "?` + strings.Repeat("A", 39) + `..." not allowed`, KindBadAlgorithm},
		{"ES256 naming an RSA key", sign(t, "ES256", f.keys.priv(t, "ec1"), map[string]any{"kid": "rsa1"}, f.claims), `token algorithm ES256 does not match its key (kid "rsa1")`, KindBadAlgorithm},
		{"EdDSA naming an EC key", sign(t, "EdDSA", f.keys.priv(t, "ed1"), map[string]any{"kid": "ec1"}, f.claims), `token algorithm EdDSA does not match its key (kid "ec1")`, KindBadAlgorithm},

		{"unknown kid", sign(t, "RS256", f.keys.priv(t, "rsa2"), map[string]any{"kid": "rsa2"}, f.claims), `unknown signing key (kid "rsa2")`, KindUnknownKey},
		{"unknown kid echoed sanitized", unsigned(`{"alg":"EdDSA","kid":"a\nb\u00e9` + strings.Repeat("k", 50) + `"}`), `unknown signing key (kid "a?b??` + strings.Repeat("k", 35) + `...")`, KindUnknownKey},

		{"other secret", sign(t, "HS256", []byte("ffffffffffffffffffffffffffffffff"), nil, f.claims), "token signature invalid", KindBadSignature},
		{"wrong RSA key for the kid", sign(t, "RS256", f.keys.priv(t, "rsa2"), map[string]any{"kid": "rsa1"}, f.claims), "token signature invalid", KindBadSignature},
		{"tampered claims", gp[0] + "." + enc(mustJSONBytes(t, with(f.claims, map[string]any{"sub": "mallory"}))) + "." + gp[2], "token signature invalid", KindBadSignature},
		{"ES256 signature of the wrong length", func() string {
			p := strings.Split(sign(t, "ES256", f.keys.priv(t, "ec1"), map[string]any{"kid": "ec1"}, f.claims), ".")
			return p[0] + "." + p[1] + "." + enc(make([]byte, 10))
		}(), "token signature invalid", KindBadSignature},
		{"EdDSA zero signature", func() string {
			p := strings.Split(sign(t, "EdDSA", f.keys.priv(t, "ed1"), map[string]any{"kid": "ed1"}, f.claims), ".")
			return p[0] + "." + p[1] + "." + enc(make([]byte, 64))
		}(), "token signature invalid", KindBadSignature},

		{"no exp", f.rs256(t, map[string]any{"exp": nil}), "token has no exp", KindNoExpiry},
		{"exp null", f.rs256(t, map[string]any{"exp": json.RawMessage("null")}), "token has no exp", KindNoExpiry},
		{"exp a string", f.rs256(t, map[string]any{"exp": fmt.Sprint(now.Add(time.Hour).Unix())}), "token exp is not a number", KindMalformed},
		{"exp 1e400", f.rs256(t, map[string]any{"exp": json.RawMessage("1e400")}), "token exp is not a number", KindMalformed},
		{"expired past the leeway", f.rs256(t, map[string]any{"exp": now.Add(-DefaultLeeway - time.Second).Unix()}), "token expired", KindExpired},
		{"expired at exp plus leeway", f.rs256(t, map[string]any{"exp": now.Add(-DefaultLeeway).Unix()}), "token expired", KindExpired},
		{"expired long ago", f.rs256(t, map[string]any{"exp": json.RawMessage("-1e300")}), "token expired", KindExpired},
		{"nbf past the leeway", f.rs256(t, map[string]any{"nbf": now.Add(DefaultLeeway + time.Second).Unix()}), "token not valid yet", KindNotYetValid},
		{"nbf a string", f.rs256(t, map[string]any{"nbf": "soon"}), "token nbf is not a number", KindMalformed},
		{"iat past the leeway", f.rs256(t, map[string]any{"iat": now.Add(DefaultLeeway + time.Second).Unix()}), "token issued in the future", KindNotYetValid},
		{"iat a bool", f.rs256(t, map[string]any{"iat": true}), "token iat is not a number", KindMalformed},

		{"no iss", f.rs256(t, map[string]any{"iss": nil}), "token issuer not accepted", KindIssuer},
		{"other iss", f.rs256(t, map[string]any{"iss": "https://evil.example"}), "token issuer not accepted", KindIssuer},
		{"iss not a string", f.rs256(t, map[string]any{"iss": []string{testIss}}), "token issuer not accepted", KindIssuer},
		{"no aud", f.rs256(t, map[string]any{"aud": nil}), "token audience not accepted", KindAudience},
		{"other aud", f.rs256(t, map[string]any{"aud": "billing"}), "token audience not accepted", KindAudience},
		{"aud list without ours", f.rs256(t, map[string]any{"aud": []string{"billing", "admin"}}), "token audience not accepted", KindAudience},
		{"aud a number", f.rs256(t, map[string]any{"aud": 7}), "token audience not accepted", KindAudience},

		{"no sub", f.rs256(t, map[string]any{"sub": nil}), "token has no sub", KindNoSubject},
		{"sub null", f.rs256(t, map[string]any{"sub": json.RawMessage("null")}), "token has no sub", KindNoSubject},
		{"sub empty", f.rs256(t, map[string]any{"sub": ""}), "token has no sub", KindNoSubject},
		{"claim names are case-sensitive", f.rs256(t, map[string]any{"sub": nil, "SUB": "admin", "Sub": "admin"}), "token has no sub", KindNoSubject},
		{"sub blank", f.rs256(t, map[string]any{"sub": "   "}), "token sub: user id is empty", KindBadSubject},
		{"sub with a control character", f.rs256(t, map[string]any{"sub": "a\x07b"}), "token sub: user id contains a control character (U+0007)", KindBadSubject},
		{"sub too long", f.rs256(t, map[string]any{"sub": strings.Repeat("u", herald.MaxUserIDLen+1)}), "token sub: user id is 257 bytes; the limit is 256", KindBadSubject},
		{"sub an integer too long", f.rs256(t, map[string]any{"sub": json.RawMessage(strings.Repeat("9", 300))}), "token sub: user id is 300 bytes; the limit is 256", KindBadSubject},
		{"sub 4.2", f.rs256(t, map[string]any{"sub": json.RawMessage("4.2")}), "token sub is a number but not an integer", KindBadSubject},
		{"sub 42.0", f.rs256(t, map[string]any{"sub": json.RawMessage("42.0")}), "token sub is a number but not an integer", KindBadSubject},
		{"sub 4e1", f.rs256(t, map[string]any{"sub": json.RawMessage("4e1")}), "token sub is a number but not an integer", KindBadSubject},
		{"sub 1e400", f.rs256(t, map[string]any{"sub": json.RawMessage("1e400")}), "token sub is a number but not an integer", KindBadSubject},
		{"sub true", f.rs256(t, map[string]any{"sub": true}), "token sub is not a string or an integer", KindBadSubject},
		{"sub an object", f.rs256(t, map[string]any{"sub": map[string]any{"id": 42}}), "token sub is not a string or an integer", KindBadSubject},
		{"sub an array", f.rs256(t, map[string]any{"sub": []string{"alice"}}), "token sub is not a string or an integer", KindBadSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := f.v.Verify(tc.tok)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			checkRefusal(t, tc.tok, err, tc.msg, tc.kind)
		})
	}
}

func TestVerifierAccepts(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	exp := now.Add(time.Hour)
	iss, err := NewIssuer(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	iss.now = f.clock.Now
	minted, err := iss.WithClaims(testIss, testAud).Mint("bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sub := func(raw string) map[string]any { return map[string]any{"sub": json.RawMessage(raw)} }

	for _, tc := range []struct {
		name, tok string
		user      herald.UserID
		expires   time.Time
	}{
		{"HS256 minted by Issuer.WithClaims", minted, "bob", exp.Add(DefaultLeeway)},
		{"HS256", sign(t, "HS256", testSecret, nil, f.claims), "alice", exp.Add(DefaultLeeway)},
		{"RS256", f.rs256(t, nil), "alice", exp.Add(DefaultLeeway)},
		{"ES256", sign(t, "ES256", f.keys.priv(t, "ec1"), map[string]any{"kid": "ec1"}, f.claims), "alice", exp.Add(DefaultLeeway)},
		{"EdDSA", sign(t, "EdDSA", f.keys.priv(t, "ed1"), map[string]any{"kid": "ed1"}, f.claims), "alice", exp.Add(DefaultLeeway)},
		{"RS256 without kid", sign(t, "RS256", f.keys.priv(t, "rsa1"), nil, f.claims), "alice", exp.Add(DefaultLeeway)},
		{"EdDSA without kid", sign(t, "EdDSA", f.keys.priv(t, "ed1"), nil, f.claims), "alice", exp.Add(DefaultLeeway)},
		{"HS256 with a kid", sign(t, "HS256", testSecret, map[string]any{"kid": "rsa1"}, f.claims), "alice", exp.Add(DefaultLeeway)},

		{"sub 42", f.rs256(t, sub("42")), "42", exp.Add(DefaultLeeway)},
		{"sub 0", f.rs256(t, sub("0")), "0", exp.Add(DefaultLeeway)},
		{"sub -0 is 0", f.rs256(t, sub("-0")), "0", exp.Add(DefaultLeeway)},
		{"sub -5", f.rs256(t, sub("-5")), "-5", exp.Add(DefaultLeeway)},
		{"sub 2^53+1 keeps its digits", f.rs256(t, sub("9007199254740993")), "9007199254740993", exp.Add(DefaultLeeway)},
		{"sub beyond int64", f.rs256(t, sub("123456789012345678901234567890")), "123456789012345678901234567890", exp.Add(DefaultLeeway)},
		{"sub the string 42", f.rs256(t, map[string]any{"sub": "42"}), "42", exp.Add(DefaultLeeway)},
		{"sub unicode", f.rs256(t, map[string]any{"sub": "ünïcode ✓"}), "ünïcode ✓", exp.Add(DefaultLeeway)},

		{"second accepted issuer", f.rs256(t, map[string]any{"iss": "https://other.example"}), "alice", exp.Add(DefaultLeeway)},
		{"aud list with ours", f.rs256(t, map[string]any{"aud": []any{7, "billing", testAud}}), "alice", exp.Add(DefaultLeeway)},
		{"unknown claims ignored", f.rs256(t, map[string]any{"roles": []string{"admin"}, "jti": "x"}), "alice", exp.Add(DefaultLeeway)},

		{"expired within the leeway", f.rs256(t, map[string]any{"exp": now.Add(-10 * time.Second).Unix()}), "alice", now.Add(-10*time.Second + DefaultLeeway)},
		{"nbf within the leeway", f.rs256(t, map[string]any{"nbf": now.Add(10 * time.Second).Unix()}), "alice", exp.Add(DefaultLeeway)},
		{"iat within the leeway", f.rs256(t, map[string]any{"iat": now.Add(DefaultLeeway).Unix()}), "alice", exp.Add(DefaultLeeway)},
		{"fractional exp", f.rs256(t, map[string]any{"exp": json.RawMessage(fmt.Sprint(exp.Unix()) + ".5")}), "alice", exp.Add(500 * time.Millisecond).Add(DefaultLeeway)},
		{"exp far in the future", f.rs256(t, map[string]any{"exp": json.RawMessage("1e300")}), "alice", time.Unix(maxNumericDate, 0).Add(DefaultLeeway)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := f.v.Verify(tc.tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.User != tc.user || !c.Expires.Equal(tc.expires) {
				t.Fatalf("claims = %+v, want user %q expiring %v", c, tc.user, tc.expires)
			}
		})
	}
}

// TestVerifierLeeway: NoLeeway compares exp and nbf with the clock exactly,
// and Claims.Expires is then exp itself.
func TestVerifierLeeway(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Leeway = NoLeeway })
	now := f.clock.Now()
	for _, tc := range []struct {
		name string
		over map[string]any
		kind string
	}{
		{"exp 1s ago", map[string]any{"exp": now.Add(-time.Second).Unix()}, KindExpired},
		{"exp now", map[string]any{"exp": now.Unix()}, KindExpired},
		{"exp in 1s", map[string]any{"exp": now.Add(time.Second).Unix()}, ""},
		{"nbf in 1s", map[string]any{"nbf": now.Add(time.Second).Unix()}, KindNotYetValid},
		{"nbf now", map[string]any{"nbf": now.Unix()}, ""},
		{"iat in 1s", map[string]any{"iat": now.Add(time.Second).Unix()}, KindNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := f.v.Verify(f.rs256(t, tc.over))
			if got := FailureKind(err); got != tc.kind {
				t.Fatalf("kind = %q (%v), want %q", got, err, tc.kind)
			}
			if err == nil && !c.Expires.Equal(time.Unix(with(f.claims, tc.over)["exp"].(int64), 0)) {
				t.Fatalf("expires = %v, want exp", c.Expires)
			}
		})
	}
}

// TestVerifierNoKid: without a kid every key of the token's algorithm is
// tried, and a token whose algorithm has no key at all is an unknown key.
func TestVerifierNoKid(t *testing.T) {
	keys := loadTestKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, keys.jwks(t, "rsa1", "rsa2"))
	clock := newClock()
	v, err := NewVerifier(t.Context(), Config{JWKSFile: path, Now: clock.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"sub": "alice", "exp": clock.Now().Add(time.Hour).Unix()}
	for _, kid := range []string{"rsa1", "rsa2"} {
		if _, err := v.Verify(sign(t, "RS256", keys.priv(t, kid), nil, claims)); err != nil {
			t.Errorf("no kid, signed by %s: %v", kid, err)
		}
	}
	tok := sign(t, "ES256", keys.priv(t, "ec1"), nil, claims)
	_, err = v.Verify(tok)
	checkRefusal(t, tok, err, "unknown signing key (no kid, no ES256 key)", KindUnknownKey)
	tok = sign(t, "HS256", testSecret, nil, claims)
	_, err = v.Verify(tok)
	checkRefusal(t, tok, err, `token algorithm "HS256" not allowed`, KindBadAlgorithm)
}

// TestAlgorithmConfusion: a token that says HS256 and is MACed with an RSA
// public key — in any encoding an attacker might hope is used as the
// secret — or with an "oct" key published in the JWKS never verifies.
// Without a secret HS256 is not allowed at all; with one, the secret is
// the only HMAC key.
func TestAlgorithmConfusion(t *testing.T) {
	keys := loadTestKeys(t)
	pub := keys.pub(t, "rsa1").(*rsa.PublicKey)
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	jwk := keys.jwks(t, "rsa1")
	octKey := []byte("an-hmac-key-published-in-the-jwks!")
	set := fmt.Sprintf(`{"keys":[%s,{"kty":"oct","kid":"oct1","k":%q}]}`,
		strings.TrimSuffix(strings.TrimPrefix(string(jwk), `{"keys":[`), `]}`),
		base64.RawURLEncoding.EncodeToString(octKey))
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, []byte(set))

	clock := newClock()
	claims := map[string]any{"sub": "mallory", "exp": clock.Now().Add(time.Hour).Unix()}
	secrets := map[string][]byte{
		"PKIX DER":  pkix,
		"PKIX PEM":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"PKCS1 DER": x509.MarshalPKCS1PublicKey(pub),
		"PKCS1 PEM": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}),
		"JWK JSON":  jwk,
		"modulus":   pub.N.Bytes(),
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		msg    string
		kind   string
	}{
		{"JWKS only", nil, `token algorithm "HS256" not allowed`, KindBadAlgorithm},
		{"JWKS and a secret", testSecret, "token signature invalid", KindBadSignature},
	} {
		v, err := NewVerifier(t.Context(), Config{Secret: tc.secret, JWKSFile: path, Now: clock.Now, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		for name, secret := range secrets {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				tok := sign(t, "HS256", secret, map[string]any{"kid": "rsa1"}, claims)
				_, err := v.Verify(tok)
				checkRefusal(t, tok, err, tc.msg, tc.kind)
			})
		}
		t.Run(tc.name+"/oct key from the JWKS", func(t *testing.T) {
			tok := sign(t, "HS256", octKey, map[string]any{"kid": "oct1"}, claims)
			_, err := v.Verify(tok)
			checkRefusal(t, tok, err, tc.msg, tc.kind)
		})
	}

	// The HS256-only Issuer refuses RS256 outright, even validly signed.
	iss, _ := NewIssuer(testSecret)
	iss.now = clock.Now
	tok := sign(t, "RS256", keys.priv(t, "rsa1"), nil, claims)
	_, err = iss.Verify(tok)
	checkRefusal(t, tok, err, "token signature or algorithm rejected", KindBadAlgorithm)
}

func TestNewVerifierRefusesBadConfig(t *testing.T) {
	keys := loadTestKeys(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, keys.jwks(t, "rsa1"))
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, []byte(body))
		return p
	}
	closed := newJWKSServer(t, nil)
	closedURL := closed.URL
	closed.Close()
	failing := newJWKSServer(t, nil)
	failing.serve(http.StatusInternalServerError, []byte("oops"))
	unusable := fmt.Sprintf(`{"keys":[{"kty":"oct","kid":"o","k":"c2VjcmV0"},%s]}`,
		strings.TrimSuffix(strings.TrimPrefix(string(keys.jwks(t, "rsa-small")), `{"keys":[`), `]}`))

	for _, tc := range []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"nothing", Config{}, "no way to verify client tokens"},
		{"short secret", Config{Secret: []byte("short")}, "at least 32 bytes"},
		{"URL and file", Config{JWKSURL: "https://id.example/jwks", JWKSFile: good}, "not both"},
		{"refresh too short", Config{JWKSFile: good, JWKSRefresh: time.Second}, "below the minimum 10s"},
		{"empty issuer", Config{Secret: testSecret, Issuers: []string{testIss, " "}}, "issuer is empty"},
		{"ftp URL", Config{JWKSURL: "ftp://id.example/jwks"}, "absolute http or https URL"},
		{"relative URL", Config{JWKSURL: "/jwks"}, "absolute http or https URL"},
		{"URL unreachable", Config{JWKSURL: closedURL}, "load JWKS from " + closedURL},
		{"URL answers 500", Config{JWKSURL: failing.URL}, "status 500"},
		{"password redacted", Config{JWKSURL: strings.Replace(closedURL, "http://", "http://user:hunter2@", 1)}, "user:xxxxx@"},
		{"file missing", Config{JWKSFile: filepath.Join(dir, "missing.json")}, "missing.json: no such file"},
		{"file not JSON", Config{JWKSFile: write("bad.json", "nope")}, "not a JSON Web Key Set"},
		{"file without keys", Config{JWKSFile: write("empty.json", `{"keys":[]}`)}, "no keys"},
		{"file without usable keys", Config{JWKSFile: write("unusable.json", unusable)}, "no usable RS256, ES256 or EdDSA key"},
		{"file too large", Config{JWKSFile: write("large.json", `{"keys":[],"x":"`+strings.Repeat("x", maxJWKSBytes)+`"}`)}, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = quiet()
			v, err := NewVerifier(t.Context(), tc.cfg)
			if err == nil {
				t.Fatalf("NewVerifier accepted %+v: %+v", tc.cfg, v)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error repeats the URL's password: %v", err)
			}
		})
	}
}

func TestFailureKind(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.v.Verify(f.rs256(t, map[string]any{"exp": f.clock.Now().Add(-time.Hour).Unix()}))
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"not ours", errors.New("boom"), KindOther},
		{"herald error not from token", herald.Errorf(herald.EUnauthorized, "missing API key"), KindOther},
		{"from Verify", err, KindExpired},
		{"wrapped", fmt.Errorf("connect: %w", err), KindExpired},
	} {
		if got := FailureKind(tc.err); got != tc.want {
			t.Errorf("%s: FailureKind = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestFailureKindsComplete: FailureKinds lists the kinds the refusal tables
// produce, so a metric pre-created from it has every label.
func TestFailureKindsComplete(t *testing.T) {
	kinds := FailureKinds()
	for _, k := range []string{KindMissing, KindMalformed, KindBadAlgorithm, KindUnknownKey, KindBadSignature,
		KindNoExpiry, KindExpired, KindNotYetValid, KindIssuer, KindAudience, KindNoSubject, KindBadSubject} {
		if !slices.Contains(kinds, k) {
			t.Errorf("FailureKinds lacks %q", k)
		}
	}
	if slices.Contains(kinds, KindOther) {
		t.Error("FailureKinds lists KindOther, which no refusal has")
	}
}

// TestIssuerFailureKinds: the Issuer keeps its messages and gains kinds.
func TestIssuerFailureKinds(t *testing.T) {
	clock := newClock()
	iss := &Issuer{secret: testSecret, now: clock.Now}
	exp := clock.Now().Add(time.Hour).Unix()
	enc := base64.RawURLEncoding.EncodeToString
	for _, tc := range []struct {
		name, tok, msg, kind string
	}{
		{"empty", "", "missing token", KindMissing},
		{"garbage", "not-a-jwt", "invalid token", KindMalformed},
		{"expired", sign(t, "HS256", testSecret, nil, map[string]any{"sub": "7", "exp": clock.Now().Add(-time.Minute).Unix()}), "token expired", KindExpired},
		{"no exp", sign(t, "HS256", testSecret, nil, map[string]any{"sub": "7"}), "invalid token", KindNoExpiry},
		{"nbf ahead", sign(t, "HS256", testSecret, nil, map[string]any{"sub": "7", "exp": exp, "nbf": exp}), "invalid token", KindNotYetValid},
		{"other secret", sign(t, "HS256", []byte("ffffffffffffffffffffffffffffffff"), nil, map[string]any{"sub": "7", "exp": exp}), "token signature or algorithm rejected", KindBadSignature},
		{"alg none", enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"sub":"7","exp":`+fmt.Sprint(exp)+`}`)) + ".", "token signature or algorithm rejected", KindBadAlgorithm},
		{"alg HS512", sign(t, "HS512", testSecret, nil, map[string]any{"sub": "7", "exp": exp}), "token signature or algorithm rejected", KindBadAlgorithm},
		{"no sub", sign(t, "HS256", testSecret, nil, map[string]any{"exp": exp}), "token has no subject", KindNoSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := iss.Verify(tc.tok)
			checkRefusal(t, tc.tok, err, tc.msg, tc.kind)
		})
	}
}

// TestIssuerWithClaims: WithClaims stamps iss and aud on a copy and leaves
// the original as it was.
func TestIssuerWithClaims(t *testing.T) {
	iss, err := NewIssuer(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	decode := func(tok string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	stamped, _ := iss.WithClaims(testIss, testAud).Mint("7", time.Minute)
	plain, _ := iss.Mint("7", time.Minute)
	if m := decode(stamped); m["iss"] != testIss || fmt.Sprint(m["aud"]) != "["+testAud+"]" {
		t.Errorf("stamped claims = %v", m)
	}
	if m := decode(plain); m["iss"] != nil || m["aud"] != nil {
		t.Errorf("original issuer changed: %v", m)
	}
	if _, err := iss.WithClaims(testIss, testAud).Verify(stamped); err != nil {
		t.Errorf("Issuer.Verify of its own stamped token: %v", err)
	}
}

func mustJSONBytes(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t *testing.T, v any) string { return string(mustJSONBytes(t, v)) }
