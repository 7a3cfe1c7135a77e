package lambdahost

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fnBinary is testdata/fn, built once for the whole test binary.
var fnBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdahost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fnBinary = filepath.Join(dir, "fn")
	build := exec.Command("go", "build", "-o", fnBinary, "./testdata/fn")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building testdata/fn:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testFunction is the test program as a function called name. Its
// timeout is long, so that no invocation in a test that is not about
// timeouts can time out on a loaded machine.
func testFunction(name string) Function {
	return Function{Name: name, Command: []string{fnBinary}, Timeout: time.Minute}
}

// newHost returns a host that logs into the returned records and is
// closed when the test ends.
func newHost(t *testing.T, opts Options, fns ...Function) (*Host, *records) {
	t.Helper()
	logs := &records{}
	opts.Log = slog.New(logs)
	h, err := New(opts, fns...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			for _, line := range logs.lines() {
				t.Log(line)
			}
		}
	})
	return h, logs
}

// invoke invokes name with req as JSON and fails the test on an error.
func invoke(t *testing.T, h *Host, name string, req any) Result {
	t.Helper()
	res, err := invokeErr(h, name, req)
	if err != nil {
		t.Fatalf("Invoke(%s, %v): %v", name, req, err)
	}
	return res
}

// invokeErr is invoke for goroutines other than the test's.
func invokeErr(h *Host, name string, req any) (Result, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return h.Invoke(ctx, name, b)
}

// decodeOK checks res is a success and decodes its payload into v.
func decodeOK(t *testing.T, res Result, v any) {
	t.Helper()
	if res.Error != "" {
		t.Fatalf("result is an error %q: %s", res.Error, res.Payload)
	}
	if err := json.Unmarshal(res.Payload, v); err != nil {
		t.Fatalf("decoding %s: %v", res.Payload, err)
	}
}

// errorDocument is Lambda's error document.
type errorDocument struct {
	Message    string            `json:"errorMessage"`
	Type       string            `json:"errorType"`
	StackTrace []json.RawMessage `json:"stackTrace"`
}

// decodeError checks res is an Unhandled error and decodes its document.
func decodeError(t *testing.T, res Result) errorDocument {
	t.Helper()
	if res.Error != "Unhandled" {
		t.Fatalf("Error = %q, want Unhandled (payload %.200s)", res.Error, res.Payload)
	}
	var doc errorDocument
	if err := json.Unmarshal(res.Payload, &doc); err != nil {
		t.Fatalf("decoding the error document %s: %v", res.Payload, err)
	}
	return doc
}

// echo is what the test function's "echo" returns.
type echo struct {
	Msg        string `json:"msg"`
	RequestID  string `json:"request_id"`
	ARN        string `json:"arn"`
	DeadlineMS int64  `json:"deadline_ms"`
	TraceID    string `json:"trace_id"`
	PID        int    `json:"pid"`
}

// echoPID invokes "echo" and returns the pid of the process that ran it.
func echoPID(t *testing.T, h *Host, name string) int {
	t.Helper()
	var out echo
	decodeOK(t, invoke(t, h, name, map[string]any{"do": "echo"}), &out)
	return out.PID
}

// eventually polls cond every few milliseconds for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; {
		if cond() {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// starts is how many cold starts name's function has attempted.
func starts(h *Host, name string) int {
	f := h.fns[name]
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts
}

// records is a slog.Handler that keeps what is logged.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// has reports whether a record with level, msg and (at least) attrs was
// logged.
func (r *records) has(level slog.Level, msg string, attrs map[string]string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Level != level || rec.Message != msg {
			continue
		}
		matched := 0
		rec.Attrs(func(a slog.Attr) bool {
			if want, ok := attrs[a.Key]; ok && a.Value.String() == want {
				matched++
			}
			return true
		})
		if matched == len(attrs) {
			return true
		}
	}
	return false
}

func (r *records) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		line := rec.Level.String() + " " + rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			line += " " + a.String()
			return true
		})
		out = append(out, line)
	}
	return out
}

// fakeClock is the init backoff's clock, stepped by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
