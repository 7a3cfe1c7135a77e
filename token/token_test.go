package token

import (
	"encoding/base64"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-gw/herald"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func TestMintVerify(t *testing.T) {
	iss, err := NewIssuer(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint("42", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "42" || time.Until(c.Expires) <= 0 {
		t.Fatalf("claims = %+v", c)
	}
}

func TestVerifyRejects(t *testing.T) {
	iss, _ := NewIssuer(testSecret)
	other, _ := NewIssuer([]byte("ffffffffffffffffffffffffffffffff"))
	good, _ := iss.Mint("7", time.Minute)
	foreign, _ := other.Mint("7", time.Minute)

	past := &Issuer{secret: testSecret, now: func() time.Time { return time.Now().Add(-time.Hour) }}
	expired, _ := past.Mint("7", time.Minute)

	enc := base64.RawURLEncoding.EncodeToString
	claims := enc([]byte(`{"sub":"7","exp":` + itoa(time.Now().Add(time.Hour).Unix()) + `}`))
	algNone := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + claims + "."

	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "7", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(testSecret)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "7"}).SignedString(testSecret)
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString(testSecret)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + enc([]byte(`{"sub":"8","exp":`+itoa(time.Now().Add(time.Hour).Unix())+`}`)) + "." + parts[2]

	for _, tc := range []struct {
		name, tok, msg string
	}{
		{"empty", "", "missing token"},
		{"garbage", "not-a-jwt", "invalid token"},
		{"other secret", foreign, "token signature or algorithm rejected"},
		{"expired", expired, "token expired"},
		{"alg none", algNone, "token signature or algorithm rejected"},
		{"alg HS512", hs512, "token signature or algorithm rejected"},
		{"no exp", noExp, "invalid token"},
		{"no sub", noSub, "token has no subject"},
		{"tampered claims", tampered, "token signature or algorithm rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := iss.Verify(tc.tok)
			if herald.ErrorCodeOf(err) != herald.EUnauthorized {
				t.Fatalf("err = %v, want unauthorized", err)
			}
			if got := herald.ErrorMessageOf(err); got != tc.msg {
				t.Fatalf("message = %q, want %q", got, tc.msg)
			}
		})
	}
}

func TestNewIssuerShortSecret(t *testing.T) {
	if _, err := NewIssuer([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		is           bool
	}{
		{"Bearer k1", "k1", true},
		{"bearer   k1 ", "k1", true},
		{"Basic k1", "", false},
		{"Bearer", "", false},
		{"", "", false},
		{"Bearer k2", "k2", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := Bearer(r); got != tc.want {
			t.Errorf("Bearer(%q) = %q, want %q", tc.header, got, tc.want)
		}
		if got := BearerIs(r, "k1"); got != tc.is {
			t.Errorf("BearerIs(%q, k1) = %v", tc.header, got)
		}
		if BearerIs(r, "") {
			t.Errorf("empty key matched %q", tc.header)
		}
	}
}
