package lambdahost

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNew(t *testing.T) {
	ok := Function{Name: "ok", Command: []string{"/bin/true"}}
	tests := []struct {
		name string
		opts Options
		fns  []Function
		want string // in the error; "" = valid
	}{
		{"valid", Options{}, []Function{ok, {Name: "A_b-9", Command: []string{"x"}}}, ""},
		{"no functions", Options{}, nil, ""},
		{"empty name", Options{}, []Function{{Command: []string{"x"}}}, "name must match"},
		{"dot in name", Options{}, []Function{{Name: "a.b", Command: []string{"x"}}}, "name must match"},
		{"65 characters", Options{}, []Function{{Name: strings.Repeat("a", 65), Command: []string{"x"}}}, "name must match"},
		{"64 characters", Options{}, []Function{{Name: strings.Repeat("a", 64), Command: []string{"x"}}}, ""},
		{"duplicate", Options{}, []Function{ok, ok}, "defined twice"},
		{"no command", Options{}, []Function{{Name: "f"}}, "empty command"},
		{"empty argv[0]", Options{}, []Function{{Name: "f", Command: []string{""}}}, "empty command"},
		{"negative timeout", Options{}, []Function{{Name: "f", Command: []string{"x"}, Timeout: -1}}, "negative timeout"},
		{"negative concurrency", Options{}, []Function{{Name: "f", Command: []string{"x"}, Concurrency: -1}}, "negative concurrency"},
		{"bad env name", Options{}, []Function{{Name: "f", Command: []string{"x"}, Env: map[string]string{"A=B": "c"}}}, "invalid variable name"},
		{"bad shared env", Options{Env: map[string]string{"": "x"}}, nil, "invalid variable name"},
		{"negative init timeout", Options{InitTimeout: -time.Second}, nil, "negative InitTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(tt.opts, tt.fns...)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error with %q", err, tt.want)
			}
			if h != nil {
				t.Fatal("New returned a host with its error")
			}
		})
	}

	h, err := New(Options{}, Function{Name: "zeta", Command: []string{"x"}}, Function{Name: "alpha", Command: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Names(); !slices.Equal(got, []string{"alpha", "zeta"}) {
		t.Errorf("Names = %v", got)
	}
	if !h.Has("alpha") || h.Has("beta") {
		t.Errorf("Has(alpha) = %v, Has(beta) = %v", h.Has("alpha"), h.Has("beta"))
	}
	// Lambda's defaults.
	f := h.fns["alpha"]
	if f.timeout != 3*time.Second || f.size != 1 || f.baseEnv["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] != "128" ||
		f.baseEnv["AWS_REGION"] != "us-east-1" || h.initTimeout != 10*time.Second {
		t.Errorf("defaults: timeout %v, concurrency %d, memory %s, region %s, init timeout %v",
			f.timeout, f.size, f.baseEnv["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], f.baseEnv["AWS_REGION"], h.initTimeout)
	}
}

func TestInvokeUnknownFunction(t *testing.T) {
	h, _ := newHost(t, Options{}, testFunction("echo"))
	_, err := h.Invoke(context.Background(), "nope", []byte(`{}`))
	if herald.ErrorCodeOf(err) != herald.ENotFound {
		t.Fatalf("Invoke(nope) = %v, want %s", err, herald.ENotFound)
	}
	if !strings.Contains(err.Error(), "arn:aws:lambda:us-east-1:000000000000:function:nope") {
		t.Errorf("error %q does not name the function's ARN", err)
	}
}

// TestEcho: a payload goes in and the response comes out; the function
// sees Lambda's context (request id, ARN, deadline, trace id); its output
// is logged line by line; the process is reused.
func TestEcho(t *testing.T) {
	t.Parallel()
	h, logs := newHost(t, Options{}, testFunction("echo"))

	before := time.Now()
	res := invoke(t, h, "echo", map[string]any{"do": "echo", "msg": "héllo"})
	after := time.Now()
	var out echo
	decodeOK(t, res, &out)
	if out.Msg != "héllo" {
		t.Errorf("msg = %q", out.Msg)
	}
	if !uuidRE.MatchString(out.RequestID) {
		t.Errorf("request id %q is not a UUID", out.RequestID)
	}
	if want := "arn:aws:lambda:us-east-1:000000000000:function:echo"; out.ARN != want {
		t.Errorf("ARN = %q, want %q", out.ARN, want)
	}
	// The deadline is the timeout after delivery, which lies between
	// before and after.
	if lo, hi := before.Add(time.Minute).UnixMilli(), after.Add(time.Minute).UnixMilli(); out.DeadlineMS < lo || out.DeadlineMS > hi {
		t.Errorf("deadline %d not in [%d, %d]", out.DeadlineMS, lo, hi)
	}
	if !regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$`).MatchString(out.TraceID) {
		t.Errorf("trace id = %q", out.TraceID)
	}

	var again echo
	decodeOK(t, invoke(t, h, "echo", map[string]any{"do": "echo"}), &again)
	if again.PID != out.PID {
		t.Errorf("second invocation ran in pid %d, want the warm %d", again.PID, out.PID)
	}
	if again.RequestID == out.RequestID {
		t.Error("two invocations share a request id")
	}
	if n := starts(h, "echo"); n != 1 {
		t.Errorf("%d cold starts, want 1", n)
	}

	for stream, line := range map[string]string{"stdout": "echo: stdout line", "stderr": "echo: stderr line"} {
		eventually(t, stream+" logged", func() bool {
			return logs.has(slog.LevelInfo, "function output", map[string]string{"function": "echo", "stream": stream, "line": line})
		})
	}
	if !logs.has(slog.LevelInfo, "function process started", map[string]string{"function": "echo", "pid": strconv.Itoa(out.PID)}) {
		t.Error("the start was not logged")
	}
}

// TestFunctionErrors: what a function reports as an error reaches the
// caller as Lambda's document, and the function goes on serving.
func TestFunctionErrors(t *testing.T) {
	t.Parallel()
	h, logs := newHost(t, Options{}, testFunction("f"), Function{
		Name: "bad", Command: []string{fnBinary}, Env: map[string]string{"FN_INIT": "badhandler"},
	})
	tests := []struct {
		name     string
		fn       string
		req      map[string]any
		wantType string
		wantMsg  string
		stack    bool
	}{
		{"returned error", "f", map[string]any{"do": "error", "msg": "boom"}, "errorString", "boom", false},
		{"panic", "f", map[string]any{"do": "panic", "msg": "oops"}, "string", "oops", true},
		{"response reader fails", "f", map[string]any{"do": "reader"}, "errorString", "reader broke", false},
		{"response over 6 MB", "f", map[string]any{"do": "big", "size": maxResponseSize}, "Function.ResponseSizeTooLarge",
			"Response payload size exceeded maximum allowed payload size (6291556 bytes).", false},
		{"invalid handler", "bad", map[string]any{"do": "echo"}, "errorString", "handler kind int is not func", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := decodeError(t, invoke(t, h, tt.fn, tt.req))
			if doc.Type != tt.wantType || doc.Message != tt.wantMsg {
				t.Errorf("error = %s %q, want %s %q", doc.Type, doc.Message, tt.wantType, tt.wantMsg)
			}
			if (len(doc.StackTrace) > 0) != tt.stack {
				t.Errorf("stack trace %v, want one: %v", doc.StackTrace, tt.stack)
			}
			if tt.fn == "f" {
				echoPID(t, h, "f") // and the function still works
			}
		})
	}
	if !logs.has(slog.LevelInfo, "function returned an error", map[string]string{"function": "f", "error_type": "errorString"}) {
		t.Error("the function error was not logged")
	}

	// Exactly the limit is fine: a JSON string of size-2 characters.
	res := invoke(t, h, "f", map[string]any{"do": "big", "size": maxResponseSize - 2})
	if res.Error != "" || len(res.Payload) != maxResponseSize {
		t.Errorf("a response of exactly the limit: Error %q, %d bytes", res.Error, len(res.Payload))
	}
}

// TestTimeout: an invocation past its timeout gets Lambda's
// Sandbox.Timedout document, its process is killed, and the next
// invocation runs in a new one.
func TestTimeout(t *testing.T) {
	t.Parallel()
	fn := testFunction("slow")
	fn.Timeout = 2 * time.Second
	h, logs := newHost(t, Options{}, fn)
	first := echoPID(t, h, "slow")

	doc := decodeError(t, invoke(t, h, "slow", map[string]any{"do": "sleep"}))
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9a-f-]{36} Task timed out after 2\.00 seconds$`)
	if doc.Type != "Sandbox.Timedout" || !re.MatchString(doc.Message) {
		t.Errorf("timeout error = %s %q", doc.Type, doc.Message)
	}
	if !logs.has(slog.LevelWarn, "function timed out; process killed", map[string]string{"function": "slow", "pid": strconv.Itoa(first)}) {
		t.Error("the timeout was not logged")
	}

	if second := echoPID(t, h, "slow"); second == first {
		t.Errorf("after a timeout the function ran in the killed process %d again", first)
	}
	eventually(t, "the killed process reaped", func() bool {
		return logs.has(slog.LevelInfo, "function process stopped", map[string]string{"pid": strconv.Itoa(first), "status": "signal: killed"})
	})
}

// TestCrash: a process that exits while holding an invocation gives it
// Runtime.ExitError; the next invocation runs in a new process.
func TestCrash(t *testing.T) {
	t.Parallel()
	h, logs := newHost(t, Options{}, testFunction("crash"))
	tests := []struct {
		code int
		want string
	}{
		{3, "Runtime exited with error: exit status 3"},
		{0, "Runtime exited without providing a reason"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			first := echoPID(t, h, "crash")
			doc := decodeError(t, invoke(t, h, "crash", map[string]any{"do": "exit", "code": tt.code}))
			re := regexp.MustCompile(`^RequestId: [0-9a-f-]{36} Error: ` + regexp.QuoteMeta(tt.want) + `$`)
			if doc.Type != "Runtime.ExitError" || !re.MatchString(doc.Message) {
				t.Errorf("crash error = %s %q", doc.Type, doc.Message)
			}
			if second := echoPID(t, h, "crash"); second == first {
				t.Errorf("pid %d served again after it exited", first)
			}
			if !logs.has(slog.LevelWarn, "function crashed during an invocation", map[string]string{"pid": strconv.Itoa(first)}) {
				t.Error("the crash was not logged")
			}
		})
	}
}

// TestInitFailure: a process that cannot start gives the invocation that
// started it an error document; the function then backs off (Invoke fails
// fast with the same document, starting nothing), retries after the
// backoff, doubles it, and recovers once the function is mended.
func TestInitFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind     string // FN_INIT_FILE's content, or "missing" for a command that does not exist
		wantType string
		wantMsg  *regexp.Regexp
		exact    string // the whole document, when the function posted it
	}{
		{kind: "fail", wantType: "Runtime.TestInitFailure",
			exact: `{"errorMessage":"cannot reach the database","errorType":"Runtime.TestInitFailure"}`},
		{kind: "exit", wantType: "Runtime.ExitError",
			wantMsg: regexp.MustCompile(`^RequestId: [0-9a-f-]{36} Error: Runtime exited with error: exit status 1$`)},
		{kind: "hang", wantType: "Sandbox.Timedout",
			wantMsg: regexp.MustCompile(`^\S+Z [0-9a-f-]{36} Init timed out after 3\.00 seconds$`)},
		{kind: "missing", wantType: "Runtime.InvalidEntrypoint",
			wantMsg: regexp.MustCompile(`^RequestId: [0-9a-f-]{36} Error: fork/exec .*/missing-fn: no such file or directory$`)},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			initFile := filepath.Join(dir, "init")
			fn := testFunction("broken")
			fn.Env = map[string]string{"FN_INIT_FILE": initFile}
			if tt.kind == "missing" {
				fn.Command = []string{filepath.Join(dir, "missing-fn")}
			} else if err := os.WriteFile(initFile, []byte(tt.kind), 0o600); err != nil {
				t.Fatal(err)
			}
			h, logs := newHost(t, Options{InitTimeout: 3 * time.Second}, fn)
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			h.now = clock.Now

			check := func(step string, res Result, wantStarts int) {
				t.Helper()
				doc := decodeError(t, res)
				if doc.Type != tt.wantType {
					t.Errorf("%s: errorType %q, want %q", step, doc.Type, tt.wantType)
				}
				if tt.exact != "" && string(res.Payload) != tt.exact {
					t.Errorf("%s: document %s, want the posted %s", step, res.Payload, tt.exact)
				}
				if tt.wantMsg != nil && !tt.wantMsg.MatchString(doc.Message) {
					t.Errorf("%s: errorMessage %q, want %v", step, doc.Message, tt.wantMsg)
				}
				if n := starts(h, "broken"); n != wantStarts {
					t.Errorf("%s: %d cold starts, want %d", step, n, wantStarts)
				}
			}
			req := map[string]any{"do": "echo"}
			first := invoke(t, h, "broken", req)
			check("first", first, 1)
			during := invoke(t, h, "broken", req)
			check("during the backoff", during, 1)
			if !bytes.Equal(during.Payload, first.Payload) {
				t.Errorf("fast failure %s, want the last init error %s", during.Payload, first.Payload)
			}

			clock.Advance(backoffBase) // the first backoff is over
			check("after the backoff", invoke(t, h, "broken", req), 2)
			clock.Advance(2*backoffBase - time.Millisecond) // the second, doubled, is not
			check("during the doubled backoff", invoke(t, h, "broken", req), 2)
			if !logs.has(slog.LevelWarn, "function init failed", map[string]string{"function": "broken", "error_type": tt.wantType, "failures": "2"}) {
				t.Error("the init failure was not logged")
			}

			// Mend the function.
			if tt.kind == "missing" {
				if err := os.Symlink(fnBinary, fn.Command[0]); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(initFile); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Millisecond)
			var out echo
			decodeOK(t, invoke(t, h, "broken", req), &out)
			if n := starts(h, "broken"); n != 3 {
				t.Errorf("mended: %d cold starts, want 3", n)
			}
			f := h.fns["broken"]
			f.mu.Lock()
			failures := f.failures
			f.mu.Unlock()
			if failures != 0 {
				t.Errorf("after a good init the failure count is %d", failures)
			}
		})
	}
}

// TestConcurrency: Concurrency=N runs N invocations at once, each in a
// process of its own. The function only returns once all N are inside it,
// so a host that ran them one after another would fail this test.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	const n = 3
	fn := testFunction("par")
	fn.Concurrency = n
	h, _ := newHost(t, Options{}, fn)
	dir := t.TempDir()

	type outcome struct {
		res Result
		err error
	}
	results := make(chan outcome, n)
	for range n {
		go func() {
			res, err := invokeErr(h, "par", map[string]any{"do": "barrier", "dir": dir, "n": n})
			results <- outcome{res, err}
		}()
	}
	pids := map[int]bool{}
	for range n {
		o := <-results
		if o.err != nil {
			t.Fatal(o.err)
		}
		var out struct{ PID int }
		decodeOK(t, o.res, &out)
		pids[out.PID] = true
	}
	if len(pids) != n {
		t.Errorf("%d invocations ran in %d processes, want %d", n, len(pids), n)
	}
	if pid := echoPID(t, h, "par"); !pids[pid] {
		t.Errorf("a later invocation ran in a new process %d instead of a warm one", pid)
	}
	if s := starts(h, "par"); s != n {
		t.Errorf("%d cold starts, want %d", s, n)
	}
}

// TestQueueing: beyond Concurrency an invocation waits for a free process,
// and gives up with ETooManyRequests when its context ends first.
func TestQueueing(t *testing.T) {
	t.Parallel()
	fn := testFunction("one")
	h, _ := newHost(t, Options{}, fn)
	release := filepath.Join(t.TempDir(), "release")

	held := make(chan Result, 1)
	go func() {
		res, err := invokeErr(h, "one", map[string]any{"do": "hold", "file": release})
		if err != nil {
			res = Result{Error: err.Error()}
		}
		held <- res
	}()
	eventually(t, "the first invocation to hold the process", func() bool {
		_, err := os.Stat(release + ".started")
		return err == nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := h.Invoke(ctx, "one", []byte(`{"do":"echo"}`))
	if herald.ErrorCodeOf(err) != herald.ETooManyRequests || !errors.Is(err, context.Canceled) {
		t.Fatalf("Invoke with every process busy and ctx done = %v, want %s wrapping context.Canceled", err, herald.ETooManyRequests)
	}

	queued := make(chan Result, 1)
	go func() {
		res, err := invokeErr(h, "one", map[string]any{"do": "echo"})
		if err != nil {
			res = Result{Error: err.Error()}
		}
		queued <- res
	}()
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var a, b struct{ PID int }
	decodeOK(t, <-held, &a)
	decodeOK(t, <-queued, &b)
	if a.PID != b.PID || starts(h, "one") != 1 {
		t.Errorf("the queued invocation ran in pid %d (first %d, %d starts), want the one process", b.PID, a.PID, starts(h, "one"))
	}
}

// TestEnvironment: a function sees Lambda's variables and its own, and
// nothing of Herald's environment but PATH, HOME, TZ and LANG.
func TestEnvironment(t *testing.T) {
	t.Setenv("HERALD_LAMBDAHOST_CANARY", "a secret of Herald's")
	t.Setenv("TZ", "Europe/Berlin")
	t.Setenv("LANG", "C.UTF-8")
	dir := t.TempDir()
	fn := testFunction("envfn")
	fn.Dir = dir
	fn.MemoryMB = 512
	fn.Env = map[string]string{
		"OWN":                    "fn",
		"SHARED":                 "fn wins",
		"AWS_REGION":             "fn-region-1",
		"AWS_LAMBDA_RUNTIME_API": "192.0.2.1:9",
	}
	h, _ := newHost(t, Options{Region: "eu-west-1", Env: map[string]string{"SHARED": "opts", "FROM_OPTS": "opts"}}, fn)

	var out struct {
		Env map[string]string
		Cwd string
	}
	decodeOK(t, invoke(t, h, "envfn", map[string]any{"do": "env"}), &out)
	env := out.Env

	if _, ok := env["HERALD_LAMBDAHOST_CANARY"]; ok {
		t.Error("Herald's environment leaked into the function")
	}
	allowed := map[string]bool{
		"PATH": true, "HOME": true, "TZ": true, "LANG": true,
		"OWN": true, "SHARED": true, "FROM_OPTS": true, "LAMBDA_TASK_ROOT": true, "_HANDLER": true,
		"_X_AMZN_TRACE_ID": true, // set by aws-lambda-go itself for each invocation
	}
	for k := range env {
		if !allowed[k] && !strings.HasPrefix(k, "AWS_") {
			t.Errorf("unexpected variable %s", k)
		}
	}
	want := map[string]string{
		"TZ":                              "Europe/Berlin",
		"LANG":                            "C.UTF-8",
		"PATH":                            os.Getenv("PATH"),
		"OWN":                             "fn",
		"SHARED":                          "fn wins",
		"FROM_OPTS":                       "opts",
		"AWS_REGION":                      "fn-region-1",
		"AWS_DEFAULT_REGION":              "eu-west-1",
		"AWS_LAMBDA_FUNCTION_NAME":        "envfn",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/envfn",
		"AWS_EXECUTION_ENV":               "AWS_Lambda_provided.al2023",
		"LAMBDA_TASK_ROOT":                dir,
		"_HANDLER":                        "fn",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if api := env["AWS_LAMBDA_RUNTIME_API"]; !strings.HasPrefix(api, "127.0.0.1:") {
		t.Errorf("AWS_LAMBDA_RUNTIME_API = %q: the function's env must not move it", api)
	}
	if !regexp.MustCompile(`^\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}$`).MatchString(env["AWS_LAMBDA_LOG_STREAM_NAME"]) {
		t.Errorf("AWS_LAMBDA_LOG_STREAM_NAME = %q", env["AWS_LAMBDA_LOG_STREAM_NAME"])
	}
	if real, _ := filepath.EvalSymlinks(dir); out.Cwd != dir && out.Cwd != real {
		t.Errorf("working directory %q, want %q", out.Cwd, dir)
	}
}

func TestLineLogger(t *testing.T) {
	long := strings.Repeat("y", maxLine)
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{"one line", []string{"hello\n"}, []string{"hello"}},
		{"split across writes", []string{"hel", "lo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"CRLF and empty lines", []string{"a\r\n\nb\n"}, []string{"a", "", "b"}},
		{"last line without newline", []string{"a\nb"}, []string{"a", "b"}},
		{"long line cut", []string{long + "zz\n"}, []string{long, "zz"}},
		{"long unterminated line cut", []string{long, "zz"}, []string{long, "zz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &records{}
			l := newLineLogger(slog.New(logs), "fn", "stdout")
			for _, w := range tt.writes {
				if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			l.flush()
			var got []string
			for _, rec := range logs.recs {
				rec.Attrs(func(a slog.Attr) bool {
					if a.Key == "line" {
						got = append(got, a.Value.String())
					}
					return true
				})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines %q, want %q", got, tt.want)
			}
		})
	}
}
