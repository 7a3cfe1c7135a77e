package token

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Bearer returns the credential of r's "Authorization: Bearer …" header
// (scheme matched case-insensitively, surrounding space trimmed), or "".
func Bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) < 7 || !strings.EqualFold(a[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(a[7:])
}

// BearerIs reports whether r's bearer credential is key. The compare is
// constant-time, so a key cannot be guessed byte by byte from response
// timings; an empty key never matches.
func BearerIs(r *http.Request, key string) bool {
	return key != "" && subtle.ConstantTimeCompare([]byte(Bearer(r)), []byte(key)) == 1
}
