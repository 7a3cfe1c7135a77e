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
		{[]string{"-scenario", "notify", "-baseline"}, ""},
		{[]string{"-scenario", "churn", "-baseline"}, "-baseline works with the idle, fanout and notify scenarios"},
		{[]string{"-scenario", "resume"}, ""},
		{[]string{"-scenario", "resume", "-baseline"}, "-baseline works with the idle, fanout and notify scenarios"},
		{[]string{"-scenario", "rewind"}, "want idle, fanout, notify, churn or resume"},
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

// Workers' shares are contiguous, cover every connection once and differ
// in size by one at most: the resume targets rely on specs and workerShare
// agreeing.
func TestWorkerShare(t *testing.T) {
	for _, tc := range []struct{ conns, workers int }{{1, 1}, {10, 3}, {50, 2}, {19001, 2}, {7, 7}} {
		c := config{Conns: tc.conns, Workers: tc.workers}
		next := 0
		for w := range tc.workers {
			first, n := c.workerShare(w)
			if first != next || n < tc.conns/tc.workers || n > tc.conns/tc.workers+1 {
				t.Fatalf("%+v worker %d: first %d n %d, want first %d", tc, w, first, n, next)
			}
			next += n
		}
		if next != tc.conns {
			t.Fatalf("%+v: %d connections shared", tc, next)
		}
	}
}
