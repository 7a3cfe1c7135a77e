package lambdahost

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/herald-gw/herald"
)

// function is one Function's pool of processes and its init backoff.
type function struct {
	h        *Host
	name     string
	arn      string
	argv     []string
	dir      string
	timeout  time.Duration
	size     int               // the most processes at once
	baseEnv  map[string]string // everything but the per-process variables
	ownEnv   map[string]string // Function.Env, applied last
	optsEnv  map[string]string // Options.Env, before ownEnv
	logGroup string

	mu      sync.Mutex
	procs   map[*process]struct{} // planned, starting, idle or busy
	idle    []*process            // ready for an invocation, most recent last
	changed chan struct{}         // closed and replaced when a process frees up or goes
	starts  int                   // cold starts attempted; tests read it
	seq     int                   // numbers processes for the logs

	// Init backoff: after failures consecutive init failures no process is
	// started before until, and Invoke answers with initDoc instead.
	failures int
	until    time.Time
	initDoc  []byte
}

func newFunction(h *Host, fn Function, hostEnv, optsEnv map[string]string, cwd string) *function {
	f := &function{
		h:        h,
		name:     fn.Name,
		arn:      h.arn(fn.Name),
		argv:     slices.Clone(fn.Command),
		dir:      fn.Dir,
		timeout:  fn.Timeout,
		size:     fn.Concurrency,
		ownEnv:   maps.Clone(fn.Env),
		optsEnv:  maps.Clone(optsEnv),
		logGroup: "/aws/lambda/" + fn.Name,
		procs:    map[*process]struct{}{},
		changed:  make(chan struct{}),
	}
	if f.timeout == 0 {
		f.timeout = defaultTimeout
	}
	if f.size == 0 {
		f.size = 1
	}
	memory := fn.MemoryMB
	if memory == 0 {
		memory = defaultMemoryMB
	}
	root := fn.Dir
	if root == "" {
		root = cwd
	}
	f.baseEnv = maps.Clone(hostEnv)
	maps.Copy(f.baseEnv, map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        fn.Name,
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(memory),
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME":       f.logGroup,
		"AWS_REGION":                      h.region,
		"AWS_DEFAULT_REGION":              h.region,
		"AWS_EXECUTION_ENV":               "AWS_Lambda_provided.al2023",
		"LAMBDA_TASK_ROOT":                root,
		"_HANDLER":                        filepath.Base(fn.Command[0]),
	})
	return f
}

// environ is a new process's whole environment, in a stable order.
// AWS_LAMBDA_RUNTIME_API goes last and wins: it is how the process finds
// this host, so no setting may point it elsewhere.
func (f *function) environ(api, logStream string) []string {
	env := maps.Clone(f.baseEnv)
	env["AWS_LAMBDA_LOG_STREAM_NAME"] = logStream
	maps.Copy(env, f.optsEnv)
	maps.Copy(env, f.ownEnv)
	env["AWS_LAMBDA_RUNTIME_API"] = api
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// acquire finds a process for one invocation: an idle one, else a new one
// (cold, not yet started) while fewer than size exist, else it waits for
// one to free up. During init backoff it returns fail, the last init
// error, instead of starting a process.
func (f *function) acquire(ctx context.Context) (p *process, cold bool, fail *Result, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if f.h.closed.Load() {
			return nil, false, nil, errClosed()
		}
		if n := len(f.idle); n > 0 {
			p = f.idle[n-1]
			f.idle = f.idle[:n-1]
			return p, false, nil, nil
		}
		if f.h.now().Before(f.until) {
			return nil, false, &Result{Payload: f.initDoc, Error: unhandled}, nil
		}
		if len(f.procs) < f.size {
			f.seq++
			f.starts++
			p = newProcess(f, f.seq)
			f.procs[p] = struct{}{}
			// Counted under f.mu with the host open: see Close.
			f.h.procs.Add(1)
			return p, true, nil, nil
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-f.h.done:
		case <-ctx.Done():
			f.mu.Lock()
			return nil, false, nil, &herald.Error{
				Code:    herald.ETooManyRequests,
				Message: fmt.Sprintf("function %s: all %d processes stayed busy until the request ended", f.name, f.size),
				Err:     context.Cause(ctx),
			}
		}
		f.mu.Lock()
	}
}

// broadcast wakes every acquire waiting for a change. Called with f.mu held.
func (f *function) broadcast() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// release puts p back in the idle pool after an invocation it finished.
func (f *function) release(p *process) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.gone {
		return // it exited meanwhile; its slot is free already
	}
	f.idle = append(f.idle, p)
	f.broadcast()
}

// gone forgets p once it has exited and everything it started has ended.
func (f *function) gone(p *process) {
	f.mu.Lock()
	p.gone = true
	delete(f.procs, p)
	if i := slices.Index(f.idle, p); i >= 0 {
		f.idle = slices.Delete(f.idle, i, i+1)
	}
	f.broadcast()
	f.mu.Unlock()
	f.h.procs.Done()
}

// processes lists every process of f's, for Close.
func (f *function) processes() []*process {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Keys(f.procs))
}

// initSucceeded ends any init backoff: a process asked for work.
func (f *function) initSucceeded() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = 0
	f.until = time.Time{}
	f.initDoc = nil
}

// initFailed records an init failure and starts (or lengthens) the backoff
// during which Invoke answers with doc instead of starting a process.
func (f *function) initFailed(requestID string, doc errorDoc) Result {
	res := doc.result()
	f.mu.Lock()
	f.failures++
	wait := f.h.backoffBase << min(f.failures-1, 30)
	if wait <= 0 || wait > f.h.backoffMax {
		wait = f.h.backoffMax
	}
	f.until = f.h.now().Add(wait)
	f.initDoc = res.Payload
	failures := f.failures
	f.mu.Unlock()
	f.h.log.Warn("function init failed",
		"function", f.name, "request_id", requestID, "error_type", doc.Type,
		"failures", failures, "backoff", wait)
	return res
}
