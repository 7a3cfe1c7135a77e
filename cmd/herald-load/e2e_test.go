package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	heraldpkg "github.com/herald-gw/herald"
	"github.com/herald-gw/herald/token"
)

// TestMain lets this test binary serve as herald-load's worker: run
// re-executes os.Executable(), which under "go test" is the test binary.
func TestMain(m *testing.M) {
	if v := os.Getenv(spinEnv); v != "" { // TestChildTimesPassToParent's child
		n, _ := strconv.ParseInt(v, 10, 64)
		spin(n)
		os.Exit(0)
	}
	if os.Getenv(workerEnv) == "1" {
		os.Exit(workerMain())
	}
	if isBaseline(os.Args) { // -baseline's child: this binary again
		os.Exit(baselineMain(os.Args, os.Getenv))
	}
	os.Exit(m.Run())
}

const (
	e2eSecret = "herald-load-test-secret-0123456789abcdef"
	e2eAPIKey = "herald-load-test-api-key"
)

// TestEndToEnd builds the real server, starts it on a free port and runs
// every scenario against it, checking counts, never timings.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the herald server")
	}
	bin := buildHerald(t)
	srv := startHerald(t, bin)
	env := map[string]string{"HERALD_TOKEN_SECRET": e2eSecret, "HERALD_API_KEY": e2eAPIKey, "HERALD_URL": srv.url}
	getenv := func(k string) string { return env[k] }

	t.Run("idle", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "idle", "-conns", "200", "-hold", "2s", "-local-addrs", "127.0.0.1,127.0.0.2")
		if res.Connect.Established != 200 || res.Connect.Failed != 0 || res.Errors != 0 {
			t.Fatalf("established %d failed %d errors %d %v", res.Connect.Established, res.Connect.Failed, res.Errors, res.ErrorSamples)
		}
		// The server was found from its port alone.
		if res.Server.PID != srv.pid || res.Server.RSSAfterKB <= 0 || res.Server.Conns != 200 {
			t.Fatalf("server %+v, want pid %d", res.Server, srv.pid)
		}
		// Its CPU over the hold (a timing, not checked).
		if res.Idle == nil || res.Idle.ServerCPU == nil || res.Idle.ServerCPU.PID != srv.pid || res.Idle.ServerCPU.WindowS <= 0 {
			t.Fatalf("idle %+v", res.Idle)
		}
	})
	t.Run("fanout", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "fanout", "-conns", "200", "-messages", "3", "-workers", "2", "-interval", "100ms")
		wantFanout(t, res, 200, 3)
	})
	t.Run("notify", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "notify", "-conns", "50", "-msg-rate", "200", "-duration", "2s")
		n := res.Notify
		if n == nil || n.Sent == 0 || n.APIErrors != 0 || n.Delivered != n.Sent || n.Expected != n.Sent || res.Errors != 0 {
			t.Fatalf("notify %+v errors %d %v", n, res.Errors, res.ErrorSamples)
		}
		if res.Latency == nil || res.Latency.Count != uint64(n.Sent) {
			t.Fatalf("latency %+v, sent %d", res.Latency, n.Sent)
		}
		// One request per message; the server's CPU is read (its value is
		// a timing, not checked).
		if n.Batch != 1 || n.Requests != n.Sent || n.ServerCPU == nil || n.ServerCPU.PID != srv.pid {
			t.Fatalf("batch %d requests %d sent %d server cpu %+v %s", n.Batch, n.Requests, n.Sent, n.ServerCPU, n.ServerCPUNote)
		}
	})
	// -batch 50: the same messages through POST /v1/batch. A wait longer
	// than 50 messages take to come makes nearly every batch full.
	t.Run("notify batch", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "notify", "-conns", "50", "-msg-rate", "1000", "-duration", "1s", "-batch", "50", "-batch-wait", "100ms")
		n := res.Notify
		if n == nil || n.Sent == 0 || n.APIErrors != 0 || n.Delivered != n.Sent || n.Expected != n.Sent || res.Errors != 0 || res.Missing != 0 {
			t.Fatalf("notify %+v errors %d %v", n, res.Errors, res.ErrorSamples)
		}
		if res.Latency == nil || res.Latency.Count != uint64(n.Sent) || res.Deliveries != n.Sent {
			t.Fatalf("latency %+v deliveries %d, sent %d", res.Latency, res.Deliveries, n.Sent)
		}
		if n.Batch != 50 || n.Requests < (n.Sent+49)/50 || n.Requests >= n.Sent {
			t.Fatalf("batch %d: %d requests for %d messages", n.Batch, n.Requests, n.Sent)
		}
		if n.ServerCPU == nil || n.ServerCPU.PID != srv.pid {
			t.Fatalf("server cpu %+v %s", n.ServerCPU, n.ServerCPUNote)
		}
	})
	t.Run("churn", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "churn", "-conns", "100", "-users", "50", "-churn-rate", "100", "-duration", "1s")
		c := res.Churn
		if c == nil || c.Closed == 0 || c.Reconnected != c.Closed || c.Failed != 0 || res.Errors != 0 {
			t.Fatalf("churn %+v errors %d %v", c, res.Errors, res.ErrorSamples)
		}
		if c.HubChecked == 0 || len(c.HubMismatches) != 0 {
			t.Fatalf("hub check: %s %v", c.HubCheck, c.HubMismatches)
		}
	})
	// resume: every client leaves, 3 messages per user are stored, every
	// client comes back with resume and must get exactly those, each
	// offset once. Two workers, two connections per user, both client I/O
	// modes: each connection resumes from its own offset.
	// Over SSE the clients reconnect with Last-Event-ID instead.
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"resume", []string{"-conns", "50"}},
		{"resume shared users", []string{"-conns", "50", "-users", "25", "-workers", "2", "-client-io", "goroutine"}},
		{"sse resume", []string{"-conns", "50", "-transport", "sse"}},
		{"sse resume shared users", []string{"-conns", "50", "-users", "25", "-workers", "2", "-client-io", "goroutine", "-transport", "sse"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const conns, messages = 50, 3
			csvPath := filepath.Join(t.TempDir(), "resume.csv")
			res := runLoad(t, getenv, append([]string{"-scenario", "resume", "-messages", fmt.Sprint(messages), "-csv", csvPath}, tc.args...)...)
			rs := res.Resume
			if res.Connect.Established != conns || rs == nil || res.Errors != 0 || res.Missing != 0 {
				t.Fatalf("established %d resume %+v errors %d missing %d %v", res.Connect.Established, rs, res.Errors, res.Missing, res.ErrorSamples)
			}
			// Primed live, one message per user reaching each connection.
			if rs.Primed != conns || rs.PrimeDelivered != conns || rs.PrimeExpected != conns || res.Deliveries != conns {
				t.Fatalf("primed %d, priming %d/%d, deliveries %d", rs.Primed, rs.PrimeDelivered, rs.PrimeExpected, res.Deliveries)
			}
			if rs.Disconnected != conns || rs.Stored != int64(res.Users*messages) || rs.StoredLive != 0 {
				t.Fatalf("disconnected %d, stored %d (%d users), stored live %d", rs.Disconnected, rs.Stored, res.Users, rs.StoredLive)
			}
			// Every connection got every message stored while it was away,
			// each offset once, and nothing else.
			if rs.Reconnected != conns || rs.Failed != 0 || rs.CaughtUp != conns ||
				rs.Expected != conns*messages || rs.Replayed != conns*messages || rs.Behind != 0 ||
				rs.Gaps != 0 || rs.Duplicates != 0 || rs.Resets != 0 {
				t.Fatalf("resume %+v", rs)
			}
			if rs.CatchUp == nil || rs.CatchUp.Count != conns || rs.Reconnect == nil || rs.Reconnect.Count != conns {
				t.Fatalf("catch-up %+v reconnect %+v", rs.CatchUp, rs.Reconnect)
			}
			if rs.ServerCPU == nil || rs.ServerCPU.PID != srv.pid {
				t.Fatalf("server cpu %+v %s", rs.ServerCPU, rs.ServerCPUNote)
			}
			var table bytes.Buffer
			if err := writeResult(&table, &res, false); err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`replay integrity\s+gaps 0, duplicates 0, resets 0, never replayed 0`).MatchString(table.String()) {
				t.Fatalf("table:\n%s", table.String())
			}
			rows := readCSVFile(t, csvPath)
			if len(rows) != 2 || csvField(t, rows, "replayed") != fmt.Sprint(conns*messages) || csvField(t, rows, "gaps") != "0" {
				t.Fatalf("csv %q", rows)
			}
		})
	}
	// The scenarios over Server-Sent Events: the same counts must come
	// out of the same loads.
	t.Run("sse idle", func(t *testing.T) {
		res := runLoad(t, getenv, "-transport", "sse", "-scenario", "idle", "-conns", "200", "-hold", "2s", "-local-addrs", "127.0.0.1,127.0.0.2")
		if res.Transport != "sse" || res.Connect.Established != 200 || res.Connect.Failed != 0 || res.Errors != 0 {
			t.Fatalf("transport %q established %d failed %d errors %d %v", res.Transport, res.Connect.Established, res.Connect.Failed, res.Errors, res.ErrorSamples)
		}
		if res.Server.PID != srv.pid || res.Server.RSSAfterKB <= 0 || res.Server.Conns != 200 {
			t.Fatalf("server %+v, want pid %d", res.Server, srv.pid)
		}
	})
	t.Run("sse fanout", func(t *testing.T) {
		res := runLoad(t, getenv, "-transport", "sse", "-scenario", "fanout", "-conns", "200", "-messages", "3", "-workers", "2", "-interval", "100ms")
		wantFanout(t, res, 200, 3)
	})
	// Both client I/O modes: the epoll loop and a read goroutine each.
	for _, clientIO := range []string{"epoll", "goroutine"} {
		t.Run("sse notify "+clientIO, func(t *testing.T) {
			res := runLoad(t, getenv, "-transport", "sse", "-client-io", clientIO, "-scenario", "notify", "-conns", "50", "-msg-rate", "200", "-duration", "2s")
			n := res.Notify
			if n == nil || n.Sent == 0 || n.APIErrors != 0 || n.Delivered != n.Sent || n.Expected != n.Sent || res.Errors != 0 {
				t.Fatalf("notify %+v errors %d %v", n, res.Errors, res.ErrorSamples)
			}
			// The timestamp in the payload came through the envelope.
			if res.Latency == nil || res.Latency.Count != uint64(n.Sent) {
				t.Fatalf("latency %+v, sent %d", res.Latency, n.Sent)
			}
		})
	}
	t.Run("sse churn", func(t *testing.T) {
		res := runLoad(t, getenv, "-transport", "sse", "-scenario", "churn", "-conns", "100", "-users", "50", "-churn-rate", "100", "-duration", "1s")
		c := res.Churn
		if c == nil || c.Closed == 0 || c.Reconnected != c.Closed || c.Failed != 0 || res.Errors != 0 {
			t.Fatalf("churn %+v errors %d %v", c, res.Errors, res.ErrorSamples)
		}
		if c.HubChecked == 0 || len(c.HubMismatches) != 0 {
			t.Fatalf("hub check: %s %v", c.HubCheck, c.HubMismatches)
		}
	})
	t.Run("sse fanout baseline", func(t *testing.T) {
		res := runLoad(t, getenv, "-transport", "sse", "-scenario", "fanout", "-conns", "200", "-messages", "3", "-interval", "100ms", "-baseline")
		b := res.Baseline
		if b == nil || b.Server.PID == 0 || b.Server.PID == srv.pid {
			t.Fatalf("baseline %+v (herald pid %d)", b, srv.pid)
		}
		for name, r := range map[string]*result{"baseline": b, "herald": &res} {
			if r.Transport != "sse" || r.Connect.Established != 200 || r.Fanout == nil || r.Fanout.Delivered != 600 || r.Deliveries != 600 || r.Errors != 0 {
				t.Fatalf("%s: transport %q established %d fanout %+v deliveries %d errors %d %v", name, r.Transport, r.Connect.Established, r.Fanout, r.Deliveries, r.Errors, r.ErrorSamples)
			}
		}
		if v := res.VsBaseline; v == nil || v.DeliveriesPerSec <= 0 {
			t.Fatalf("comparison %+v", v)
		}
		checkGone(t, b.Server.PID)
	})
	t.Run("sse notify baseline", func(t *testing.T) {
		res := runLoad(t, getenv, "-transport", "sse", "-scenario", "notify", "-conns", "60", "-users", "30", "-msg-rate", "300", "-duration", "1s", "-baseline")
		b := res.Baseline
		if b == nil || b.Server.PID == 0 {
			t.Fatalf("baseline %+v", b)
		}
		for name, r := range map[string]*result{"baseline": b, "herald": &res} {
			n := r.Notify
			if n == nil || n.Sent == 0 || n.APIErrors != 0 || n.Expected != 2*n.Sent || n.Delivered != n.Expected || r.Missing != 0 || r.Errors != 0 {
				t.Fatalf("%s: notify %+v missing %d errors %d %v", name, n, r.Missing, r.Errors, r.ErrorSamples)
			}
		}
		checkGone(t, b.Server.PID)
	})
	// -baseline runs the identical load against the raw baseline first and
	// compares; the baseline child must be gone afterwards.
	t.Run("fanout baseline", func(t *testing.T) {
		csvPath := filepath.Join(t.TempDir(), "fanout.csv")
		res := runLoad(t, getenv, "-scenario", "fanout", "-conns", "200", "-messages", "3", "-workers", "2", "-interval", "100ms", "-baseline", "-csv", csvPath)
		b := res.Baseline
		if b == nil || b.URL == res.URL || b.Server.PID == 0 || b.Server.PID == srv.pid {
			t.Fatalf("baseline %+v (herald at %s pid %d)", b, res.URL, srv.pid)
		}
		for name, r := range map[string]*result{"baseline": b, "herald": &res} {
			if r.Connect.Established != 200 || r.Fanout == nil || r.Fanout.Delivered != 600 || r.Deliveries != 600 || r.Errors != 0 {
				t.Fatalf("%s: established %d fanout %+v deliveries %d errors %d %v", name, r.Connect.Established, r.Fanout, r.Deliveries, r.Errors, r.ErrorSamples)
			}
			for _, m := range r.Fanout.Messages {
				if m.Delivered != 200 || m.ServerConns != 200 {
					t.Fatalf("%s: message %+v", name, m)
				}
			}
		}
		if v := res.VsBaseline; v == nil || v.DeliveriesPerSec <= 0 || v.LastDelivery <= 0 {
			t.Fatalf("comparison %+v", v)
		}
		checkGone(t, b.Server.PID)

		var table bytes.Buffer
		if err := writeResult(&table, &res, false); err != nil {
			t.Fatal(err)
		}
		for _, re := range []string{`(?m)^BASELINE\s`, `fanout deliveries/s: Herald \d+, baseline \d+, ratio Herald/baseline \d`, `time to last delivery: .* ratio`} {
			if !regexp.MustCompile(re).MatchString(table.String()) {
				t.Fatalf("table does not match %s:\n%s", re, table.String())
			}
		}
		rows := readCSVFile(t, csvPath)
		if len(rows) != 2 || csvField(t, rows, "conns") != "200" || csvField(t, rows, "delivered") != "600" || csvField(t, rows, "ratio_deliveries_per_s") == "" ||
			csvField(t, rows, "baseline_deliveries_per_s") == "" || csvField(t, rows, "transport") != "ws" {
			t.Fatalf("csv %q", rows)
		}
	})
	// notify against the baseline: it routes each payload to its user's
	// connections by the token's sub, so every message must arrive there
	// too, and the CPU comparison must be filled in.
	for _, batch := range []string{"1", "20"} {
		t.Run("notify baseline batch "+batch, func(t *testing.T) {
			csvPath := filepath.Join(t.TempDir(), "notify.csv")
			res := runLoad(t, getenv, "-scenario", "notify", "-conns", "60", "-users", "30", "-msg-rate", "300", "-duration", "1s", "-batch", batch, "-baseline", "-csv", csvPath)
			b := res.Baseline
			if b == nil || b.Server.PID == 0 || b.Server.PID == srv.pid {
				t.Fatalf("baseline %+v (herald pid %d)", b, srv.pid)
			}
			for name, r := range map[string]*result{"baseline": b, "herald": &res} {
				n := r.Notify
				// Two connections per user: each message reaches two.
				if n == nil || n.Sent == 0 || n.APIErrors != 0 || n.Expected != 2*n.Sent || n.Delivered != n.Expected || r.Missing != 0 || r.Errors != 0 {
					t.Fatalf("%s: notify %+v missing %d errors %d %v", name, n, r.Missing, r.Errors, r.ErrorSamples)
				}
				if n.ServerCPU == nil {
					t.Fatalf("%s: server cpu %s", name, n.ServerCPUNote)
				}
			}
			if v := res.VsBaseline; v == nil || v.ExtraCPUPer1000 == nil || v.P99Latency <= 0 {
				t.Fatalf("comparison %+v", v)
			}
			checkGone(t, b.Server.PID)
			var table bytes.Buffer
			if err := writeResult(&table, &res, false); err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`server cpu per 1,000 messages: Herald [\d.]+ ms, baseline [\d.]+ ms`).MatchString(table.String()) {
				t.Fatalf("table:\n%s", table.String())
			}
			rows := readCSVFile(t, csvPath)
			if len(rows) != 2 || csvField(t, rows, "baseline_cpu_ms_per_1k_msgs") == "" {
				t.Fatalf("csv %q", rows)
			}
		})
	}
	t.Run("idle baseline", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "idle", "-conns", "100", "-hold", "500ms", "-baseline")
		b := res.Baseline
		if b == nil || b.Connect.Established != 100 || b.Errors != 0 || b.Server.Conns != 100 || b.Server.RSSAfterKB <= 0 {
			t.Fatalf("baseline %+v", b)
		}
		if res.Connect.Established != 100 || res.Errors != 0 || res.Server.Conns != 100 || res.VsBaseline == nil || res.VsBaseline.ExtraKBPerConn == nil {
			t.Fatalf("herald %+v vs %+v", res.Server, res.VsBaseline)
		}
		checkGone(t, b.Server.PID)
	})
	t.Run("token file", func(t *testing.T) {
		iss, err := token.NewIssuer([]byte(e2eSecret))
		if err != nil {
			t.Fatal(err)
		}
		var file strings.Builder
		file.WriteString("# five users, each connected twice\n\n")
		for u := range 5 {
			tok, err := iss.Mint(heraldpkg.UserID(fmt.Sprint("file-user-", u)), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			file.WriteString(tok + "\n")
		}
		path := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		// No secret in the environment: the file is the only source.
		noSecret := func(k string) string {
			if k == "HERALD_TOKEN_SECRET" {
				return ""
			}
			return getenv(k)
		}
		res := runLoad(t, noSecret, "-scenario", "notify", "-conns", "10", "-token-file", path, "-msg-rate", "50", "-duration", "500ms")
		n := res.Notify
		// Each message reaches both connections of its user.
		if res.Connect.Established != 10 || res.Users != 5 || n == nil || n.Sent == 0 || n.Expected != 2*n.Sent || n.Delivered != n.Expected || res.Errors != 0 {
			t.Fatalf("established %d users %d notify %+v errors %d %v", res.Connect.Established, res.Users, n, res.Errors, res.ErrorSamples)
		}
	})
	// Two nodes (-url a,b): each one's pid found from its port, its
	// memory and connections reported on their own, and the CPU summed
	// over both and the processes -cpu-procs names. The servers share
	// nothing, so a message reaches the connections of the node it was
	// sent through only, which the counts allow for.
	t.Run("two nodes", func(t *testing.T) {
		srv2 := startHerald(t, bin)
		urls := srv.url + "," + srv2.url
		res := runLoad(t, getenv, "-url", urls, "-scenario", "idle", "-conns", "201", "-hold", "1s")
		s := res.Server
		if res.Connect.Established != 201 || res.Errors != 0 || s.PID != srv.pid || len(s.Nodes) != 2 || s.Conns != 201 {
			t.Fatalf("established %d errors %d server %+v", res.Connect.Established, res.Errors, s)
		}
		for k, want := range []struct {
			pid   int
			conns int64
		}{{srv.pid, 101}, {srv2.pid, 100}} {
			n := s.Nodes[k]
			if n.PID != want.pid || n.Conns != want.conns || n.RSSAfterKB <= 0 {
				t.Fatalf("node %d: %+v, want pid %d with %d connections", k+1, n, want.pid, want.conns)
			}
		}
		if s.RSSAfterKB != s.Nodes[0].RSSAfterKB+s.Nodes[1].RSSAfterKB {
			t.Fatalf("server %+v: its RSS is not the nodes' sum", s)
		}
		if id := res.Idle; id == nil || id.ServerCPU == nil || len(id.ServerCPU.Parts) != 2 || id.ServerCPU.Parts[1].PID != srv2.pid {
			t.Fatalf("idle %+v", id)
		}

		res = runLoad(t, getenv, "-url", urls, "-scenario", "notify", "-conns", "40", "-msg-rate", "200", "-duration", "1s",
			"-cpu-procs", "herald,no-such-process", "-pids", fmt.Sprintf("%d,%d", srv.pid, srv2.pid))
		n := res.Notify
		if n == nil || n.Sent == 0 || n.APIErrors != 0 || n.Delivered != n.Expected || res.Errors != 0 {
			t.Fatalf("notify %+v errors %d %v", n, res.Errors, res.ErrorSamples)
		}
		c := n.ServerCPU
		if c == nil || c.PID != srv.pid || len(c.Parts) != 4 {
			t.Fatalf("server cpu %+v %s", c, n.ServerCPUNote)
		}
		var sum int64
		for i, want := range []string{"node 1", "node 2", "herald", "no-such-process"} {
			if c.Parts[i].Name != want {
				t.Fatalf("part %d: %+v, want %s", i, c.Parts[i], want)
			}
			sum += c.Parts[i].Ms
		}
		// The nodes are counted by pid, not again by their name.
		if c.Parts[1].PID != srv2.pid || c.Parts[3].ProcsStart != 0 || c.Parts[3].ProcsEnd != 0 || sum != c.Ms {
			t.Fatalf("server cpu %+v", c)
		}
		var table bytes.Buffer
		if err := writeResult(&table, &res, false); err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`server cpu\s+\d+ ms over .* summed over node 1, node 2, herald, no-such-process`).MatchString(table.String()) {
			t.Fatalf("table:\n%s", table.String())
		}
	})
	t.Run("table", func(t *testing.T) {
		var out bytes.Buffer
		err := run(context.Background(), []string{"herald-load", "-scenario", "idle", "-conns", "20", "-hold", "100ms"}, getenv, &out, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`connections\s+20 established of 20, 0 failed`).MatchString(out.String()) ||
			!regexp.MustCompile(`errors\s+0 `).MatchString(out.String()) {
			t.Fatalf("table:\n%s", out.String())
		}
	})
}

// TestBadServer checks that a run against nothing fails cleanly: every
// connect fails and is counted, the run stops and still reports.
func TestBadServer(t *testing.T) {
	env := map[string]string{"HERALD_TOKEN_SECRET": e2eSecret}
	var out bytes.Buffer
	err := run(context.Background(), []string{"herald-load", "-url", "http://127.0.0.1:1", "-conns", "5", "-hold", "10ms", "-json", "-dial-timeout", "1s"},
		func(k string) string { return env[k] }, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no connection") {
		t.Fatalf("err = %v", err)
	}
	var res result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.Connect.Failed != 5 || res.Errors < 5 || res.Server.Note == "" || res.Aborted == "" {
		t.Fatalf("failed %d errors %d note %q", res.Connect.Failed, res.Errors, res.Server.Note)
	}
}

// TestBaselineStopped checks that the baseline child is stopped however
// the run ends: when the target cannot be reached, and when the run is
// interrupted while the baseline is being measured.
func TestBaselineStopped(t *testing.T) {
	env := map[string]string{"HERALD_TOKEN_SECRET": e2eSecret}
	getenv := func(k string) string { return env[k] }
	t.Run("target down", func(t *testing.T) {
		var out bytes.Buffer
		err := run(context.Background(), []string{"herald-load", "-url", "http://127.0.0.1:1", "-conns", "5", "-hold", "10ms", "-json", "-dial-timeout", "1s", "-baseline"},
			getenv, &out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "no connection") {
			t.Fatalf("err = %v", err)
		}
		var res result
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if b := res.Baseline; b == nil || b.Connect.Established != 5 || b.Errors != 0 || res.Connect.Failed != 5 {
			t.Fatalf("baseline %+v, target failed %d", b, res.Connect.Failed)
		}
		checkGone(t, res.Baseline.Server.PID)
	})
	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Cancel (as Ctrl-C would) as soon as the baseline is up.
		pids := make(chan int, 1)
		stderr := &watchWriter{marker: "baseline at ", fn: func(line string) {
			var pid int
			if i := strings.Index(line, "(pid "); i >= 0 {
				if _, err := fmt.Sscanf(line[i:], "(pid %d)", &pid); err == nil {
					select {
					case pids <- pid:
					default:
					}
				}
			}
			cancel()
		}}
		err := run(ctx, []string{"herald-load", "-url", "http://127.0.0.1:1", "-conns", "5", "-hold", "1h", "-json", "-baseline"}, getenv, io.Discard, stderr)
		if err == nil {
			t.Fatal("an interrupted run succeeded")
		}
		select {
		case pid := <-pids:
			checkGone(t, pid)
		default:
			t.Fatalf("no baseline started; err = %v", err)
		}
	})
}

// watchWriter is a stderr that calls fn with every write (a line, here)
// containing marker.
type watchWriter struct {
	marker string
	fn     func(line string)
}

func (w *watchWriter) Write(p []byte) (int, error) {
	if s := string(p); strings.Contains(s, w.marker) {
		w.fn(s)
	}
	return len(p), nil
}

// checkGone fails unless process pid has exited (and was reaped).
func checkGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no pid")
	}
	if processExists(pid) {
		t.Fatalf("baseline process %d still exists", pid)
	}
}

func readCSVFile(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// csvField returns column name of the first row below the header.
func csvField(t *testing.T, rows [][]string, name string) string {
	t.Helper()
	i := slices.Index(rows[0], name)
	if i < 0 || len(rows) < 2 {
		t.Fatalf("no column %q in %q", name, rows)
	}
	return rows[1][i]
}

func runLoad(t *testing.T, getenv func(string) string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, append([]string{"herald-load", "-json"}, args...), getenv, &out, &errOut); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, errOut.String())
	}
	// Workers' stderr is copied there: a race report (under -race) or a
	// panic in one would otherwise go unseen.
	if s := errOut.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic") {
		t.Fatalf("worker trouble:\n%s", s)
	}
	var res result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("result: %v\n%s", err, out.String())
	}
	t.Logf("%s", out.String())
	return res
}

// buildHerald builds cmd/herald into a temporary directory. The server is
// package main, so a separate binary is the only way to run it from here.
func buildHerald(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; this test builds the herald server with it")
	}
	bin := filepath.Join(t.TempDir(), "herald")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/herald-gw/herald/cmd/herald")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald: %v\n%s", err, out)
	}
	return bin
}

type heraldProc struct {
	url string
	pid int
}

var listenRE = regexp.MustCompile(`listening on (https?://\S+)`)

// startHerald starts the server on a free loopback port with an in-memory
// store and waits for its "listening on" line.
func startHerald(t *testing.T, bin string) heraldProc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"HERALD_ADDR=127.0.0.1:0", "HERALD_DB=:memory:", "HERALD_LOG_LEVEL=warn",
		"HERALD_TOKEN_SECRET="+e2eSecret, "HERALD_API_KEY="+e2eAPIKey, "HERALD_DRAIN_TIMEOUT=1s",
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				urls <- strings.Replace(m[1], "localhost", "127.0.0.1", 1)
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("herald did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("herald stderr:\n%s", stderr.String())
		}
	})
	select {
	case u := <-urls:
		return heraldProc{url: u, pid: cmd.Process.Pid}
	case err := <-exited:
		t.Fatalf("herald exited: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("herald did not start")
	}
	return heraldProc{}
}

// wantFanout checks a fanout run of conns connections and msgs
// broadcasts: every one delivered to every connection, each timed.
func wantFanout(t *testing.T, res result, conns, msgs int64) {
	t.Helper()
	all := conns * msgs
	if res.Connect.Established != conns || res.Fanout == nil || res.Fanout.Delivered != all || res.Deliveries != all || res.Errors != 0 {
		t.Fatalf("established %d fanout %+v deliveries %d errors %d %v", res.Connect.Established, res.Fanout, res.Deliveries, res.Errors, res.ErrorSamples)
	}
	for _, m := range res.Fanout.Messages {
		if m.Delivered != conns || int64(m.ServerConns) != conns {
			t.Fatalf("message %+v", m)
		}
	}
	if res.Latency == nil || res.Latency.Count != uint64(all) {
		t.Fatalf("latency %+v", res.Latency)
	}
}
