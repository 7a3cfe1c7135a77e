package herald

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxUserIDLen is the longest user id, in bytes, Herald accepts anywhere.
// Long enough for any UUID, e-mail address or composite key; short enough
// that a user id never dominates what a connection or a stream row costs.
const MaxUserIDLen = 256

// CheckUserID is the one rule for user ids, applied wherever one enters
// Herald: a token's "sub", an API path and a request body. A user id is
// 1 to MaxUserIDLen bytes of UTF-8, not only white space, and has no
// control characters (they would corrupt logs and the text formats that
// carry ids). The error is an EInvalidRequest *Error; callers that check a
// token re-code it as EUnauthorized.
func CheckUserID(u string) error {
	switch {
	case strings.TrimSpace(u) == "":
		return Errorf(EInvalidRequest, "user id is empty")
	case len(u) > MaxUserIDLen:
		return Errorf(EInvalidRequest, "user id is %d bytes; the limit is %d", len(u), MaxUserIDLen)
	case !utf8.ValidString(u):
		return Errorf(EInvalidRequest, "user id is not valid UTF-8")
	}
	for _, r := range u {
		if unicode.IsControl(r) {
			return Errorf(EInvalidRequest, "user id contains a control character (%U)", r)
		}
	}
	return nil
}
