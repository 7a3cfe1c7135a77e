package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-gw/herald"
)

// fuzzNow is the verifiers' clock in FuzzVerify: fixed, so that what is
// accepted never depends on when the fuzzer runs (and so that the
// Verifier never reads its JWKS file again: the rate limit never lapses).
var fuzzNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// FuzzVerify hands arbitrary strings to Issuer.Verify and Verifier.Verify.
// Neither may panic; every error must be an EUnauthorized *herald.Error
// that does not repeat the token (and, from the Verifier, has a listed
// FailureKind); and whatever either accepts is checked again here without
// the JWT library: three canonically encoded segments, a header naming an
// algorithm the key it is checked with is pinned to, a signature that the
// standard library verifies with that key over the first two segments, and
// the subject and expiry reported.
func FuzzVerify(f *testing.F) {
	iss := &Issuer{secret: testSecret, now: func() time.Time { return fuzzNow }}
	keys := loadTestKeys(f)
	path := filepath.Join(f.TempDir(), "jwks.json")
	writeFile(f, path, keys.jwks(f, "rsa1", "ec1", "ed1"))
	v, err := NewVerifier(context.Background(), Config{
		Secret:   testSecret,
		JWKSFile: path,
		Now:      func() time.Time { return fuzzNow },
		Logger:   quiet(),
	})
	if err != nil {
		f.Fatal(err)
	}

	enc := base64.RawURLEncoding.EncodeToString
	good, err := iss.Mint("user-7", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	exp := fuzzNow.Add(time.Hour).Unix()
	claims := enc([]byte(`{"sub":"7","exp":` + itoa(exp) + `}`))
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "7", "exp": exp}).SignedString(testSecret)
	c := map[string]any{"sub": "7", "exp": exp}
	num := func(sub string) map[string]any { return map[string]any{"sub": json.RawMessage(sub), "exp": exp} }
	rsaDER, _ := x509.MarshalPKIXPublicKey(keys.pub(f, "rsa1"))
	for _, seed := range []string{
		good,
		good[:len(good)-1],
		good[:strings.LastIndexByte(good, '.')+1],
		good + ".",
		enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + claims + ".",
		enc([]byte(`{"alg":"HS256","alg":"none"}`)) + "." + claims + ".",
		hs512,
		"",
		"..",
		sign(f, "RS256", keys.priv(f, "rsa1"), map[string]any{"kid": "rsa1"}, c),
		sign(f, "RS256", keys.priv(f, "rsa1"), nil, num("42")),
		sign(f, "ES256", keys.priv(f, "ec1"), map[string]any{"kid": "ec1"}, num("9007199254740993")),
		sign(f, "EdDSA", keys.priv(f, "ed1"), map[string]any{"kid": "ed1"}, num("-0")),
		sign(f, "EdDSA", keys.priv(f, "ed1"), nil, num("4.2")),
		sign(f, "HS256", rsaDER, map[string]any{"kid": "rsa1"}, c),
		sign(f, "ES256", keys.priv(f, "ec1"), map[string]any{"kid": "rsa1"}, c),
		sign(f, "RS256", keys.priv(f, "rsa2"), map[string]any{"kid": "rsa2"}, c),
		sign(f, "PS256", keys.priv(f, "rsa1"), map[string]any{"kid": "rsa1"}, c),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		checkIssuerVerify(t, iss, tok)
		checkVerifierVerify(t, v, keys, tok)
	})
}

// checkError asserts what every refusal must be.
func checkError(t *testing.T, tok string, err error) {
	t.Helper()
	if herald.ErrorCodeOf(err) != herald.EUnauthorized {
		t.Fatalf("error %v is not EUnauthorized", err)
	}
	if tok != "" && len(tok) > 8 && strings.Contains(err.Error(), tok) {
		t.Fatalf("error echoes the token: %v", err)
	}
}

// checkIssuerVerify: the HS256-only Issuer accepts only HS256 tokens MACed
// with the test secret.
func checkIssuerVerify(t *testing.T, iss *Issuer, tok string) {
	c, err := iss.Verify(tok)
	if err != nil {
		checkError(t, tok, err)
		return
	}
	enc := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted a token of %d segments", len(parts))
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err != nil || json.Unmarshal(b, &hdr) != nil || hdr.Alg != "HS256" {
		t.Fatalf("accepted header %q (alg %q)", parts[0], hdr.Alg)
	}
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		t.Fatalf("accepted a token not signed with the secret: %q", tok)
	}
	if enc(sig) != parts[2] {
		t.Fatalf("accepted a second spelling of a signature: %q", tok)
	}
	var body struct {
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil || json.Unmarshal(b, &body) != nil {
		t.Fatalf("accepted claims %q", parts[1])
	}
	if c.User == "" || string(c.User) != body.Sub || c.Expires.Before(fuzzNow) {
		t.Fatalf("claims %+v from %+v at %v", c, body, fuzzNow)
	}
}

// checkVerifierVerify: the Verifier accepts only tokens signed with the
// secret (HS256) or with rsa1 (RS256), ec1 (ES256) or ed1 (EdDSA), each
// under its own algorithm and under its kid or none.
func checkVerifierVerify(t *testing.T, v *Verifier, keys testKeys, tok string) {
	c, err := v.Verify(tok)
	if err != nil {
		checkError(t, tok, err)
		if k := FailureKind(err); !slices.Contains(FailureKinds(), k) {
			t.Fatalf("error %v has kind %q, not one of FailureKinds", err, k)
		}
		return
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted a token of %d segments", len(parts))
	}
	var seg [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != p {
			t.Fatalf("accepted segment %d not in canonical base64url: %q", i, tok)
		}
		seg[i] = b
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(seg[0], &hdr); err != nil {
		t.Fatalf("accepted header %q: %v", seg[0], err)
	}
	signed := []byte(parts[0] + "." + parts[1])
	digest := sha256.Sum256(signed)
	sig := seg[2]
	keyFor := func(kid string) crypto.PublicKey {
		if hdr.Kid != "" && hdr.Kid != kid {
			t.Fatalf("accepted %s under kid %q, which is not %s", hdr.Alg, hdr.Kid, kid)
		}
		return keys.pub(t, kid)
	}
	switch hdr.Alg {
	case "HS256":
		mac := hmac.New(sha256.New, testSecret)
		mac.Write(signed)
		if !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted HS256 not MACed with the secret: %q", tok)
		}
	case "RS256":
		if rsa.VerifyPKCS1v15(keyFor("rsa1").(*rsa.PublicKey), crypto.SHA256, digest[:], sig) != nil {
			t.Fatalf("accepted RS256 not signed by rsa1: %q", tok)
		}
	case "ES256":
		r, s := new(big.Int).SetBytes(sig[:min(32, len(sig))]), new(big.Int).SetBytes(sig[min(32, len(sig)):])
		if len(sig) != 64 || !ecdsa.Verify(keyFor("ec1").(*ecdsa.PublicKey), digest[:], r, s) {
			t.Fatalf("accepted ES256 not signed by ec1: %q", tok)
		}
	case "EdDSA":
		if !ed25519.Verify(keyFor("ed1").(ed25519.PublicKey), signed, sig) {
			t.Fatalf("accepted EdDSA not signed by ed1: %q", tok)
		}
	default:
		t.Fatalf("accepted alg %q: %q", hdr.Alg, tok)
	}

	var body struct {
		Sub json.RawMessage `json:"sub"`
		Exp json.Number     `json:"exp"`
	}
	if err := json.Unmarshal(seg[1], &body); err != nil {
		t.Fatalf("accepted claims %q: %v", seg[1], err)
	}
	var want string
	if json.Unmarshal(body.Sub, &want) != nil {
		// Not a string, so an integer written as digits: the id is them.
		want = string(body.Sub)
		if want == "-0" {
			want = "0"
		}
		if _, ok := new(big.Int).SetString(want, 10); !ok {
			t.Fatalf("accepted sub %s, neither a string nor an integer", body.Sub)
		}
	}
	if string(c.User) != want || herald.CheckUserID(want) != nil {
		t.Fatalf("user %q from sub %s", c.User, body.Sub)
	}
	exp, err := strconv.ParseFloat(string(body.Exp), 64)
	if err != nil {
		t.Fatalf("accepted exp %q", body.Exp)
	}
	if !fuzzNow.Before(time.Unix(int64(max(-maxNumericDate, min(exp, maxNumericDate))), 0).Add(DefaultLeeway + time.Second)) {
		t.Fatalf("accepted exp %v at %v", exp, fuzzNow)
	}
	if !c.Expires.After(fuzzNow) {
		t.Fatalf("claims expire at %v, not after %v", c.Expires, fuzzNow)
	}
}
