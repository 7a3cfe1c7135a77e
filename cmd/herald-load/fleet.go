package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// fleet is the coordinator's view of its worker processes.
type fleet struct {
	procs  []*workerProc
	failed chan error // the first worker that died on its own
}

type workerProc struct {
	id  int
	cmd *exec.Cmd

	wmu   sync.Mutex
	stdin io.WriteCloser
	enc   *json.Encoder

	mu    sync.Mutex
	stats workerStats
	final *event
	fatal string
	done  chan struct{} // closed when the process has exited and been reaped
	err   error         // its exit error, once done
}

// startFleet starts one worker process per spec by re-executing this
// binary. Worker stderr is copied, line by line, to stderr.
func startFleet(specs []workerSpec, stderr io.Writer) (*fleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable to start workers: %w", err)
	}
	f := &fleet{failed: make(chan error, 1)}
	for _, spec := range specs {
		p, err := startWorker(exe, spec, stderr, f.failed)
		if err != nil {
			f.kill()
			return nil, err
		}
		f.procs = append(f.procs, p)
	}
	return f, nil
}

func startWorker(exe string, spec workerSpec, stderr io.Writer, failed chan error) (*workerProc, error) {
	cmd := exec.Command(exe, "-worker")
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", spec.ID, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", spec.ID, err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", spec.ID, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %d: %w", spec.ID, err)
	}
	p := &workerProc{id: spec.ID, cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), done: make(chan struct{})}
	var pipes sync.WaitGroup
	pipes.Go(func() { p.readEvents(stdout) })
	pipes.Go(func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			fmt.Fprintf(stderr, "worker %d: %s\n", spec.ID, sc.Text())
		}
	})
	go func() {
		// exec wants the pipes drained before Wait.
		pipes.Wait()
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		clean := p.final != nil && err == nil
		fatal := p.fatal
		p.mu.Unlock()
		close(p.done)
		if !clean {
			if fatal != "" {
				err = errors.New(fatal)
			} else if err == nil {
				err = errors.New("exited before reporting")
			}
			select {
			case failed <- fmt.Errorf("worker %d: %w", spec.ID, err):
			default:
			}
		}
	}()
	if err := p.send(spec); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("worker %d: send spec: %w", spec.ID, err)
	}
	return p, nil
}

func (p *workerProc) send(v any) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.enc.Encode(v)
}

func (p *workerProc) readEvents(r io.Reader) {
	dec := json.NewDecoder(r)
	for {
		var ev event
		if err := dec.Decode(&ev); err != nil {
			return
		}
		p.mu.Lock()
		switch ev.Ev {
		case "stats":
			p.stats = ev.Stats
		case "final":
			p.stats = ev.Stats
			p.final = &ev
		case "fatal":
			p.fatal = ev.Error
		}
		p.mu.Unlock()
	}
}

// broadcastCmd sends c to every worker.
func (f *fleet) broadcastCmd(c command) error {
	for _, p := range f.procs {
		if err := p.send(c); err != nil {
			return fmt.Errorf("worker %d: %w", p.id, err)
		}
	}
	return nil
}

// totals sums the workers' latest counters; per-message stats are merged.
func (f *fleet) totals() workerStats {
	var t workerStats
	for _, p := range f.procs {
		p.mu.Lock()
		s := p.stats
		p.mu.Unlock()
		t.Assigned += s.Assigned
		t.Established += s.Established
		if s.ConnectStart != 0 && (t.ConnectStart == 0 || s.ConnectStart < t.ConnectStart) {
			t.ConnectStart = s.ConnectStart
		}
		t.ConnectEnd = max(t.ConnectEnd, s.ConnectEnd)
		t.ConnectFailed += s.ConnectFailed
		t.Open += s.Open
		for k, n := range s.OpenByNode {
			if k >= len(t.OpenByNode) {
				t.OpenByNode = append(t.OpenByNode, make([]int64, k+1-len(t.OpenByNode))...)
			}
			t.OpenByNode[k] += n
		}
		t.Dropped += s.Dropped
		t.BadFrames += s.BadFrames
		t.Delivered += s.Delivered
		t.Other += s.Other
		t.OutOfOrder += s.OutOfOrder
		t.Pings += s.Pings
		t.ChurnClosed += s.ChurnClosed
		t.ChurnReconnected += s.ChurnReconnected
		t.ChurnFailed += s.ChurnFailed
		t.Positioned += s.Positioned
		t.Disconnected += s.Disconnected
		t.ResumeReconnected += s.ResumeReconnected
		t.ResumeFailed += s.ResumeFailed
		if s.ResumeStart != 0 && (t.ResumeStart == 0 || s.ResumeStart < t.ResumeStart) {
			t.ResumeStart = s.ResumeStart
		}
		t.ResumeDialEnd = max(t.ResumeDialEnd, s.ResumeDialEnd)
		t.ResumeEnd = max(t.ResumeEnd, s.ResumeEnd)
		t.ResumeExpected += s.ResumeExpected
		t.Replayed += s.Replayed
		t.CaughtUp += s.CaughtUp
		t.Behind += s.Behind
		t.Gaps += s.Gaps
		t.Duplicates += s.Duplicates
		t.Resets += s.Resets
		t.RSSKB += s.RSSKB
		t.Errors = append(t.Errors, s.Errors...)
		for k, v := range s.Seqs {
			if t.Seqs == nil {
				t.Seqs = map[int64]*seqStat{}
			}
			m := t.Seqs[k]
			if m == nil {
				cp := *v
				t.Seqs[k] = &cp
				continue
			}
			m.N += v.N
			m.First = min(m.First, v.First)
			m.Last = max(m.Last, v.Last)
		}
	}
	return t
}

// all reports whether every worker's latest stats satisfy ok.
func (f *fleet) all(ok func(workerStats) bool) bool {
	for _, p := range f.procs {
		p.mu.Lock()
		s := p.stats
		p.mu.Unlock()
		if !ok(s) {
			return false
		}
	}
	return true
}

// waitFor polls until cond holds, a worker fails, ctx ends or timeout
// passes. It reports whether cond held.
func (f *fleet) waitFor(ctx context.Context, timeout time.Duration, cond func() bool) (bool, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true, nil
		}
		select {
		case err := <-f.failed:
			f.failed <- err // let the next waiter see it too
			return false, err
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline.C:
			return cond(), nil
		case <-tick.C:
		}
	}
}

// stop asks every worker to close its connections and report, waits up
// to grace, kills whatever is left and returns the final reports received.
func (f *fleet) stop(grace time.Duration) []*event {
	for _, p := range f.procs {
		_ = p.send(command{Op: "stop"})
		p.wmu.Lock()
		_ = p.stdin.Close() // EOF is a stop as well, should the line be lost
		p.wmu.Unlock()
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for _, p := range f.procs {
		select {
		case <-p.done:
		case <-timer.C:
			f.kill()
		}
	}
	var finals []*event
	for _, p := range f.procs {
		<-p.done
		p.mu.Lock()
		if p.final != nil {
			finals = append(finals, p.final)
		}
		p.mu.Unlock()
	}
	return finals
}

// kill ends every worker at once; used when they do not stop in time.
func (f *fleet) kill() {
	for _, p := range f.procs {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
		}
	}
}
