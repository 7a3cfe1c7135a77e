package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	if os.Getenv(workerEnv) == "1" {
		os.Exit(workerMain())
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
	srv := startHerald(t, buildHerald(t))
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
	})
	t.Run("fanout", func(t *testing.T) {
		res := runLoad(t, getenv, "-scenario", "fanout", "-conns", "200", "-messages", "3", "-workers", "2", "-interval", "100ms")
		if res.Connect.Established != 200 || res.Fanout == nil || res.Fanout.Delivered != 600 || res.Deliveries != 600 || res.Errors != 0 {
			t.Fatalf("established %d fanout %+v deliveries %d errors %d %v", res.Connect.Established, res.Fanout, res.Deliveries, res.Errors, res.ErrorSamples)
		}
		for _, m := range res.Fanout.Messages {
			if m.Delivered != 200 || m.ServerConns != 200 {
				t.Fatalf("message %+v", m)
			}
		}
		if res.Latency == nil || res.Latency.Count != 600 {
			t.Fatalf("latency %+v", res.Latency)
		}
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
