package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
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

func TestParseConfigServerProcesses(t *testing.T) {
	env := func(string) string { return "" }
	two := "http://127.0.0.1:1,http://127.0.0.1:2"
	for _, tc := range []struct {
		args     []string
		wantErr  string
		pids     []int
		cpuProcs []string
	}{
		{args: []string{"-url", two, "-pids", "10, 20"}, pids: []int{10, 20}},
		{args: []string{"-url", two, "-pids", "10"}, wantErr: "-pids gives 1 process ids for 2 -url nodes"},
		{args: []string{"-url", two, "-pids", "10,x"}, wantErr: `-pids: "x" is not a process id`},
		{args: []string{"-url", two, "-pid", "10"}, wantErr: "with several -url nodes give -pids"},
		{args: []string{"-pid", "10", "-pids", "10"}, wantErr: "-pid and -pids"},
		{args: []string{"-cpu-procs", "postgres, redis-server,123"}, cpuProcs: []string{"postgres", "redis-server", "123"}},
		{args: []string{"-cpu-procs", "postgres,,redis"}, wantErr: "neither a command name nor a pid"},
		{args: []string{"-cpu-procs", "/usr/bin/postgres"}, wantErr: "neither a command name nor a pid"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, err := parseConfig(append(tc.args, "-secret", "0123456789abcdef0123456789abcdef", "-api-key", "k"), env, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			case tc.wantErr == "" && (!slices.Equal(c.PIDs, tc.pids) || !slices.Equal(c.CPUProcs, tc.cpuProcs)):
				t.Fatalf("pids %v cpu procs %q", c.PIDs, c.CPUProcs)
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

// -url takes several nodes: clients spread over their endpoints, in order,
// and the first stays the target the report and the memory probe name.
func TestParseConfigSeveralNodes(t *testing.T) {
	env := func(string) string { return "" }
	c, err := parseConfig([]string{"-url", "http://127.0.0.1:8081, http://127.0.0.1:8082/", "-secret", "0123456789abcdef0123456789abcdef", "-api-key", "k"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.endpoints(); len(got) != 2 || got[0] != "ws://127.0.0.1:8081/ws" || got[1] != "ws://127.0.0.1:8082/ws" || c.URL.String() != "http://127.0.0.1:8081" {
		t.Fatalf("endpoints %v, URL %v", got, c.URL)
	}
	if _, err := parseConfig([]string{"-url", "http://127.0.0.1:8081,ftp://x", "-secret", "0123456789abcdef0123456789abcdef", "-api-key", "k"}, env, io.Discard); err == nil {
		t.Fatal("a bad second URL was accepted")
	}
	// API calls go round the nodes.
	var hits [2]atomic.Int32
	var bases []string
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			_, _ = io.WriteString(w, "{}")
		}))
		defer srv.Close()
		bases = append(bases, srv.URL)
	}
	a := newAPIClient(bases, "k", 1)
	defer a.close()
	for range 4 {
		var out map[string]any
		if err := a.do(t.Context(), "POST", "/v1/notify", []byte("{}"), &out); err != nil {
			t.Fatal(err)
		}
	}
	if hits[0].Load() != 2 || hits[1].Load() != 2 {
		t.Fatalf("calls per node: %d, %d", hits[0].Load(), hits[1].Load())
	}
}
