//go:build unix

package lambdahost

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

// holdInvocation starts an invocation that holds a process until the
// test ends, and returns that process's pid and the channel its result
// will come on.
func holdInvocation(t *testing.T, h *Host, name string, ignoreTerm bool) (int, <-chan Result) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "never")
	held := make(chan Result, 1)
	go func() {
		res, err := invokeErr(h, name, map[string]any{"do": "hold", "file": file, "ignore_term": ignoreTerm})
		if err != nil {
			res = Result{Error: err.Error()}
		}
		held <- res
	}()
	var pid int
	eventually(t, "the invocation to hold its process", func() bool {
		b, err := os.ReadFile(file + ".started")
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil
	})
	return pid, held
}

// exists reports whether a process pid exists (reaped ones do not).
func exists(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestClose: Close ends busy and idle processes with SIGTERM, waits for
// them and for every goroutine the host started, and later Invokes fail.
func TestClose(t *testing.T) {
	base := runtime.NumGoroutine()
	fn := testFunction("svc")
	fn.Concurrency = 2
	h, logs := newHost(t, Options{}, fn)

	busy, held := holdInvocation(t, h, "svc", false)
	idle := echoPID(t, h, "svc")
	if idle == busy {
		t.Fatalf("the echo ran in the busy process %d", busy)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	doc := decodeError(t, <-held)
	if doc.Type != "Runtime.ExitError" || !strings.HasSuffix(doc.Message, "Runtime exited with error: signal: terminated") {
		t.Errorf("the held invocation got %s %q", doc.Type, doc.Message)
	}
	for _, pid := range []int{busy, idle} {
		if exists(pid) {
			t.Errorf("process %d still exists after Close", pid)
		}
		if !logs.has(slog.LevelInfo, "function process stopped", map[string]string{"pid": strconv.Itoa(pid)}) {
			t.Errorf("the stop of %d was not logged", pid)
		}
	}

	_, err := h.Invoke(context.Background(), "svc", []byte(`{"do":"echo"}`))
	if herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Errorf("Invoke after Close = %v, want %s", err, herald.EUnavailable)
	}
	if err := h.Close(ctx); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	eventually(t, "goroutines back to where they were", func() bool {
		return runtime.NumGoroutine() <= base
	})
}

// TestCloseKills: a process that ignores SIGTERM is killed once Close's
// context ends, and Close says so.
func TestCloseKills(t *testing.T) {
	t.Parallel()
	fn := testFunction("stubborn")
	h, _ := newHost(t, Options{}, fn)
	pid, held := holdInvocation(t, h, "stubborn", true)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with an ended context = %v, want context.Canceled", err)
	}
	doc := decodeError(t, <-held)
	if !strings.HasSuffix(doc.Message, "Runtime exited with error: signal: killed") {
		t.Errorf("the held invocation got %s %q", doc.Type, doc.Message)
	}
	if exists(pid) {
		t.Errorf("process %d still exists after Close", pid)
	}
}

// TestSIGTERMExtension: a function built with lambda.WithEnableSIGTERM
// registers through the Extensions API without complaint and gets its
// SIGTERM callback when the host closes.
func TestSIGTERMExtension(t *testing.T) {
	t.Parallel()
	fn := testFunction("graceful")
	fn.Env = map[string]string{"FN_INIT": "sigterm"}
	h, logs := newHost(t, Options{}, fn)
	echoPID(t, h, "graceful")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !logs.has(slog.LevelInfo, "function output", map[string]string{"line": "sigterm: cleaning up"}) {
		t.Error("the function's SIGTERM callback did not run")
	}
	for _, line := range logs.lines() {
		if strings.Contains(line, "WARNING") {
			t.Errorf("the function complained: %s", line)
		}
	}
}

// TestKilledWhileIdle: a warm process that died between invocations (the
// OOM killer, say) costs nothing: the next invocation runs in a new one.
// (An invocation handed over in the very moment of the death may fail, as
// it may on AWS; the test waits until the host has seen the death.)
func TestKilledWhileIdle(t *testing.T) {
	t.Parallel()
	h, logs := newHost(t, Options{}, testFunction("victim"))
	for range 3 {
		pid := echoPID(t, h, "victim")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the host to see the death", func() bool {
			return logs.has(slog.LevelWarn, "function process exited", map[string]string{"pid": strconv.Itoa(pid)})
		})
		if next := echoPID(t, h, "victim"); next == pid {
			t.Fatalf("pid %d served after it was killed", pid)
		}
	}
}
