package token

import (
	"errors"
	"fmt"
	"strings"

	"github.com/herald-gw/herald"
)

// Failure kinds: the stable, machine-readable reason a token was refused,
// for metrics labels and logs. The 401 message says the same for humans and
// may be reworded; a kind is never renamed. The set is small and fixed so a
// metric labelled by kind has bounded cardinality.
const (
	KindMissing      = "missing"       // no token at all
	KindMalformed    = "malformed"     // not three base64url parts of JSON, too long, crit header, a claim of the wrong JSON type
	KindBadAlgorithm = "bad_algorithm" // alg not allowed, or not the one its key is pinned to
	KindUnknownKey   = "unknown_key"   // no key with the token's kid (or, without kid, for its alg), even after a refresh
	KindBadSignature = "bad_signature" // the signature does not verify
	KindNoExpiry     = "no_expiry"     // no exp claim
	KindExpired      = "expired"       // exp (plus leeway) has passed
	KindNotYetValid  = "not_yet_valid" // nbf or iat is in the future (beyond leeway)
	KindIssuer       = "issuer"        // iss missing or not accepted
	KindAudience     = "audience"      // aud missing or without the required audience
	KindNoSubject    = "no_subject"    // no sub, or an empty one
	KindBadSubject   = "bad_subject"   // sub not a string or an integer, or not a valid user id
	KindOther        = "other"         // an error that did not come from this package
)

// FailureKinds lists every kind FailureKind returns for a refused token, so
// a metric can be created with all its label values at zero.
func FailureKinds() []string {
	return []string{
		KindMissing, KindMalformed, KindBadAlgorithm, KindUnknownKey, KindBadSignature,
		KindNoExpiry, KindExpired, KindNotYetValid, KindIssuer, KindAudience,
		KindNoSubject, KindBadSubject,
	}
}

// FailureKind returns the kind of a Verify error: one of the Kind*
// constants, KindOther for an error this package did not make, and "" for
// nil.
func FailureKind(err error) string {
	if err == nil {
		return ""
	}
	var f *failure
	if errors.As(err, &f) {
		return f.kind
	}
	return KindOther
}

// failure carries a refusal's kind inside the *herald.Error's Err, where
// FailureKind finds it and logs see it, and the cause (a library error
// that never holds the token itself) for operators.
type failure struct {
	kind  string
	cause error
}

func (f *failure) Error() string {
	if f.cause != nil {
		return f.kind + ": " + f.cause.Error()
	}
	return f.kind
}

func (f *failure) Unwrap() error { return f.cause }

// refuse returns the EUnauthorized error for a refusal of kind, with a
// client-facing message and an optional cause kept for logs.
func refuse(kind string, cause error, format string, args ...any) *herald.Error {
	return &herald.Error{
		Code:    herald.EUnauthorized,
		Message: fmt.Sprintf(format, args...),
		Err:     &failure{kind: kind, cause: cause},
	}
}

// maxEcho is the most bytes of a header value (kid, alg) a message repeats.
const maxEcho = 40

// echo makes an attacker-chosen header value safe to repeat in a message
// and a log line: printable ASCII only (anything else becomes '?'), at most
// maxEcho bytes, cut ones ending in "...". Quoting is left to %q.
func echo(s string) string {
	cut := len(s) > maxEcho
	if cut {
		s = s[:maxEcho]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}
