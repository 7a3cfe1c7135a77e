// Package lambdahost runs AWS Lambda functions on the local machine, as child
// processes, so Herald can invoke them the way API Gateway would.
//
// A function here is the program a user deploys to Lambda's provided.al2023
// runtime: a binary built with aws-lambda-go that calls lambda.Start and is
// not modified for Herald. Such a program knows nothing of Lambda except one
// environment variable, AWS_LAMBDA_RUNTIME_API, the address of an HTTP API it
// long-polls for work (GET …/invocation/next) and answers (POST
// …/invocation/{id}/response or …/error). This package plays Lambda's side
// of that conversation:
//
//	Invoke ──▶ function: an idle process, or a new one (cold start), or wait
//	              │ the invocation, put where that process's /next will take it
//	              ▼
//	           process: its own Runtime API listener on 127.0.0.1:0
//	              │ GET /next ← the runtime, holding the invocation
//	              ▼
//	           POST /response | /error, or a timeout, crash or init failure
//	              │
//	              ▼
//	           Result back to Invoke; the process goes back to the idle pool
//
// Each process has a listener of its own rather than sharing one: a request on
// it can only come from that process, so Herald always knows which process
// holds which invocation, and a crash or a timeout is charged to the right
// one without trusting anything the function says.
//
// The host mimics Lambda where a function could tell the difference: one
// invocation per process at a time, the same environment variables, the same
// error documents (errorType Sandbox.Timedout, Runtime.ExitError, …), the
// 6 MB response limit. It differs where Lambda's behaviour needs a fleet:
// invocations beyond a function's concurrency wait for a free process
// instead of being throttled, and a function whose init keeps failing is
// backed off instead of retried on every invocation.
package lambdahost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gw/herald"
)

// Defaults, Lambda's own where Lambda has one.
const (
	defaultTimeout     = 3 * time.Second  // Lambda's default function timeout
	defaultInitTimeout = 10 * time.Second // Lambda's init phase limit
	defaultMemoryMB    = 128
	defaultRegion      = "us-east-1"

	// maxResponseSize is Lambda's limit on a synchronous response. AWS
	// calls it 6 MB and counts 6291556 bytes in its error messages.
	maxResponseSize = 6291556

	// Init failures back off from backoffBase, doubling to backoffMax, so a
	// broken function is not forked on every invocation.
	backoffBase = 100 * time.Millisecond
	backoffMax  = 10 * time.Second

	// unhandled is X-Amz-Function-Error's value for every failure: Lambda
	// no longer distinguishes "Handled" errors.
	unhandled = "Unhandled"
)

// Function is one Lambda function: the program to run and the settings
// Lambda would have for it.
type Function struct {
	Name        string
	Command     []string          // argv; Command[0] is run as given (callers resolve relative paths)
	Dir         string            // working directory; "" = Herald's
	Env         map[string]string // the function's own environment (wins over Options.Env and the runtime's variables except AWS_LAMBDA_RUNTIME_API)
	Timeout     time.Duration     // per invocation; 0 = 3s (Lambda's default)
	Concurrency int               // processes; 0 = 1. One invocation per process at a time, as on AWS
	MemoryMB    int               // reported to the function only; 0 = 128
}

// Options are the host's settings, shared by every function.
type Options struct {
	Region      string            // "" = us-east-1
	Env         map[string]string // given to every function, before its own Env
	Log         *slog.Logger
	InitTimeout time.Duration // a new process must ask for its first invocation within this; 0 = 10s
}

// Result is what an invocation returned, as Lambda's Invoke API reports it.
type Result struct {
	Payload []byte // the function's response; or, when Error != "", an error document {"errorMessage","errorType"[,"stackTrace"]}
	Error   string // "" on success, "Unhandled" for a function error, timeout, crash or init failure (X-Amz-Function-Error's value)
}

// Host runs a fixed set of functions. Its zero value is not usable; call New.
type Host struct {
	log         *slog.Logger
	region      string
	initTimeout time.Duration
	fns         map[string]*function
	names       []string // sorted

	// The init backoff's clock and bounds; tests replace them to step
	// through a backoff without waiting for it.
	now         func() time.Time
	backoffBase time.Duration
	backoffMax  time.Duration

	closed    atomic.Bool
	done      chan struct{} // closed by Close: wakes every Invoke waiting for a process
	closeOnce sync.Once
	// procs counts processes from the moment one is planned (under its
	// function's lock, only while the host is open) until everything it
	// started has ended, so Close can wait for all of them.
	procs sync.WaitGroup
}

// New checks the functions and returns a host for them. It starts nothing:
// a function's first process starts with its first invocation.
func New(opts Options, fns ...Function) (*Host, error) {
	if opts.InitTimeout < 0 {
		return nil, fmt.Errorf("lambdahost: negative InitTimeout %v", opts.InitTimeout)
	}
	if err := checkEnv(opts.Env); err != nil {
		return nil, fmt.Errorf("lambdahost: Options.Env: %w", err)
	}
	h := &Host{
		log:         opts.Log,
		region:      opts.Region,
		initTimeout: opts.InitTimeout,
		fns:         make(map[string]*function, len(fns)),
		now:         time.Now,
		backoffBase: backoffBase,
		backoffMax:  backoffMax,
		done:        make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.region == "" {
		h.region = defaultRegion
	}
	if h.initTimeout == 0 {
		h.initTimeout = defaultInitTimeout
	}
	// Only these four variables come from Herald's own environment: the
	// rest of it holds Herald's secrets, which are not the function's.
	hostEnv := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "TZ", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			hostEnv[k] = v
		}
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("lambdahost: working directory: %w", err)
	}
	for i, fn := range fns {
		if err := checkFunction(fn); err != nil {
			return nil, fmt.Errorf("lambdahost: function %d (%q): %w", i, fn.Name, err)
		}
		if _, dup := h.fns[fn.Name]; dup {
			return nil, fmt.Errorf("lambdahost: function %q is defined twice", fn.Name)
		}
		h.fns[fn.Name] = newFunction(h, fn, hostEnv, opts.Env, cwd)
		h.names = append(h.names, fn.Name)
	}
	sort.Strings(h.names)
	return h, nil
}

// checkFunction reports what is wrong with fn's settings, if anything.
func checkFunction(fn Function) error {
	if !validName(fn.Name) {
		return errors.New("name must match ^[A-Za-z0-9_-]{1,64}$")
	}
	if len(fn.Command) == 0 || fn.Command[0] == "" {
		return errors.New("empty command")
	}
	for _, a := range fn.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return errors.New("command holds a NUL byte")
		}
	}
	switch {
	case fn.Timeout < 0:
		return fmt.Errorf("negative timeout %v", fn.Timeout)
	case fn.Concurrency < 0:
		return fmt.Errorf("negative concurrency %d", fn.Concurrency)
	case fn.MemoryMB < 0:
		return fmt.Errorf("negative memory size %d", fn.MemoryMB)
	}
	if err := checkEnv(fn.Env); err != nil {
		return fmt.Errorf("env: %w", err)
	}
	return nil
}

// validName reports whether name is a Lambda function name as Herald takes
// it: the short form, which is also what an ARN ends with.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// checkEnv refuses what exec would refuse only at the first cold start.
func checkEnv(env map[string]string) error {
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid variable name %q", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("variable %s holds a NUL byte", k)
		}
	}
	return nil
}

// Has reports whether the host has a function called name.
func (h *Host) Has(name string) bool {
	_, ok := h.fns[name]
	return ok
}

// Names returns the functions' names, sorted.
func (h *Host) Names() []string { return slices.Clone(h.names) }

// Invoke runs one invocation of the function called name with payload and
// waits for its result, as Lambda's synchronous Invoke does.
//
// Everything that goes wrong inside the function — an error it returns, a
// timeout, a crash, a failed init — is a Result with Error "Unhandled", not
// an error: Lambda reports those in a 200 response too. Invoke's error is
// for the host's own refusals: an unknown function (herald.ENotFound), a
// closed host (herald.EUnavailable), and ctx ending while every process is
// busy (herald.ETooManyRequests, wrapping ctx's error; the nearest thing to
// Lambda's throttling). Once a process holds the invocation, ctx no longer
// matters: like Lambda, the host lets the function finish or time out.
func (h *Host) Invoke(ctx context.Context, name string, payload []byte) (Result, error) {
	f, ok := h.fns[name]
	if !ok {
		return Result{}, herald.Errorf(herald.ENotFound, "Function not found: %s", h.arn(name))
	}
	inv := newInvocation(payload)
	for {
		p, cold, fail, err := f.acquire(ctx)
		if err != nil {
			return Result{}, err
		}
		if fail != nil {
			return *fail, nil
		}
		res, retry, err := f.run(p, cold, inv)
		if !retry {
			return res, err
		}
		// The invocation never reached the function (a warm process died
		// or stalled before taking it), so trying another process is safe.
		inv = inv.again()
	}
}

// Close stops every process: SIGTERM first, SIGKILL once ctx ends. It waits
// for all of them and for everything the host started for them, and returns
// ctx's error when it had to kill. Invocations still running get a
// Runtime.ExitError result; later Invokes fail with herald.EUnavailable.
func (h *Host) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		h.closed.Store(true)
		close(h.done)
	})
	// The flag is set before any function's lock is taken below, and a
	// process is only planned under that lock with the flag clear, so these
	// lists hold every process there will ever be.
	var all []*process
	for _, f := range h.fns {
		all = append(all, f.processes()...)
	}
	for _, p := range all {
		p.stop(false)
	}
	waited := make(chan struct{})
	go func() {
		h.procs.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
	}
	for _, p := range all {
		p.stop(true)
	}
	<-waited
	return fmt.Errorf("lambdahost: close: processes killed: %w", ctx.Err())
}

// arn is the function ARN Lambda would give name, with the account number
// AWS's own emulators use.
func (h *Host) arn(name string) string {
	return "arn:aws:lambda:" + h.region + ":000000000000:function:" + name
}

// errClosed is Invoke's error once Close has begun.
func errClosed() error {
	return herald.Errorf(herald.EUnavailable, "the Lambda host is shutting down")
}
