package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseConfigBaselineFlags(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-scenario", "fanout", "-baseline"}, ""},
		{[]string{"-scenario", "fanout", "-baseline", "-baseline-after"}, ""},
		{[]string{"-scenario", "fanout", "-baseline-after"}, "-baseline-after needs -baseline"},
		{[]string{"-scenario", "notify", "-baseline", "-secret", "0123456789abcdef0123456789abcdef"}, "-baseline works with the idle and fanout scenarios"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, err := parseConfig(append(tc.args, "-secret", "0123456789abcdef0123456789abcdef", "-api-key", "k"), env, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			case tc.wantErr == "" && c.BaselineAfter != strings.Contains(strings.Join(tc.args, " "), "-baseline-after"):
				t.Fatalf("BaselineAfter = %v", c.BaselineAfter)
			}
		})
	}
}
