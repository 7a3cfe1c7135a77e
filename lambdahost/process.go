package lambdahost

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"
)

// errStopping is start's answer once Close has reached the process.
var errStopping = errors.New("lambdahost: host is closing")

// waitDelay bounds how long Wait keeps reading a dead function's output
// when something it started still holds the pipes.
const waitDelay = 2 * time.Second

// process is one running copy of a function, with its own Runtime API.
//
// Its life: planned by acquire (counted in Host.procs), started by the
// invocation that planned it, then a loop of invocations until it exits or
// is killed; wait then tears down its API server and tells the function
// it is gone, which ends the count.
type process struct {
	f          *function
	n          int              // the function's process number, for logs
	next       chan *invocation // the invocation for the runtime's next /next; holds at most one
	initFailed chan struct{}    // closed when the runtime posted /init/error
	exited     chan struct{}    // closed when the process has exited
	serveDone  chan struct{}    // closed when the API server's Serve returned
	conns      sync.WaitGroup   // the API server's open connections
	stdout     *lineLogger
	stderr     *lineLogger

	// Set by start before the goroutines that read them begin.
	cmd *exec.Cmd
	srv *http.Server
	pid int

	gone bool // guarded by f.mu: exited and forgotten by the function

	mu       sync.Mutex
	started  bool
	waited   bool // reaped: its pid may belong to another process now
	stopping bool // Close asked it to stop
	killed   bool // killed by the host (timeout, stall, init error)
	cur      *invocation
	asked    bool // has asked for an invocation at least once: init is over
	initDoc  errorDoc
	state    *os.ProcessState
}

func newProcess(f *function, n int) *process {
	p := &process{
		f:          f,
		n:          n,
		next:       make(chan *invocation, 1),
		initFailed: make(chan struct{}),
		exited:     make(chan struct{}),
		serveDone:  make(chan struct{}),
	}
	p.stdout = newLineLogger(f.h.log, f.name, "stdout")
	p.stderr = newLineLogger(f.h.log, f.name, "stderr")
	return p
}

// start runs the function's command with a Runtime API of its own.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return errStopping
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("runtime API listener: %w", err)
	}
	api := ln.Addr().String()
	f := p.f
	cmd := exec.Command(f.argv[0], f.argv[1:]...)
	cmd.Dir = f.dir
	// Lambda's log stream names: date, version, a random instance id.
	stream := time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + randomHex(16)
	cmd.Env = f.environ(api, stream)
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		_ = ln.Close()
		return err
	}
	p.cmd, p.pid, p.started = cmd, cmd.Process.Pid, true
	p.srv = &http.Server{
		Handler:           p.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         p.connState,
		ErrorLog:          slog.NewLogLogger(f.h.log.Handler(), slog.LevelDebug),
	}
	go p.serve(ln)
	go p.wait()
	f.h.log.Info("function process started",
		"function", f.name, "process", p.n, "pid", p.pid, "runtime_api", api)
	return nil
}

func (p *process) serve(ln net.Listener) {
	defer close(p.serveDone)
	_ = p.srv.Serve(ln) // ends with ErrServerClosed when wait closes it
}

// connState counts the API server's connections. StateNew is reported by
// Serve's goroutine before a connection's own goroutine starts, and
// StateClosed by that goroutine as it ends, so once Serve has returned,
// conns.Wait waits for every handler net/http started for this process.
func (p *process) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		p.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		p.conns.Done()
	}
}

// wait reaps the process, then ends everything started for it.
func (p *process) wait() {
	err := p.cmd.Wait()
	p.stdout.flush()
	p.stderr.flush()
	p.mu.Lock()
	p.waited = true
	p.state = p.cmd.ProcessState
	expected := p.stopping || p.killed
	p.mu.Unlock()
	close(p.exited) // handlers blocked on this process return now

	_ = p.srv.Close()
	<-p.serveDone
	p.conns.Wait()

	attrs := []any{"function", p.f.name, "process", p.n, "pid", p.pid, "status", p.status()}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		attrs = append(attrs, "err", err) // e.g. exec.ErrWaitDelay: a child kept its output open
	}
	if expected {
		p.f.h.log.Info("function process stopped", attrs...)
	} else {
		p.f.h.log.Warn("function process exited", attrs...)
	}
	p.f.gone(p)
}

// assign gives inv to p; the runtime's next /next takes it.
func (p *process) assign(inv *invocation) {
	p.mu.Lock()
	p.cur = inv
	p.mu.Unlock()
	p.next <- inv // never blocks: a process holds one invocation at a time
}

// claimed is what claim found.
type claimed int

const (
	answered           claimed = iota // the runtime answered first; the result is in inv.result
	running                           // delivered and still running; left alone
	claimedUndelivered                // the invoker owns the outcome; the runtime never saw inv
	claimedDelivered                  // the invoker owns the outcome; the runtime had inv
)

// claim takes inv's outcome for the invoker unless the runtime answered
// first. Unless evenIfDelivered, it leaves a delivered inv alone.
func (p *process) claim(inv *invocation, evenIfDelivered bool) claimed {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case inv.finished:
		return answered
	case inv.isDelivered && !evenIfDelivered:
		return running
	}
	inv.finished = true
	if p.cur == inv {
		p.cur = nil
	}
	if inv.isDelivered {
		return claimedDelivered
	}
	return claimedUndelivered
}

// complete records the runtime's answer for request id, unless the id is
// not the one it holds or the invoker gave up on it first.
func (p *process) complete(id string, res Result) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	inv := p.cur
	if inv == nil || inv.id != id || !inv.isDelivered || inv.finished {
		return false
	}
	inv.finished = true
	p.cur = nil
	inv.result <- res
	return true
}

// kill ends the process at once, as Lambda ends a sandbox that timed out.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killed = true
	p.signalLocked(true)
}

// stop is Close's: SIGTERM, or SIGKILL when force; a process not started
// yet will not start.
func (p *process) stop(force bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	p.signalLocked(force)
}

// signalLocked signals the process's group, only while the process is
// unreaped: after Wait its pid may be someone else's. Called with p.mu.
func (p *process) signalLocked(force bool) {
	if !p.started || p.waited {
		return
	}
	if err := signalGroup(p.cmd.Process, force); err != nil {
		p.f.h.log.Debug("signalling function process", "function", p.f.name, "pid", p.pid, "err", err)
	}
}

// initError is the document the runtime posted to /init/error, if any.
func (p *process) initError() errorDoc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.initDoc
}

func (p *process) exitState() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// status is how the process ended, for logs.
func (p *process) status() string {
	if s := p.exitState(); s != nil {
		return s.String()
	}
	return "running"
}
