package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// resume is many clients reconnecting at once, as after a network outage
// or a load balancer restart. Every connection speaks herald.v1 and first
// learns its place in its user's stream from one live message; then all
// close together, the server stores Messages more per user while they are
// away, and all reconnect at the connect rate, each sending resume from
// its last offset as its first message. It measures how long it takes
// until the last of them has every message it missed, and checks that
// each got exactly those: no gap, no duplicate, no reset. Any of those, or
// a missed message never replayed, fails the run: a fast replay that is
// wrong is no result.
func (r *runner) resume(ctx context.Context) (*resumeResult, error) {
	cfg := r.cfg
	out := &resumeResult{Messages: cfg.Messages}
	users := int64(len(r.users))
	quoted := make([][]byte, users) // for batch bodies, once rather than per message
	for i, u := range r.users {
		quoted[i], _ = json.Marshal(u) // a string always marshals
	}
	last := make([]int64, users) // per user: the newest offset the server gave out

	r.phase.Store("prime")
	// Prime: one message per user, delivered live. A connection that
	// missed it would still resume correctly (from offset 0, the whole
	// stream), but then it would not be the resume the scenario means.
	_, queued, err := r.storeRound(ctx, 1, users, quoted, last, out)
	if err != nil {
		return out, err
	}
	out.PrimeExpected = queued
	_, err = r.fleet.waitFor(ctx, cfg.MsgTimeout, func() bool {
		t := r.fleet.totals()
		return t.Delivered >= queued && t.Positioned >= t.Open
	})
	t := r.fleet.totals()
	out.Primed, out.PrimeDelivered = t.Positioned, t.Delivered
	if err != nil {
		return out, err
	}

	// Away: everyone leaves at once, and the messages pile up.
	r.phase.Store("away")
	if err := r.fleet.broadcastCmd(command{Op: "disconnect"}); err != nil {
		return out, err
	}
	if _, err := r.fleet.waitFor(ctx, cfg.DialTimeout, func() bool {
		return r.fleet.all(func(s workerStats) bool { return s.DisconnectDone && s.Open == 0 })
	}); err != nil {
		return out, err
	}
	out.Disconnected = r.fleet.totals().Disconnected
	if err := r.waitUsersGone(ctx, out); err != nil {
		return out, err
	}
	storeStart := time.Now()
	out.Stored, out.StoredLive, err = r.storeRound(ctx, users+1, users*int64(cfg.Messages), quoted, last, out)
	out.StoreSeconds = time.Since(storeStart).Seconds()
	if out.StoreSeconds > 0 {
		out.StoreRate = float64(out.Stored) / out.StoreSeconds
	}
	if err != nil {
		return out, err
	}

	// The storm. Each worker learns, per connection, the last offset of
	// its user: the connection has caught up once it has that one.
	r.phase.Store("resume")
	userIdx := make(map[string]int, len(r.users))
	for i, u := range r.users {
		userIdx[u] = i
	}
	cpu := startCPU(r.cpuSources)
	start := time.Now()
	for w, p := range r.fleet.procs {
		first, n := cfg.workerShare(w)
		targets := make([]int64, n)
		for i := range targets {
			targets[i] = last[userIdx[r.connOf(first+i)]]
		}
		if err := p.send(command{Op: "resume", Targets: targets}); err != nil {
			return out, fmt.Errorf("worker %d: %w", p.id, err)
		}
	}
	reconnect := time.Duration(float64(cfg.Conns) / cfg.Rate * float64(time.Second))
	_, err = r.fleet.waitFor(ctx, reconnect+cfg.DialTimeout+cfg.MsgTimeout, func() bool {
		// Behind counts only connections already resumed, so it is
		// complete once every worker has made all its reconnects.
		return r.fleet.all(func(s workerStats) bool { return s.ResumeDone }) && r.fleet.totals().Behind == 0
	})
	window := time.Since(start)
	cpu.stop()

	t = r.fleet.totals()
	out.Reconnected, out.Failed = t.ResumeReconnected, t.ResumeFailed
	out.Expected, out.Replayed, out.CaughtUp, out.Behind = t.ResumeExpected, t.Replayed, t.CaughtUp, t.Behind
	out.Gaps, out.Duplicates, out.Resets = t.Gaps, t.Duplicates, t.Resets
	// Timed by the workers: the coordinator's view would add its polling.
	if t.ResumeDialEnd > t.ResumeStart && t.ResumeStart > 0 {
		out.ReconnectSeconds = float64(t.ResumeDialEnd-t.ResumeStart) / 1e9
		out.ReconnectRate = float64(out.Reconnected) / out.ReconnectSeconds
	}
	if t.ResumeEnd > t.ResumeStart && t.ResumeStart > 0 {
		out.Seconds = float64(t.ResumeEnd-t.ResumeStart) / 1e9
		out.ReplayRate = float64(out.Replayed) / out.Seconds
	}
	out.ServerCPU, out.ServerCPUNote = cpu.result(window, out.Replayed)
	if err != nil {
		return out, err
	}
	if out.Gaps+out.Duplicates+out.Resets+out.Behind > 0 {
		return out, fmt.Errorf("resume delivered wrong streams: %d gaps, %d duplicates, %d resets, %d missed messages never replayed",
			out.Gaps, out.Duplicates, out.Resets, out.Behind)
	}
	return out, nil
}

// storeRound stores n messages through POST /v1/batch, message seq (from
// first on) to user (seq-1) mod users, in requests of up to maxBatch with
// at most Senders in flight. It raises last[u] to the offsets the server
// gave user u and returns how many messages were stored and to how many
// connections the server queued them. A message that failed counts as an
// API error; only a stopped run is an error here.
func (r *runner) storeRound(ctx context.Context, first, n int64, quoted [][]byte, last []int64, out *resumeResult) (stored, queued int64, err error) {
	users := int64(len(quoted))
	var mu sync.Mutex // guards stored, queued, last and out's samples
	failed := func(n int64, sample string) {
		r.apiErrs.Add(n)
		if len(out.APIErrorSamples) < maxErrorSamples {
			out.APIErrorSamples = append(out.APIErrorSamples, sample)
		}
	}
	jobs := make(chan []notifyMsg)
	var senders sync.WaitGroup
	for range min(int64(r.cfg.Senders), (n+maxBatch-1)/maxBatch) {
		senders.Go(func() {
			for msgs := range jobs {
				// Stamped just before the request: the priming messages'
				// delivery latency is measured from here.
				now := time.Now().UnixNano()
				for i := range msgs {
					msgs[i].t = now
				}
				results, err := r.api.sendBatch(ctx, batchBody(msgs, quoted))
				if err != nil && ctx.Err() != nil {
					continue // stopped, not the server's failure; drain the rest
				}
				mu.Lock()
				switch {
				case err != nil: // the whole request failed: every message in it did
					failed(int64(len(msgs)), fmt.Sprintf("%d messages: %v", len(msgs), err))
				case len(results) != len(msgs):
					failed(int64(len(msgs)), fmt.Sprintf("POST /v1/batch: %d results for %d messages", len(results), len(msgs)))
				default:
					for i, res := range results {
						u := (msgs[i].seq - 1) % users
						if e := res.Error; e != nil {
							failed(1, fmt.Sprintf("POST /v1/batch: message to user %s: %s: %s", quoted[u], e.Code, e.Message))
							continue
						}
						stored++
						queued += int64(res.Connections)
						last[u] = max(last[u], res.Offset)
					}
				}
				mu.Unlock()
			}
		})
	}
	for seq := first; seq < first+n && ctx.Err() == nil; seq += maxBatch {
		msgs := make([]notifyMsg, 0, min(maxBatch, first+n-seq))
		for k := seq; k < first+n && len(msgs) < maxBatch; k++ {
			msgs = append(msgs, notifyMsg{seq: k})
		}
		select {
		case jobs <- msgs:
		case <-ctx.Done():
		}
	}
	close(jobs)
	senders.Wait()
	if ctx.Err() != nil {
		return stored, queued, context.Cause(ctx)
	}
	return stored, queued, nil
}

// waitUsersGone waits, at most DialTimeout, until the server lists no
// connection for a sample of the users. It notices each close only when
// it reads the close frame, and a message stored before then would be
// written to a leaving connection rather than wait for the resume. Should
// a user stay listed (a real client of a -token-file user, say), the run
// goes on with a note.
func (r *runner) waitUsersGone(ctx context.Context, out *resumeResult) error {
	deadline := time.Now().Add(r.cfg.DialTimeout)
	const samples = 20
	step := max(1, (len(r.users)+samples-1)/samples)
	for u := 0; u < len(r.users); u += step {
		for {
			n, err := r.api.userConns(ctx, r.users[u])
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				r.apiErrs.Add(1)
				if len(out.APIErrorSamples) < maxErrorSamples {
					out.APIErrorSamples = append(out.APIErrorSamples, err.Error())
				}
				break
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				out.Note = fmt.Sprintf("user %s still had %d connection(s) listed %v after its clients closed", r.users[u], n, r.cfg.DialTimeout)
				return nil
			}
			if !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
				return context.Cause(ctx)
			}
		}
	}
	return nil
}
