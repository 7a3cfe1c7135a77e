package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gw/herald"
)

// runner drives one run: set-up, connect phase, scenario, tear-down.
type runner struct {
	cfg    config
	stderr io.Writer
	api    *apiClient // the server API (churn, resume)
	msgs   messageAPI // what the scenarios send messages through: api, or the peer's
	fleet  *fleet

	tokens []string // -token-file: one per connection; nil when minting
	users  []string // every distinct user, in order of first connection
	connOf func(i int) string

	pids       []int        // every node's, in URL order; 0 where not known
	cpuSources []cpuSource  // what the server's CPU time sums over; nil when a node's pid is not known
	apiErrs    atomic.Int64 // server API calls that failed, for the live line
	phase      atomic.Value // string, for the live line
}

func (r *runner) run(ctx context.Context) (*result, error) {
	cfg := r.cfg
	res := &result{
		Scenario: cfg.Scenario, Transport: cfg.Transport, URL: cfg.URL.String(), Requested: cfg.Conns, Users: cfg.Users,
		Workers: cfg.Workers, ClientIO: cfg.ClientIO, LocalAddrs: cfg.LocalAddrs,
	}
	r.phase.Store("start")
	if err := r.resolveUsers(); err != nil {
		return nil, err
	}
	res.Users = len(r.users)
	r.api = newAPIClient(baseURLs(cfg.URLs), cfg.APIKey, cfg.Senders)
	defer r.api.close()
	if cfg.Dialect == dialectCentrifugo {
		counts := make(map[string]int, len(r.users))
		for i := range cfg.Conns {
			counts[r.connOf(i)]++
		}
		peer := newCentrifugoAPI(cfg.URL.String(), cfg.APIKey, cfg.Senders, func(u string) int { return counts[u] })
		defer peer.api.close()
		r.msgs = peer
	} else {
		r.msgs = newHeraldAPI(r.api, r.users)
	}

	// The server's memory before we add anything.
	r.findServer(&res.Server)

	start := time.Now()
	f, err := startFleet(r.specs(start), r.stderr)
	if err != nil {
		return nil, err
	}
	r.fleet = f
	var stopOnce sync.Once
	var finals []*event
	stop := func() { stopOnce.Do(func() { finals = f.stop(stopGrace) }) }
	defer stop() // on every path, Ctrl-C included: no worker outlives run

	progressCtx, stopProgress := context.WithCancel(ctx)
	var progress sync.WaitGroup
	progress.Go(func() { r.progress(progressCtx, start) })
	defer func() { stopProgress(); progress.Wait() }()

	// Connect phase.
	r.phase.Store("connect")
	connectTimeout := time.Duration(float64(cfg.Conns)/cfg.Rate*float64(time.Second)) + cfg.DialTimeout + 10*time.Second
	_, err = f.waitFor(ctx, connectTimeout, func() bool {
		return f.all(func(s workerStats) bool { return s.ConnectDone })
	})
	connected := f.totals()
	res.Connect.Established, res.Connect.Failed = connected.Established, connected.ConnectFailed
	// Timed by the workers, from the first dial to the last handshake: the
	// coordinator's view would add process start-up and polling.
	if connected.ConnectEnd > connected.ConnectStart {
		res.Connect.Seconds = float64(connected.ConnectEnd-connected.ConnectStart) / 1e9
		res.Connect.Rate = float64(connected.Established) / res.Connect.Seconds
	}

	if err == nil && connected.Established == 0 {
		err = fmt.Errorf("no connection could be established (%d failed)", connected.ConnectFailed)
	}

	// Scenario.
	if err == nil {
		r.phase.Store(cfg.Scenario)
		switch cfg.Scenario {
		case "idle":
			res.Idle, err = r.idle(ctx)
		case "fanout":
			res.Fanout, err = r.fanout(ctx)
		case "notify":
			res.Notify, err = r.notify(ctx)
		case "churn":
			res.Churn, err = r.churn(ctx)
		case "resume":
			res.Resume, err = r.resume(ctx)
		}
	}
	r.serverAfter(&res.Server, f.totals())
	holding := f.totals() // workers' memory while holding everything
	res.Client.RSSKB = holding.RSSKB
	if holding.Open > 0 {
		res.Client.PerConnKB = float64(holding.RSSKB) / float64(holding.Open)
	}

	r.phase.Store("stop")
	stopProgress()
	progress.Wait()
	stop()
	res.finish(f.totals(), finals, r.apiErrs.Load())
	res.Elapsed = time.Since(start).Seconds()
	if err != nil {
		res.Aborted = err.Error()
		if ctx.Err() != nil {
			res.Aborted = context.Cause(ctx).Error()
		}
	}
	return res, err
}

// findServer finds every node's pid (-pids, -pid, or from its port) and
// reads its memory before the run; it also sets the sources of the
// server's CPU time: the nodes, then -cpu-procs.
func (r *runner) findServer(s *serverResult) {
	cfg := r.cfg
	given := cfg.PIDs
	if given == nil && cfg.PID != 0 {
		given = []int{cfg.PID}
	}
	r.pids = make([]int, len(cfg.URLs))
	nodes := make([]nodeResult, len(cfg.URLs))
	known := 0
	for k, u := range cfg.URLs {
		n := &nodes[k]
		n.URL = u.String()
		pid := 0
		if given != nil {
			pid = given[k]
		} else {
			var err error
			if pid, err = serverPID(u); err != nil {
				n.Note = "server memory not measured: " + err.Error()
			}
		}
		if pid != 0 {
			rss, err := readRSSKB(pid)
			if err != nil {
				n.Note = "server memory not measured: " + err.Error()
				pid = 0
			}
			n.PID, n.RSSBeforeKB = pid, rss
		}
		if pid != 0 {
			known++
		}
		r.pids[k] = pid
		s.RSSBeforeKB += n.RSSBeforeKB
	}
	s.PID = nodes[0].PID
	if len(nodes) == 1 {
		s.Note = nodes[0].Note
	} else {
		s.Nodes = nodes
		if known < len(nodes) {
			s.Note = fmt.Sprintf("%d of %d nodes not measured: the sums are over the others", len(nodes)-known, len(nodes))
		}
	}
	if known < len(nodes) {
		return // a sum of CPU times that misses a node would mislead
	}
	for k, pid := range r.pids {
		r.cpuSources = append(r.cpuSources, cpuSource{name: fmt.Sprintf("node %d", k+1), pid: pid})
	}
	for _, p := range cfg.CPUProcs {
		if pid, err := strconv.Atoi(p); err == nil {
			r.cpuSources = append(r.cpuSources, cpuSource{name: "pid " + p, pid: pid, children: true})
			continue
		}
		r.cpuSources = append(r.cpuSources, cpuSource{name: p, comm: p})
	}
}

// serverAfter reads the nodes' memory at the end of the run, t being the
// fleet's totals then. Per connection only for idle, when connections are
// all that was added: the other scenarios leave messages in the server's
// store too.
func (r *runner) serverAfter(s *serverResult, t workerStats) {
	nodes := s.Nodes
	if nodes == nil {
		nodes = []nodeResult{{PID: s.PID, RSSBeforeKB: s.RSSBeforeKB}}
	}
	all := true
	s.RSSBeforeKB, s.RSSAfterKB = 0, 0
	for k := range nodes {
		n := &nodes[k]
		if r.pids[k] == 0 {
			all = false
			continue
		}
		n.RSSAfterKB, _ = readRSSKB(r.pids[k])
		s.RSSBeforeKB += n.RSSBeforeKB
		s.RSSAfterKB += n.RSSAfterKB
		conns := t.Open
		if len(nodes) > 1 {
			conns = 0
			if k < len(t.OpenByNode) {
				conns = t.OpenByNode[k]
			}
		}
		if conns > 0 && n.RSSAfterKB > 0 && r.cfg.Scenario == "idle" {
			n.Conns = conns
			n.PerConnKB = float64(n.RSSAfterKB-n.RSSBeforeKB) / float64(conns)
		}
	}
	if all && t.Open > 0 && s.RSSAfterKB > 0 && r.cfg.Scenario == "idle" {
		s.Conns = t.Open
		s.PerConnKB = float64(s.RSSAfterKB-s.RSSBeforeKB) / float64(t.Open)
	}
}

// serverRSSKB is the nodes' memory now, summed over those whose pid is
// known; 0 when none is.
func (r *runner) serverRSSKB() int64 {
	var sum int64
	for _, pid := range r.pids {
		if pid != 0 {
			if rss, err := readRSSKB(pid); err == nil {
				sum += rss
			}
		}
	}
	return sum
}

// resolveUsers sets the connection → user mapping and the user list.
func (r *runner) resolveUsers() error {
	cfg := r.cfg
	if cfg.TokenFile != "" {
		toks, subs, err := readTokenFile(cfg.TokenFile)
		if err != nil {
			return err
		}
		// Connection i uses token i mod len(tokens).
		r.tokens = make([]string, cfg.Conns)
		conn := make([]string, cfg.Conns)
		seen := map[string]bool{}
		for i := range cfg.Conns {
			r.tokens[i], conn[i] = toks[i%len(toks)], subs[i%len(subs)]
			if !seen[conn[i]] {
				seen[conn[i]] = true
				r.users = append(r.users, conn[i])
			}
		}
		r.connOf = func(i int) string { return conn[i] }
		return nil
	}
	r.users = make([]string, cfg.Users)
	for u := range r.users {
		r.users[u] = cfg.UserPrefix + strconv.Itoa(u)
	}
	r.connOf = func(i int) string { return r.users[i%cfg.Users] }
	return nil
}

// specs splits the connections and the connect rate over the workers.
func (r *runner) specs(start time.Time) []workerSpec {
	cfg := r.cfg
	specs := make([]workerSpec, cfg.Workers)
	for w := range specs {
		first, n := cfg.workerShare(w)
		share := float64(n) / float64(cfg.Conns)
		s := workerSpec{
			ID: w + 1, Transport: cfg.Transport, URL: cfg.endpoint(), URLs: cfg.endpoints(), First: first, Count: n,
			Dialect:         cfg.Dialect,
			LocalAddrs:      cfg.LocalAddrs,
			Rate:            cfg.Rate * share,
			DialConcurrency: max(1, int(float64(cfg.DialConcurrency)*share)),
			DialTimeout:     cfg.DialTimeout,
			IO:              cfg.ClientIO,
			TrackSeqs:       cfg.Scenario == "fanout",
			// Workers stop on their own a little after the coordinator
			// would have given up on them.
			Deadline: start.Add(cfg.Timeout + 30*time.Second),
		}
		if r.tokens != nil {
			s.Tokens = r.tokens[first : first+n]
		} else {
			s.Secret, s.UserPrefix, s.Users, s.TokenTTL = cfg.Secret, cfg.UserPrefix, cfg.Users, cfg.TokenTTL
		}
		if cfg.Scenario == "resume" {
			// Offsets and epochs to resume from (on SSE, from the event ids).
			s.Protocol = herald.SubprotocolV1
		}
		specs[w] = s
	}
	return specs
}

// idle holds the connections, reading the server's CPU time over the
// hold. The server's memory is read afterwards: by then the garbage of
// the connect phase (handshake buffers, HTTP request state) has had
// several GC cycles to go.
func (r *runner) idle(ctx context.Context) (*idleResult, error) {
	cpu := startCPU(r.cpuSources)
	start := time.Now()
	if !sleepUntil(ctx, start.Add(r.cfg.Hold)) {
		return nil, context.Cause(ctx)
	}
	cpu.stop()
	out := &idleResult{}
	out.ServerCPU, out.ServerCPUNote = cpu.result(time.Since(start), 0)
	return out, nil
}

// fanout broadcasts Messages times, each once the previous one has
// reached every connection (or timed out), and measures when the last
// connection got it.
func (r *runner) fanout(ctx context.Context) (*fanoutResult, error) {
	out := &fanoutResult{}
	for k := int64(1); k <= int64(r.cfg.Messages); k++ {
		if k > 1 && !sleepUntil(ctx, time.Now().Add(r.cfg.Interval)) {
			return out, context.Cause(ctx)
		}
		// Only our connections count; the server's reply counts everyone's.
		want := r.fleet.totals().Open
		t := time.Now().UnixNano()
		n, err := r.msgs.broadcast(ctx, fmt.Appendf(nil, `{"t":%d,"seq":%d}`, t, k))
		m := fanoutMsg{Seq: k, Expected: want, ServerConns: n, APIMs: ms(time.Now().UnixNano() - t)}
		if err != nil {
			if ctx.Err() != nil {
				return out, context.Cause(ctx) // stopped, not the server's failure
			}
			r.apiErrs.Add(1)
			out.APIErrors = append(out.APIErrors, err.Error())
			out.Messages = append(out.Messages, m)
			continue
		}
		_, werr := r.fleet.waitFor(ctx, r.cfg.MsgTimeout, func() bool {
			s := r.fleet.totals().Seqs[k]
			return s != nil && s.N >= want
		})
		if s := r.fleet.totals().Seqs[k]; s != nil {
			m.Delivered = s.N
			m.FirstMs, m.LastMs = ms(s.First-t), ms(s.Last-t)
			if s.Last > t {
				m.PerSec = float64(s.N) / (float64(s.Last-t) / 1e9)
			}
		}
		out.Messages = append(out.Messages, m)
		if werr != nil {
			return out, werr
		}
	}
	return out, nil
}

// notifyMsg is one notification: its sequence number and, once stamped,
// its timestamp (unix nanos).
type notifyMsg struct {
	seq, t int64
}

// notify sends MsgRate notifications a second for Duration, to the users
// in turn, each stamped with a timestamp, then waits for the deliveries.
// With Batch 1 each is one POST /v1/users/{u}/messages, stamped by its
// sender just before the request. With Batch > 1 each is stamped when the
// pacer creates it on the schedule and joins a batch, sent as one POST
// /v1/batch when Batch messages are in it or its first has waited
// BatchWait: the wait counts in the latency, as it would for a real
// sender. Should the senders fall behind the schedule, the pacer blocks
// and the achieved rate (reported) drops rather than the latency hiding
// the queueing. The server's CPU time is read around the send window.
func (r *runner) notify(ctx context.Context) (*notifyResult, error) {
	cfg := r.cfg
	out := &notifyResult{TargetRate: cfg.MsgRate, Batch: cfg.Batch}
	if cfg.Batch > 1 {
		out.BatchWaitMs = ms(int64(cfg.BatchWait))
	}
	var sent, expected, requests atomic.Int64
	var emu sync.Mutex
	// failed counts n messages as failed API calls, keeping a few samples.
	failed := func(n int64, sample func() string) {
		r.apiErrs.Add(n)
		emu.Lock()
		if len(out.APIErrorSamples) < maxErrorSamples {
			out.APIErrorSamples = append(out.APIErrorSamples, sample())
		}
		emu.Unlock()
	}
	userOf := func(seq int64) string { return userOfSeq(r.users, seq) }
	jobs := make(chan []notifyMsg, cfg.Senders)
	var senders sync.WaitGroup
	for range cfg.Senders {
		senders.Go(func() {
			for msgs := range jobs {
				if cfg.Batch == 1 {
					seq := msgs[0].seq
					body := fmt.Appendf(nil, `{"t":%d,"seq":%d}`, time.Now().UnixNano(), seq)
					n, err := r.msgs.sendUser(ctx, userOf(seq), body)
					if err != nil && ctx.Err() != nil {
						return // stopped, not the server's failure
					}
					requests.Add(1)
					if err != nil {
						failed(1, err.Error)
						continue
					}
					sent.Add(1)
					expected.Add(int64(n))
					continue
				}
				results, err := r.msgs.sendMessages(ctx, msgs, r.users)
				if err != nil && ctx.Err() != nil {
					return
				}
				requests.Add(1)
				if err != nil { // the whole request failed: every message in it did
					failed(int64(len(msgs)), func() string { return fmt.Sprintf("%d messages: %v", len(msgs), err) })
					continue
				}
				if len(results) != len(msgs) {
					failed(int64(len(msgs)), func() string {
						return fmt.Sprintf("POST /v1/batch: %d results for %d messages", len(results), len(msgs))
					})
					continue
				}
				var ok, conns int64
				for i, res := range results {
					if e := res.Error; e != nil {
						failed(1, func() string {
							return fmt.Sprintf("POST /v1/batch: message seq %d (user %s): %s: %s", msgs[i].seq, userOf(msgs[i].seq), e.Code, e.Message)
						})
						continue
					}
					ok++
					conns += int64(res.Connections)
				}
				sent.Add(ok)
				expected.Add(conns)
			}
		})
	}

	// The send window: from the first message due to the last reply. The
	// server's CPU is read at both ends, so the connect phase is not in it.
	cpu := startCPU(r.cpuSources)
	start := time.Now()
	r.pace(ctx, start, jobs)
	close(jobs)
	senders.Wait()
	elapsed := time.Since(start)
	cpu.stop()

	out.Sent, out.Expected = sent.Load(), expected.Load()
	out.APIErrors = r.apiErrs.Load()
	out.Requests = requests.Load()
	out.SendSeconds = elapsed.Seconds()
	out.Rate = float64(out.Sent) / elapsed.Seconds()
	out.RequestRate = float64(out.Requests) / elapsed.Seconds()
	out.ServerCPU, out.ServerCPUNote = cpu.result(elapsed, out.Sent)
	if ctx.Err() != nil {
		return out, context.Cause(ctx)
	}
	_, err := r.fleet.waitFor(ctx, r.cfg.MsgTimeout, func() bool {
		return r.fleet.totals().Delivered >= out.Expected
	})
	out.Delivered = r.fleet.totals().Delivered
	return out, err
}

// pace hands the notify senders their messages on the MsgRate schedule
// for Duration: one per job with Batch 1; with Batch > 1, stamped as they
// are created and grouped, a batch going when it is full or when its first
// message has waited BatchWait, whichever comes first. It returns when
// Duration has passed (and the last batch has gone) or ctx ends.
func (r *runner) pace(ctx context.Context, start time.Time, jobs chan<- []notifyMsg) {
	cfg := r.cfg
	var batch []notifyMsg
	var flushAt time.Time // when the first message of batch has waited BatchWait
	give := func(msgs []notifyMsg) bool {
		select {
		case jobs <- msgs:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for seq := int64(1); ; seq++ {
		due := start.Add(time.Duration(float64(seq-1) / cfg.MsgRate * float64(time.Second)))
		if due.Sub(start) >= cfg.Duration {
			break
		}
		// A partial batch goes once it has waited long enough, even when
		// the next message is not due yet.
		if len(batch) > 0 && flushAt.Before(due) {
			if !sleepUntil(ctx, flushAt) || !give(batch) {
				return
			}
			batch = nil
		}
		if !sleepUntil(ctx, due) {
			return
		}
		if cfg.Batch == 1 {
			if !give([]notifyMsg{{seq: seq}}) { // the sender stamps it
				return
			}
			continue
		}
		now := time.Now()
		if len(batch) == 0 {
			batch = make([]notifyMsg, 0, cfg.Batch)
			flushAt = now.Add(cfg.BatchWait)
		}
		batch = append(batch, notifyMsg{seq: seq, t: now.UnixNano()})
		if len(batch) == cfg.Batch {
			if !give(batch) {
				return
			}
			batch = nil
		}
	}
	// The last, partial batch waits as any other would: a sender cannot
	// know that no more messages are coming.
	if len(batch) > 0 && sleepUntil(ctx, flushAt) {
		give(batch)
	}
}

// batchBody is the POST /v1/batch request for msgs:
// {"messages":[{"user":"…","data":{"t":…,"seq":…}},…]}. quoted holds the
// users JSON-quoted, in r.users order.
func batchBody(msgs []notifyMsg, quoted [][]byte) []byte {
	b := make([]byte, 0, 16+len(msgs)*(64+len(quoted[0])))
	b = append(b, `{"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"user":`...)
		b = append(b, quoted[int((m.seq-1)%int64(len(quoted)))]...)
		b = fmt.Appendf(b, `,"data":{"t":%d,"seq":%d}}`, m.t, m.seq)
	}
	return append(b, "]}"...)
}

// churn has every worker close random connections and open them again,
// then checks that the server lists each sampled user's connections
// exactly: a server that leaked closed connections into its registry (or
// lost open ones) shows here.
func (r *runner) churn(ctx context.Context) (*churnResult, error) {
	out := &churnResult{TargetRate: r.cfg.ChurnRate}
	for _, p := range r.fleet.procs {
		p.mu.Lock()
		share := float64(p.stats.Assigned) / float64(r.cfg.Conns)
		p.mu.Unlock()
		if err := p.send(command{Op: "churn", Rate: r.cfg.ChurnRate * share, Duration: r.cfg.Duration}); err != nil {
			return out, fmt.Errorf("worker %d: %w", p.id, err)
		}
	}
	start := time.Now()
	_, err := r.fleet.waitFor(ctx, r.cfg.Duration+r.cfg.DialTimeout+5*time.Second, func() bool {
		return r.fleet.all(func(s workerStats) bool { return s.ChurnDone })
	})
	s := r.fleet.totals()
	out.Closed, out.Reconnected, out.Failed = s.ChurnClosed, s.ChurnReconnected, s.ChurnFailed
	out.Rate = float64(out.Closed) / time.Since(start).Seconds()
	if err != nil {
		return out, err
	}
	if s.Dropped > 0 || s.ChurnFailed > 0 || s.ConnectFailed > 0 {
		out.HubCheck = "skipped: some connections failed, so per-user counts are not known"
		return out, nil
	}
	// Give the server a moment to finish closing (it lingers for the
	// client's close frame) before comparing.
	if !sleepUntil(ctx, time.Now().Add(time.Second)) {
		return out, context.Cause(ctx)
	}
	want := map[string]int{}
	for i := range r.cfg.Conns {
		want[r.connOf(i)]++
	}
	const samples = 20
	step := (len(r.users) + samples - 1) / samples
	for u := 0; u < len(r.users); u += step {
		user := r.users[u]
		n, err := r.api.userConns(ctx, user)
		out.HubChecked++
		if err != nil {
			r.apiErrs.Add(1)
			out.HubMismatches = append(out.HubMismatches, err.Error())
			continue
		}
		if n != want[user] {
			out.HubMismatches = append(out.HubMismatches, fmt.Sprintf("user %s: server lists %d connections, we hold %d", user, n, want[user]))
		}
	}
	out.HubCheck = fmt.Sprintf("%d of %d sampled users listed with exactly their connections", out.HubChecked-len(out.HubMismatches), out.HubChecked)
	return out, nil
}

// progress prints one line a second to stderr until ctx ends.
func (r *runner) progress(ctx context.Context, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var prev workerStats
	prevAt := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := r.fleet.totals()
			dt := now.Sub(prevAt).Seconds()
			srv := ""
			if rss := r.serverRSSKB(); rss > 0 {
				srv = fmt.Sprintf(" | server rss %s", mib(rss))
			}
			errs := s.ConnectFailed + s.Dropped + s.BadFrames + s.ChurnFailed + s.ResumeFailed +
				s.Gaps + s.Duplicates + s.Resets + r.apiErrs.Load()
			replayed := ""
			if r.cfg.Scenario == "resume" {
				replayed = fmt.Sprintf(" | replayed %d (%.0f/s)", s.Replayed, float64(s.Replayed-prev.Replayed)/dt)
			}
			fmt.Fprintf(r.stderr, "[%4.0fs] %-7s conns %d/%d open %d (+%.0f/s) | delivered %d (%.0f/s)%s | errors %d%s | workers rss %s\n",
				now.Sub(start).Seconds(), r.phase.Load(), s.Established, r.cfg.Conns, s.Open,
				float64(s.Established+s.ChurnReconnected+s.ResumeReconnected-prev.Established-prev.ChurnReconnected-prev.ResumeReconnected)/dt,
				s.Delivered, float64(s.Delivered-prev.Delivered)/dt, replayed, errs, srv, mib(s.RSSKB))
			prev, prevAt = s, now
		}
	}
}
