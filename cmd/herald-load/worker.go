package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/token"
)

// worker is one worker process's state: its share of the connections and
// the counters it reports to the coordinator.
type worker struct {
	spec    workerSpec
	issuer  *token.Issuer // nil when tokens are given
	dialers []ws.Dialer   // one per local address
	poll    *poller       // nil in goroutine mode
	out     *eventWriter

	mu    sync.Mutex
	conns []*wconn // by index; nil while not connected

	established, connectFailed, open, dropped, badFrames atomic.Int64
	delivered, other, outOfOrder, pings                  atomic.Int64
	churnClosed, churnReconnected, churnFailed           atomic.Int64
	connectDone, churnDone                               atomic.Bool
	connectStart, connectEnd                             atomic.Int64 // unix nanos

	hmu                         sync.Mutex // guards what follows
	latency, connect, reconnect *histogram
	seqs                        map[int64]*seqStat
	errs                        []string
}

// eventWriter writes JSON lines to the coordinator, one at a time.
type eventWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (e *eventWriter) send(ev event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.enc.Encode(ev)
}

// runWorker is a worker process: it reads its spec from stdin, connects,
// reports, obeys commands, and on "stop", stdin EOF or its deadline closes
// every connection, reports its final numbers and returns.
func runWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	out := &eventWriter{enc: json.NewEncoder(stdout)}
	dec := json.NewDecoder(stdin)
	var spec workerSpec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("read worker spec: %w", err)
	}
	w, err := newWorker(spec, out)
	if err != nil {
		_ = out.send(event{Ev: "fatal", Error: err.Error()})
		return err
	}

	ctx, cancel := context.WithDeadline(ctx, spec.Deadline)
	defer cancel()
	cmds := make(chan command)
	go func() {
		defer close(cmds) // EOF: the coordinator is gone
		for {
			var c command
			if err := dec.Decode(&c); err != nil {
				return
			}
			select {
			case cmds <- c:
			case <-ctx.Done():
				return
			}
		}
	}()

	pollCtx, stopPoll := context.WithCancel(context.Background())
	var pollDone sync.WaitGroup
	if w.poll != nil {
		pollDone.Go(func() { w.poll.run(pollCtx) })
	}
	// Dials and churn stop when the worker is told to stop.
	workCtx, stopWork := context.WithCancel(ctx)
	var work sync.WaitGroup
	work.Go(func() { w.connectAll(workCtx) })

	tick := time.NewTicker(statsEvery)
	defer tick.Stop()
	var rss int64
	ticks := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case c, ok := <-cmds:
			if !ok || c.Op == "stop" {
				break loop
			}
			if c.Op == "churn" {
				work.Go(func() { w.churn(workCtx, c.Rate, c.Duration) })
			}
		case <-tick.C:
			if ticks%10 == 0 { // once a second: reading /proc more often is noise
				rss, _ = readRSSKB(os.Getpid())
			}
			ticks++
			if err := out.send(event{Ev: "stats", Stats: w.snapshot(rss)}); err != nil {
				break loop // stdout closed: the coordinator is gone
			}
		}
	}
	stopWork()
	work.Wait()
	w.closeAll()
	stopPoll()
	pollDone.Wait()

	rss, _ = readRSSKB(os.Getpid())
	w.hmu.Lock()
	final := event{Ev: "final", Stats: w.snapshotLocked(rss), Latency: w.latency, Connect: w.connect, Reconnect: w.reconnect}
	err = out.send(final)
	w.hmu.Unlock()
	return err
}

func newWorker(spec workerSpec, out *eventWriter) (*worker, error) {
	if spec.Count <= 0 || spec.Rate <= 0 || spec.DialConcurrency <= 0 {
		return nil, fmt.Errorf("bad spec (count %d, rate %v, dial concurrency %d)", spec.Count, spec.Rate, spec.DialConcurrency)
	}
	if err := checkFileLimit(spec.Count); err != nil {
		return nil, err
	}
	w := &worker{
		spec: spec, out: out,
		conns:   make([]*wconn, spec.Count),
		latency: newHistogram(), connect: newHistogram(), reconnect: newHistogram(),
	}
	if spec.TrackSeqs {
		w.seqs = make(map[int64]*seqStat)
	}
	switch {
	case len(spec.Tokens) > 0:
		if len(spec.Tokens) != spec.Count {
			return nil, fmt.Errorf("%d tokens for %d connections", len(spec.Tokens), spec.Count)
		}
	case spec.Secret != "" && spec.Users > 0:
		iss, err := token.NewIssuer([]byte(spec.Secret))
		if err != nil {
			return nil, fmt.Errorf("token secret: %w", err)
		}
		w.issuer = iss
	default:
		return nil, errors.New("worker spec has neither tokens nor a secret")
	}
	// One dialer per source address: binding the local address spreads the
	// connections over several ephemeral port ranges.
	addrs := spec.LocalAddrs
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	for _, a := range addrs {
		nd := &net.Dialer{}
		if a != "" {
			ip := net.ParseIP(a)
			if ip == nil {
				return nil, fmt.Errorf("bad local address %q", a)
			}
			nd.LocalAddr = &net.TCPAddr{IP: ip}
		}
		w.dialers = append(w.dialers, ws.Dialer{
			Timeout: spec.DialTimeout,
			NetDial: nd.DialContext,
			Header:  ws.HandshakeHeaderString("User-Agent: herald-load\r\n"),
		})
	}
	if spec.IO == "epoll" {
		p, err := newPoller()
		if err != nil {
			return nil, fmt.Errorf("client I/O epoll: %w", err)
		}
		w.poll = p
	}
	return w, nil
}

// tokenFor returns the token of connection i (an index into w.conns).
func (w *worker) tokenFor(i int) (string, error) {
	if w.issuer == nil {
		return w.spec.Tokens[i], nil
	}
	user := w.spec.UserPrefix + strconv.Itoa((w.spec.First+i)%w.spec.Users)
	return w.issuer.Mint(herald.UserID(user), w.spec.TokenTTL)
}

// connectAll opens every connection of this worker at its share of the
// connect rate, with at most DialConcurrency handshakes in flight.
func (w *worker) connectAll(ctx context.Context) {
	defer w.connectDone.Store(true)
	sem := make(chan struct{}, w.spec.DialConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	w.connectStart.Store(start.UnixNano())
	for i := range w.spec.Count {
		due := start.Add(time.Duration(float64(i) / w.spec.Rate * float64(time.Second)))
		if !sleepUntil(ctx, due) {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			w.connectOne(ctx, i, false)
		})
	}
}

// connectOne dials connection i and starts reading it.
func (w *worker) connectOne(ctx context.Context, i int, churn bool) bool {
	gi := w.spec.First + i
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return false // we are stopping: not the server's failure
		}
		if churn {
			w.churnFailed.Add(1)
		} else {
			w.connectFailed.Add(1)
		}
		w.addError(fmt.Sprintf("connect %d: %v", gi, err))
		return false
	}
	tok, err := w.tokenFor(i)
	if err != nil {
		return fail(err)
	}
	t0 := time.Now()
	nc, br, _, err := w.dialers[gi%len(w.dialers)].Dial(ctx, w.spec.WSURL+"?token="+url.QueryEscape(tok))
	if err != nil {
		return fail(err)
	}
	took := time.Since(t0)
	c := &wconn{w: w, nc: nc, idx: i}
	w.open.Add(1)
	if br != nil {
		// The server wrote right behind its handshake; those bytes are in
		// the dialer's buffer, not the socket.
		p, _ := br.Peek(br.Buffered())
		alive := c.feed(p, time.Now().UnixNano())
		ws.PutReader(br)
		if !alive {
			return false // counted as dropped by finish
		}
	}
	if w.poll == nil || w.poll.add(c) != nil {
		go c.readLoop()
	}
	// Published only now, with its reader set up: churn may close any
	// connection it finds here.
	w.mu.Lock()
	w.conns[i] = c
	w.mu.Unlock()
	w.hmu.Lock()
	if churn {
		w.reconnect.record(int64(took))
	} else {
		w.connect.record(int64(took))
	}
	w.hmu.Unlock()
	if churn {
		w.churnReconnected.Add(1)
	} else {
		w.established.Add(1)
		end := time.Now().UnixNano()
		for prev := w.connectEnd.Load(); prev < end && !w.connectEnd.CompareAndSwap(prev, end); prev = w.connectEnd.Load() {
		}
	}
	return true
}

// churn closes random connections and opens them again, rate a second for
// d: the connect/disconnect path under a steady load of held connections.
func (w *worker) churn(ctx context.Context, rate float64, d time.Duration) {
	defer w.churnDone.Store(true)
	if rate <= 0 {
		return
	}
	sem := make(chan struct{}, w.spec.DialConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	for n := 0; ; n++ {
		due := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
		if due.Sub(start) >= d || !sleepUntil(ctx, due) {
			return
		}
		i, c := w.pickOpen()
		if c == nil {
			continue // everything is reconnecting right now
		}
		c.close()
		w.churnClosed.Add(1)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			w.connectOne(ctx, i, true)
		})
	}
}

// pickOpen takes a random open connection out of w.conns.
func (w *worker) pickOpen() (int, *wconn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range 16 {
		i := rand.IntN(len(w.conns))
		if c := w.conns[i]; c != nil && c.state.Load() == stOpen {
			w.conns[i] = nil
			return i, c
		}
	}
	return 0, nil
}

// closeAll closes every connection, with a close frame each.
func (w *worker) closeAll() {
	w.mu.Lock()
	conns := append([]*wconn(nil), w.conns...)
	clear(w.conns)
	w.mu.Unlock()
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
}

func (w *worker) recordDelivery(seq, latency, now int64) {
	w.delivered.Add(1)
	w.hmu.Lock()
	w.latency.record(latency)
	if w.seqs != nil {
		s := w.seqs[seq]
		if s == nil {
			s = &seqStat{First: now}
			w.seqs[seq] = s
		}
		s.N++
		s.First = min(s.First, now)
		s.Last = max(s.Last, now)
	}
	w.hmu.Unlock()
}

// drop records a connection lost without us asking.
func (w *worker) drop(why string) {
	w.dropped.Add(1)
	w.addError(why)
}

func (w *worker) addError(msg string) {
	w.hmu.Lock()
	if len(w.errs) < maxErrorSamples {
		w.errs = append(w.errs, msg)
	}
	w.hmu.Unlock()
}

func (w *worker) snapshot(rss int64) workerStats {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	return w.snapshotLocked(rss)
}

func (w *worker) snapshotLocked(rss int64) workerStats {
	s := workerStats{
		Assigned:         w.spec.Count,
		Established:      w.established.Load(),
		ConnectFailed:    w.connectFailed.Load(),
		ConnectDone:      w.connectDone.Load(),
		ConnectStart:     w.connectStart.Load(),
		ConnectEnd:       w.connectEnd.Load(),
		Open:             w.open.Load(),
		Dropped:          w.dropped.Load(),
		BadFrames:        w.badFrames.Load(),
		Delivered:        w.delivered.Load(),
		Other:            w.other.Load(),
		OutOfOrder:       w.outOfOrder.Load(),
		Pings:            w.pings.Load(),
		ChurnClosed:      w.churnClosed.Load(),
		ChurnReconnected: w.churnReconnected.Load(),
		ChurnFailed:      w.churnFailed.Load(),
		ChurnDone:        w.churnDone.Load(),
		RSSKB:            rss,
		Errors:           append([]string(nil), w.errs...),
	}
	if len(w.seqs) > 0 {
		s.Seqs = make(map[int64]*seqStat, len(w.seqs))
		for k, v := range w.seqs {
			cp := *v
			s.Seqs[k] = &cp
		}
	}
	return s
}

// sleepUntil waits until t; it reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
