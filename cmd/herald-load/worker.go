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
	peerKey []byte        // Dialect centrifugo: the HMAC key its tokens are minted with
	nets    []*net.Dialer // one per local address
	dialers []ws.Dialer   // WebSocket: nets with the handshake's settings
	sse     *sseTarget    // SSE: where the streams are
	poll    *poller       // nil in goroutine mode
	out     *eventWriter

	mu    sync.Mutex
	conns []*wconn // by index; nil while not connected

	established, connectFailed, open, dropped, badFrames atomic.Int64
	delivered, other, outOfOrder, pings                  atomic.Int64
	churnClosed, churnReconnected, churnFailed           atomic.Int64
	connectDone, churnDone                               atomic.Bool
	connectStart, connectEnd                             atomic.Int64 // unix nanos
	// nodeOpen is open by node of the target (-url a,b,c), in URL order;
	// nil in tests that build a worker by hand.
	nodeOpen []atomic.Int64

	// Resume scenario. streams is each connection's place in its user's
	// stream, by index; nil unless the spec asks for herald.v1. It is
	// written by the connection's reader and by its reconnect and read by
	// snapshots, hence its own lock (taken inside hmu, never around it).
	pmu                                   sync.Mutex
	streams                               []streamPos
	positioned, disconnected              atomic.Int64
	resumeReconnected, resumeFailed       atomic.Int64
	replayed, gaps, duplicates, resets    atomic.Int64
	disconnectDone, resumeDone            atomic.Bool
	resumeStart, resumeDialEnd, resumeEnd atomic.Int64 // unix nanos

	hmu                                  sync.Mutex // guards what follows
	latency, connect, reconnect, catchUp *histogram
	seqs                                 map[int64]*seqStat
	errs                                 []string
}

// streamPos is what one herald.v1 connection knows of its user's stream.
// It outlives the connection: a reconnect resumes from it.
type streamPos struct {
	offset int64  // the last offset received (or that a reset moved it to)
	epoch  string // the epoch that offset belongs to

	// Set by a resume reconnect.
	resumed  bool
	from     int64 // the offset it resumed from
	target   int64 // the user's last offset: caught up once it has this one
	dialAt   int64 // unix nanos: its reconnect dial started
	caughtUp bool
}

// connKind says why a connection is being opened.
type connKind int

const (
	connFirst  connKind = iota // the connect phase
	connChurn                  // churn: a reconnect after a random close
	connResume                 // resume: a reconnect that sends resume first
)

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
			switch c.Op {
			case "churn":
				work.Go(func() { w.churn(workCtx, c.Rate, c.Duration) })
			case "disconnect":
				work.Go(w.disconnectAll)
			case "resume":
				work.Go(func() { w.resumeAll(workCtx, c.Targets) })
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
	final := event{Ev: "final", Stats: w.snapshotLocked(rss), Latency: w.latency, Connect: w.connect, Reconnect: w.reconnect, CatchUp: w.catchUp}
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
		nodeOpen: make([]atomic.Int64, max(1, len(spec.URLs))),
	}
	if spec.TrackSeqs {
		w.seqs = make(map[int64]*seqStat)
	}
	switch spec.Dialect {
	case "":
	case dialectCentrifugo:
		if spec.Secret == "" || len(spec.Tokens) > 0 || spec.Protocol != "" || (spec.Transport != "" && spec.Transport != "ws") {
			return nil, errors.New("the centrifugo dialect needs minted tokens, WebSocket and no subprotocol")
		}
	default:
		return nil, fmt.Errorf("unsupported dialect %q", spec.Dialect)
	}
	switch spec.Protocol {
	case "":
	case herald.SubprotocolV1:
		w.streams = make([]streamPos, spec.Count)
		w.catchUp = newHistogram()
	default:
		return nil, fmt.Errorf("unsupported subprotocol %q", spec.Protocol)
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
		if spec.Dialect == dialectCentrifugo {
			w.peerKey = []byte(spec.Secret)
		}
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
		w.nets = append(w.nets, nd)
	}
	switch spec.Transport {
	case "", "ws":
		for _, nd := range w.nets {
			d := ws.Dialer{
				Timeout: spec.DialTimeout,
				NetDial: nd.DialContext,
				Header:  ws.HandshakeHeaderString("User-Agent: herald-load\r\n"),
			}
			if spec.Protocol != "" {
				d.Protocols = []string{spec.Protocol}
			}
			w.dialers = append(w.dialers, d)
		}
	case "sse":
		target := spec.URL
		if len(spec.URLs) > 1 {
			target = spec.URLs[spec.ID%len(spec.URLs)]
		}
		t, err := newSSETarget(target)
		if err != nil {
			return nil, err
		}
		w.sse = t
	default:
		return nil, fmt.Errorf("unsupported transport %q", spec.Transport)
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
	if w.peerKey != nil {
		return mintCentrifugoToken(w.peerKey, user, time.Now().Add(w.spec.TokenTTL), []string{centrifugoBroadcast})
	}
	return w.issuer.Mint(herald.UserID(user), w.spec.TokenTTL)
}

// connectAll opens every connection of this worker at its share of the
// connect rate, with at most DialConcurrency handshakes in flight.
func (w *worker) connectAll(ctx context.Context) {
	defer w.connectDone.Store(true)
	w.dialAll(ctx, &w.connectStart, connFirst)
}

// dialAll opens every connection at the worker's share of the connect
// rate, at most DialConcurrency handshakes in flight, having stored the
// time of the first dial in start.
func (w *worker) dialAll(ctx context.Context, start *atomic.Int64, kind connKind) {
	sem := make(chan struct{}, w.spec.DialConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	t0 := time.Now()
	start.Store(t0.UnixNano())
	for i := range w.spec.Count {
		due := t0.Add(time.Duration(float64(i) / w.spec.Rate * float64(time.Second)))
		if !sleepUntil(ctx, due) {
			return
		}
		if !w.goConnect(ctx, sem, &wg, i, kind) {
			return
		}
	}
}

// goConnect waits for a free slot in sem (one per handshake in flight),
// then connects i in a goroutine of wg that frees the slot when done. It
// returns false, connecting nothing, if ctx ends first.
func (w *worker) goConnect(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup, i int, kind connKind) bool {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	wg.Go(func() {
		defer func() { <-sem }()
		w.connectOne(ctx, i, kind)
	})
	return true
}

// connectOne dials connection i and starts reading it.
func (w *worker) connectOne(ctx context.Context, i int, kind connKind) bool {
	gi := w.spec.First + i
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return false // we are stopping: not the server's failure
		}
		switch kind {
		case connChurn:
			w.churnFailed.Add(1)
		case connResume:
			w.resumeFailed.Add(1)
		default:
			w.connectFailed.Add(1)
		}
		w.addError(fmt.Sprintf("connect %d: %v", gi, err))
		return false
	}
	tok, err := w.tokenFor(i)
	if err != nil {
		return fail(err)
	}
	var c *wconn
	var took time.Duration
	if w.sse != nil {
		c, took, err = w.dialSSE(ctx, i, tok, kind)
	} else {
		c, took, err = w.dialWS(ctx, i, tok, kind)
	}
	if err != nil {
		return fail(err)
	}
	if c == nil {
		return false // closed by what came with the handshake: counted as dropped by finish
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
	if kind == connFirst {
		w.connect.record(int64(took))
	} else {
		w.reconnect.record(int64(took))
	}
	w.hmu.Unlock()
	switch kind {
	case connChurn:
		w.churnReconnected.Add(1)
	case connResume:
		w.resumeReconnected.Add(1)
		storeMax(&w.resumeDialEnd, time.Now().UnixNano())
	default:
		w.established.Add(1)
		storeMax(&w.connectEnd, time.Now().UnixNano())
	}
	return true
}

// dialWS opens connection i as a WebSocket with tok, asking for the
// spec's subprotocol. A resume reconnect (kind connResume) sends resume
// from the connection's last offset before anything is read. Bytes the
// server wrote right behind its handshake are fed to the connection
// before it is returned; should they end it (a close frame), dialWS
// returns nil and no error: finish has counted the drop.
func (w *worker) dialWS(ctx context.Context, i int, tok string, kind connKind) (*wconn, time.Duration, error) {
	t0 := time.Now()
	target := w.spec.URL
	if n := len(w.spec.URLs); n > 1 {
		target = w.spec.URLs[(w.spec.First+i)%n]
	}
	if w.peerKey == nil {
		target += "?token=" + url.QueryEscape(tok)
	}
	nc, br, hs, err := w.dialers[(w.spec.First+i)%len(w.dialers)].Dial(ctx, target)
	if err != nil {
		return nil, 0, err
	}
	took := time.Since(t0)
	if hs.Protocol != w.spec.Protocol {
		// Without the envelope there are no offsets to check.
		_ = nc.Close()
		return nil, 0, fmt.Errorf("server chose subprotocol %q, not %q", hs.Protocol, w.spec.Protocol)
	}
	c := &wconn{w: w, nc: nc, idx: i}
	w.opened(i, 1)
	if w.peerKey != nil {
		// Established once the server has accepted the connect command.
		alive, err := c.centrifugoConnect(br, tok, t0.Add(w.spec.DialTimeout))
		if err != nil {
			c.state.Store(stClosing) // counted as a failed connect, not a drop
			c.finish(nil)
			return nil, 0, fmt.Errorf("centrifugo connect: %w", err)
		}
		if !alive {
			return nil, 0, nil
		}
		return c, time.Since(t0), nil
	}
	if kind == connResume {
		// Before anything is read: the first message must find the
		// connection resumed.
		if err := w.sendResume(c, t0.UnixNano()); err != nil {
			c.state.Store(stClosing) // counted as a failed reconnect, not a drop
			c.finish(nil)
			return nil, 0, fmt.Errorf("send resume: %w", err)
		}
	}
	if br != nil {
		// The server wrote right behind its handshake; those bytes are in
		// the dialer's buffer, not the socket.
		p, _ := br.Peek(br.Buffered())
		alive := c.feed(p, time.Now().UnixNano())
		ws.PutReader(br)
		if !alive {
			return nil, took, nil
		}
	}
	return c, took, nil
}

// storeMax raises a to v unless it already holds more.
func storeMax(a *atomic.Int64, v int64) {
	for prev := a.Load(); prev < v && !a.CompareAndSwap(prev, v); prev = a.Load() {
	}
}

// sendResume writes {"type":"resume","since":…,"epoch":"…"} from where
// connection c's stream left off, and marks it resumed (dialed at
// dialAt) once the server has it.
func (w *worker) sendResume(c *wconn, dialAt int64) error {
	since, epoch := w.resumePoint(c.idx)
	quoted, _ := json.Marshal(epoch) // a string always marshals
	if err := c.writeFrame(opText, fmt.Appendf(nil, `{"type":"resume","since":%d,"epoch":%s}`, since, quoted)); err != nil {
		return err
	}
	w.markResumed(c.idx, since, dialAt)
	return nil
}

// resumePoint is where connection i's stream left off: the offset and
// epoch a reconnect resumes from.
func (w *worker) resumePoint(i int) (since int64, epoch string) {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	return w.streams[i].offset, w.streams[i].epoch
}

// markResumed records that connection i, dialed at dialAt, asked the
// server to resume from since: what it receives from now on are replays
// until it reaches its target.
func (w *worker) markResumed(i int, since, dialAt int64) {
	w.pmu.Lock()
	s := &w.streams[i]
	s.resumed, s.from, s.dialAt = true, since, dialAt
	s.caughtUp = since >= s.target // nothing was missed
	caught := s.caughtUp
	w.pmu.Unlock()
	if caught {
		w.caughtUpAt(time.Now().UnixNano(), dialAt)
	}
}

// caughtUpAt records that a resumed connection dialed at dialAt had
// everything it missed at now.
func (w *worker) caughtUpAt(now, dialAt int64) {
	storeMax(&w.resumeEnd, now)
	w.hmu.Lock()
	w.catchUp.record(now - dialAt)
	w.hmu.Unlock()
}

// advance moves connection i's place in its stream to a stored message's
// offset (or, with reset, to where a reset message says to continue),
// counting what a resumed stream must never show: offsets skipped (gaps)
// and offsets seen again (duplicates). It reports whether the connection
// is a resumed one, whose messages are replays rather than live
// deliveries.
func (w *worker) advance(i int, off int64, epoch []byte, now int64, reset bool) (resumed bool) {
	var problem string // reported after unlocking: addError takes hmu
	w.pmu.Lock()
	s := &w.streams[i]
	switch {
	case reset:
		s.offset = off
	case s.offset == 0 && !s.resumed:
		// A fresh connection joins the stream wherever it stands.
		s.offset = off
		w.positioned.Add(1)
	case s.epoch != "" && string(epoch) != s.epoch:
		// Another history without a reset: the offsets cannot be compared.
		w.resets.Add(1)
		problem = fmt.Sprintf("connection %d: epoch changed from %s to %s without a reset", w.spec.First+i, s.epoch, epoch)
		s.offset = off
	case off <= s.offset:
		w.duplicates.Add(1)
	default:
		if off > s.offset+1 {
			w.gaps.Add(off - s.offset - 1)
		}
		if s.resumed {
			w.replayed.Add(1)
		}
		s.offset = off
	}
	if string(epoch) != s.epoch { // compared without a copy; copied only on change
		s.epoch = string(epoch)
	}
	caught := s.resumed && !s.caughtUp && s.offset >= s.target
	if caught {
		s.caughtUp = true
	}
	resumed, dialAt := s.resumed, s.dialAt
	w.pmu.Unlock()
	if problem != "" {
		w.addError(problem)
	}
	if caught {
		w.caughtUpAt(now, dialAt)
	}
	return resumed
}

// disconnectAll closes every connection at once, as clients that all lose
// their network do, keeping what each knows of its stream.
func (w *worker) disconnectAll() {
	w.disconnected.Add(int64(w.closeAll()))
	w.disconnectDone.Store(true)
}

// resumeAll reconnects every connection at the worker's share of the
// connect rate, each sending resume from its last offset as its first
// message: the storm of clients coming back after an outage. targets[i]
// is the last offset of connection i's user.
func (w *worker) resumeAll(ctx context.Context, targets []int64) {
	defer w.resumeDone.Store(true)
	if w.streams == nil || len(targets) != len(w.streams) {
		w.resumeFailed.Add(int64(w.spec.Count))
		w.addError(fmt.Sprintf("resume: %d targets for %d connections (subprotocol %q)", len(targets), w.spec.Count, w.spec.Protocol))
		return
	}
	w.pmu.Lock()
	for i := range w.streams {
		w.streams[i].target = targets[i]
	}
	w.pmu.Unlock()
	w.dialAll(ctx, &w.resumeStart, connResume)
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
		if !w.goConnect(ctx, sem, &wg, i, connChurn) {
			return
		}
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

// closeAll closes every connection, with a close frame each, and returns
// how many it closed.
func (w *worker) closeAll() int {
	w.mu.Lock()
	conns := append([]*wconn(nil), w.conns...)
	clear(w.conns)
	w.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c != nil {
			c.close()
			n++
		}
	}
	return n
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

// nodeOf is the index in the spec's URLs of the node connection i (of
// this worker) is on: WebSocket connections go round the nodes by their
// global index, an SSE worker's streams all go to one node (see
// workerSpec.URLs).
func (w *worker) nodeOf(i int) int {
	n := len(w.spec.URLs)
	switch {
	case n <= 1:
		return 0
	case w.sse != nil:
		return w.spec.ID % n
	}
	return (w.spec.First + i) % n
}

// opened counts connection i opening (delta 1) or closing (-1), in all and
// on its node.
func (w *worker) opened(i int, delta int64) {
	w.open.Add(delta)
	if k := w.nodeOf(i); k < len(w.nodeOpen) {
		w.nodeOpen[k].Add(delta)
	}
}

// openByNode is the open connections per node, in URL order; nil with one
// node (Open says it all).
func (w *worker) openByNode() []int64 {
	if len(w.nodeOpen) <= 1 {
		return nil
	}
	out := make([]int64, len(w.nodeOpen))
	for k := range w.nodeOpen {
		out[k] = w.nodeOpen[k].Load()
	}
	return out
}

func (w *worker) snapshot(rss int64) workerStats {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	return w.snapshotLocked(rss)
}

func (w *worker) snapshotLocked(rss int64) workerStats {
	s := workerStats{
		Assigned:          w.spec.Count,
		Established:       w.established.Load(),
		ConnectFailed:     w.connectFailed.Load(),
		ConnectDone:       w.connectDone.Load(),
		ConnectStart:      w.connectStart.Load(),
		ConnectEnd:        w.connectEnd.Load(),
		Open:              w.open.Load(),
		OpenByNode:        w.openByNode(),
		Dropped:           w.dropped.Load(),
		BadFrames:         w.badFrames.Load(),
		Delivered:         w.delivered.Load(),
		Other:             w.other.Load(),
		OutOfOrder:        w.outOfOrder.Load(),
		Pings:             w.pings.Load(),
		ChurnClosed:       w.churnClosed.Load(),
		ChurnReconnected:  w.churnReconnected.Load(),
		ChurnFailed:       w.churnFailed.Load(),
		ChurnDone:         w.churnDone.Load(),
		Positioned:        w.positioned.Load(),
		DisconnectDone:    w.disconnectDone.Load(),
		Disconnected:      w.disconnected.Load(),
		ResumeReconnected: w.resumeReconnected.Load(),
		ResumeFailed:      w.resumeFailed.Load(),
		ResumeDone:        w.resumeDone.Load(),
		ResumeStart:       w.resumeStart.Load(),
		ResumeDialEnd:     w.resumeDialEnd.Load(),
		ResumeEnd:         w.resumeEnd.Load(),
		Replayed:          w.replayed.Load(),
		Gaps:              w.gaps.Load(),
		Duplicates:        w.duplicates.Load(),
		Resets:            w.resets.Load(),
		RSSKB:             rss,
		Errors:            append([]string(nil), w.errs...),
	}
	// After ResumeDone was loaded: when it says done, every reconnected
	// connection is already marked resumed, so none is missed here.
	w.pmu.Lock()
	for i := range w.streams {
		st := &w.streams[i]
		if !st.resumed {
			continue
		}
		s.ResumeExpected += max(0, st.target-st.from)
		if st.caughtUp {
			s.CaughtUp++
		} else {
			s.Behind += max(0, st.target-st.offset)
		}
	}
	w.pmu.Unlock()
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
