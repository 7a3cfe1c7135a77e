package herald

import (
	"strings"
	"testing"
)

func TestCheckUserID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"42", true},
		{"user@example.com", true},
		{"ünïcødé-用户", true},
		{"a b", true},
		{strings.Repeat("x", MaxUserIDLen), true},
		{"", false},
		{"   ", false},
		{"\t", false},
		{strings.Repeat("x", MaxUserIDLen+1), false},
		{"bad\x00nul", false},
		{"new\nline", false},
		{"del\x7f", false},
		{"c1\u0085", false},
		{"\xff\xfe", false},
	} {
		err := CheckUserID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("CheckUserID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && ErrorCodeOf(err) != EInvalidRequest {
			t.Errorf("CheckUserID(%q) code = %s", tc.id, ErrorCodeOf(err))
		}
	}
}
