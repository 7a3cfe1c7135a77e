package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-gw/herald"
)

// fuzzNow is the verifier's clock in FuzzVerify: fixed, so that what is
// accepted never depends on when the fuzzer runs.
var fuzzNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// FuzzVerify hands arbitrary strings to Verify. It must never panic, every
// error must be an EUnauthorized *herald.Error, and whatever it accepts must
// be checked again here without the JWT library: three segments, a header
// naming HS256, an HMAC-SHA256 with the test secret over the first two
// segments, and the subject and expiry it reports.
func FuzzVerify(f *testing.F) {
	iss := &Issuer{secret: testSecret, now: func() time.Time { return fuzzNow }}
	enc := base64.RawURLEncoding.EncodeToString
	good, err := iss.Mint("user-7", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	claims := enc([]byte(`{"sub":"7","exp":` + itoa(fuzzNow.Add(time.Hour).Unix()) + `}`))
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "7", "exp": fuzzNow.Add(time.Hour).Unix()}).SignedString(testSecret)
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
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := iss.Verify(tok)
		if err != nil {
			if herald.ErrorCodeOf(err) != herald.EUnauthorized {
				t.Fatalf("error %v is not EUnauthorized", err)
			}
			if tok != "" && len(tok) > 8 && strings.Contains(err.Error(), tok) {
				t.Fatalf("error echoes the token: %v", err)
			}
			return
		}
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
	})
}
