package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/brokertest"
	"github.com/herald-gw/herald/servicetest"
)

// logs collects a broker's log lines for a test to wait on, and shows them
// when the test fails. It never calls t.Log, since the client's goroutines
// may log after the test has ended.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logs) has(s string) bool { return strings.Contains(l.String(), s) }

// newLogs returns a logger into a logs, dumped when t fails.
func newLogs(t *testing.T) (*slog.Logger, *logs) {
	l := &logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker logs:\n%s", l)
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// newNode connects a broker for t, closed when t ends.
func newNode(t *testing.T, url string, opts Options, extra ...natsgo.Option) *Broker {
	t.Helper()
	if opts.Log == nil {
		opts.Log, _ = newLogs(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := connect(ctx, url, opts, extra...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// rawConn is a plain NATS connection, to put arbitrary bytes on the bus.
func rawConn(t *testing.T, url string) *natsgo.Conn {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatalf("raw connection: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func subscribe(t *testing.T, b herald.Broker, h herald.BrokerHandler) func() {
	t.Helper()
	stop, err := b.Subscribe(context.Background(), h)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(stop)
	return stop
}

func mustPublish(t *testing.T, b herald.Broker, msgs ...*herald.Message) {
	t.Helper()
	if err := b.Publish(context.Background(), msgs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// The whole Broker contract, on the test NATS server, each case on a
// subject prefix of its own.
func TestBehaviour(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, n int) []herald.Broker {
		url, prefix := servicetest.NATS(t)
		nodes := make([]herald.Broker, n)
		for i := range nodes {
			// A short linger, so that the suite sees a user it no
			// longer watches dropped soon.
			nodes[i] = newNode(t, url, Options{Prefix: prefix, Node: fmt.Sprintf("node-%d", i), Linger: 20 * time.Millisecond})
		}
		return nodes
	})
}

// A node drops every envelope bearing its own node id, whichever
// connection it came from (the server's no-echo covers only its own), and
// takes the same envelope from any other node id. One raw connection
// publishes both on one subject, so the dropped one would arrive first.
func TestOwnMessagesDropped(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	b := newNode(t, url, Options{Prefix: prefix, Node: "me"})
	rec := &brokertest.Recorder{}
	subscribe(t, b, rec)
	brokertest.Watch(t, b, "u")
	raw := rawConn(t, url)

	m := brokertest.Msg("u", 1)
	ctl := herald.Control{Kind: herald.ControlPostToConn, Conn: "c", Data: []byte("post")}
	userCtl := herald.Control{Kind: herald.ControlDisconnectUser, User: "u", Code: 4000}
	sends := []struct {
		subject string
		env     envelope
	}{
		{b.subj.user("u"), envelope{kind: kindMessages, msgs: []*herald.Message{m}}},
		{b.subj.broadcast(), envelope{kind: kindBroadcast, msgs: []*herald.Message{m}}},
		{b.subj.conns(), envelope{kind: kindControl, control: ctl}},
		{b.subj.control(userCtl), envelope{kind: kindControl, control: userCtl}},
	}
	for _, node := range []string{"me", "other"} {
		for _, s := range sends {
			s.env.node = node
			if err := raw.Publish(s.subject, encodeEnvelope(s.env)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	rec.WaitMessages(t, 1)
	rec.WaitBroadcasts(t, 1)
	rec.WaitControls(t, 2)
	// What "other" sent arrived, so what "me" sent before it on the same
	// subjects was dropped, not late.
	if n := rec.Calls(); n != 4 {
		t.Errorf("%d handler calls, want 4 (one of each from the other node)", n)
	}
	if got := rec.Messages(); len(got) != 1 || got[0].ID != m.ID {
		t.Errorf("messages %v, want %q once", got, m.ID)
	}

}

// Bytes that are not an envelope of this version are dropped and logged
// (without their content), and delivery goes on.
func TestUndecodableDropped(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	log, lines := newLogs(t)
	b := newNode(t, url, Options{Prefix: prefix, Log: log})
	rec := &brokertest.Recorder{}
	subscribe(t, b, rec)
	brokertest.Watch(t, b, "u")
	raw := rawConn(t, url)
	good := encodeEnvelope(envelope{node: "other", kind: kindMessages, msgs: []*herald.Message{brokertest.Msg("u", 1)}})
	for _, p := range [][]byte{
		[]byte(`{"secret payload":1}`),
		nil,
		append([]byte{envelopeVersion + 1}, good[1:]...),
		good[:len(good)-3],
		good,
	} {
		if err := raw.Publish(b.subj.user("u"), p); err != nil {
			t.Fatal(err)
		}
	}
	rec.WaitMessages(t, 1)
	if n := rec.Calls(); n != 1 {
		t.Errorf("%d handler calls, want 1", n)
	}
	brokertest.Eventually(t, "a log line about the dropped envelopes", func() bool { return lines.has("cannot be decoded") })
	if lines.has("secret payload") {
		t.Error("a payload reached the log")
	}
}

// blockingHandler holds its first HandleMessages call until release is
// closed.
type blockingHandler struct {
	brokertest.Recorder
	held    chan struct{} // closed once the first call is held
	release chan struct{}
	once    sync.Once
}

func (h *blockingHandler) HandleMessages(msgs []*herald.Message) {
	h.Recorder.HandleMessages(msgs)
	h.once.Do(func() {
		close(h.held)
		<-h.release
	})
}

// A subscriber whose queue is full drops what arrives, logs a slow
// consumer, and takes messages again once it has caught up. The queue is
// cut to one message so that a handler held on the first message is
// enough to overflow it.
func TestSlowConsumerDropsAndRecovers(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	log, lines := newLogs(t)
	sub := newNode(t, url, Options{Prefix: prefix, Node: "slow", Log: log})
	sub.pendingMsgs = 1
	sub.users.setLimits(1, pendingBytes)
	pub := newNode(t, url, Options{Prefix: prefix, Node: "pub"})
	h := &blockingHandler{held: make(chan struct{}), release: make(chan struct{})}
	subscribe(t, sub, h)
	brokertest.Watch(t, sub, "u")

	mustPublish(t, pub, brokertest.Msg("u", 1))
	select {
	case <-h.held:
	case <-time.After(brokertest.WaitTimeout):
		t.Fatalf("waited %v for the first message", brokertest.WaitTimeout)
	}
	// The held message counts against the limit until its call returns,
	// so each of these overflows the queue.
	for off := uint64(2); off <= 4; off++ {
		mustPublish(t, pub, brokertest.Msg("u", off))
	}
	brokertest.Eventually(t, "a slow consumer log line", func() bool { return lines.has("slow consumer") })
	close(h.release)

	// Delivery resumes: publish until a new message gets through.
	off := uint64(100)
	brokertest.Eventually(t, "delivery after the slow consumer caught up", func() bool {
		for _, m := range h.Messages() {
			if m.Offset >= 100 {
				return true
			}
		}
		off++
		mustPublish(t, pub, brokertest.Msg("u", off))
		return false
	})
	seen := map[uint64]bool{}
	for _, m := range h.Messages() {
		if seen[m.Offset] {
			t.Errorf("offset %d arrived twice", m.Offset)
		}
		seen[m.Offset] = true
	}
}

// A batch larger than the server's max_payload goes out in several
// envelopes, each user's messages still in order; a single message that
// cannot fit fails the Publish with nothing sent.
func TestPublishSplitsLargeBatches(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	pub := newNode(t, url, Options{Prefix: prefix, Node: "pub"})
	sub := newNode(t, url, Options{Prefix: prefix, Node: "sub"})
	rec := &brokertest.Recorder{}
	subscribe(t, sub, rec)
	brokertest.Watch(t, sub, "a", "b")

	limit := pub.maxPayload()
	size := limit / 5 // five fit in no envelope with their headers
	var batch []*herald.Message
	for off := uint64(1); off <= 12; off++ {
		for _, u := range []herald.UserID{"a", "b"} {
			m := brokertest.Msg(u, off)
			m.Data = bytes.Repeat([]byte{byte(off)}, size)
			batch = append(batch, m)
		}
	}
	mustPublish(t, pub, batch...)
	got := rec.WaitMessages(t, len(batch))
	last := map[herald.UserID]uint64{}
	for _, m := range got {
		if m.Offset != last[m.User]+1 || len(m.Data) != size || m.Data[0] != byte(m.Offset) {
			t.Fatalf("user %s: offset %d (%d bytes) after %d", m.User, m.Offset, len(m.Data), last[m.User])
		}
		last[m.User] = m.Offset
	}
	if n := len(rec.Batches()); n < 2*12/4 {
		t.Errorf("%d envelopes for 24 messages of a fifth of max_payload each", n)
	}

	huge := brokertest.Msg("a", 13)
	huge.Data = make([]byte, limit)
	if err := pub.Publish(context.Background(), []*herald.Message{brokertest.Msg("a", 13), huge}); err == nil ||
		!strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("Publish of a message beyond max_payload: %v", err)
	}
	if err := pub.Broadcast(context.Background(), huge); err == nil {
		t.Fatal("Broadcast of a message beyond max_payload succeeded")
	}
	// Nothing of the failed Publish was sent: a later message of the same
	// user is the next to arrive.
	mustPublish(t, pub, brokertest.Msg("a", 14))
	got = rec.WaitMessages(t, len(batch)+1)
	if m := got[len(got)-1]; m.Offset != 14 {
		t.Errorf("after the failed Publish, offset %d arrived; want 14", m.Offset)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		url  string
		opts Options
	}{
		{"no URL", "", Options{}},
		{"prefix with a wildcard", "nats://127.0.0.1:1", Options{Prefix: "a.*"}},
		{"prefix with an empty token", "nats://127.0.0.1:1", Options{Prefix: "a..b"}},
		{"node id too long", "nats://127.0.0.1:1", Options{Node: strings.Repeat("n", maxNodeLen+1)}},
		{"not a URL", "nats://[::1", Options{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The context never ends: a bad option must fail at once,
			// not wait for a server.
			b, err := New(context.Background(), tc.url, tc.opts)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

// proxy forwards TCP connections to a target until it is cut: then it
// closes every connection and refuses new ones (accepting and closing
// them at once) until restored. A broker behind it sees a real network
// fault: its connection drops and every reconnection attempt fails.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   sync.Cond // signalled when paused changes
	cut    bool
	paused bool // hold the bytes in both directions: a server that stops answering
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.cond.L = &p.mu
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

// url returns base with its host replaced by the proxy's.
func (p *proxy) url(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		p.t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track registers c, or closes it when the proxy is cut.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) serve(c net.Conn) {
	if !p.track(c) {
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(up) {
		c.Close()
		return
	}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, pausable{p, src})
		dst.Close()
		src.Close()
	}
	wg.Go(func() { pipe(up, c) })
	wg.Go(func() { pipe(c, up) })
	wg.Wait()
}

// pausable is a reader that holds what it read while its proxy is
// paused.
type pausable struct {
	p *proxy
	r io.Reader
}

func (pr pausable) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.mu.Lock()
	for pr.p.paused && !pr.p.cut {
		pr.p.cond.Wait()
	}
	pr.p.mu.Unlock()
	return n, err
}

// setPaused holds the bytes of every connection (paused) or lets them
// through again.
func (p *proxy) setPaused(paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = paused
	p.cond.Broadcast()
}

// setCut cuts the proxy (closing every connection) or restores it.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	p.cond.Broadcast() // paused reads give up on a cut connection
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// hostOf returns the host:port of a NATS URL.
func hostOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func isUnavailable(err error) bool {
	var herr *herald.Error
	return errors.As(err, &herr) && herr.Code == herald.EUnavailable
}

// New waits for a server that is not there yet, fails with EUnavailable
// when its context ends first, and succeeds once the server is reachable.
func TestNewWaitsForTheServer(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	p := startProxy(t, hostOf(t, url))
	p.setCut(true)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if b, err := connect(ctx, p.url(url), Options{Prefix: prefix}, natsgo.IgnoreDiscoveredServers()); !isUnavailable(err) {
		if err == nil {
			b.Close()
		}
		t.Fatalf("New with the server unreachable: %v, want an EUnavailable error", err)
	}

	type result struct {
		b   *Broker
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := connect(ctx, p.url(url), Options{Prefix: prefix}, natsgo.IgnoreDiscoveredServers())
		done <- result{b, err}
	}()
	p.setCut(false)
	r := <-done
	if r.err != nil {
		t.Fatalf("New once the server is reachable: %v", r.err)
	}
	defer r.b.Close()
	if err := r.b.Ready(); err != nil {
		t.Errorf("Ready after New: %v", err)
	}
}

func TestReadyAndClose(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	b := newNode(t, url, Options{Prefix: prefix})
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if b.Node() == "" {
		t.Error("no random node id")
	}
	b.Close()
	if err := b.Ready(); !isUnavailable(err) {
		t.Errorf("Ready after Close: %v, want an EUnavailable error", err)
	}
}

// A broker whose connection is cut reports it in Ready, queues what it
// publishes meanwhile (failing with EUnavailable once its reconnect
// buffer is full), reconnects by itself once the network is back,
// restores its subscription and sends what it queued: delivery resumes
// in both directions with nothing received twice.
func TestReconnect(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	p := startProxy(t, hostOf(t, url))
	log, lines := newLogs(t)
	const bufSize = 64 << 10
	far := newNode(t, p.url(url), Options{Prefix: prefix, Node: "far", Log: log},
		natsgo.IgnoreDiscoveredServers(), natsgo.ReconnectBufSize(bufSize))
	near := newNode(t, url, Options{Prefix: prefix, Node: "near"})
	farResync, nearRec := &resyncRecorder{}, &brokertest.Recorder{}
	farRec := &farResync.Recorder
	subscribe(t, far, farResync)
	subscribe(t, near, nearRec)
	brokertest.Watch(t, far, "u")
	brokertest.Watch(t, near, "v")

	mustPublish(t, near, brokertest.Msg("u", 1))
	farRec.WaitMessages(t, 1)

	p.setCut(true)
	brokertest.Eventually(t, "Ready to report the cut", func() bool { return far.Ready() != nil })
	if err := far.Ready(); !isUnavailable(err) {
		t.Errorf("Ready while cut: %v, want an EUnavailable error", err)
	}
	// Lost to far, or not: never twice.
	mustPublish(t, near, brokertest.Msg("u", 2))
	// Queued, sent after the reconnection.
	mustPublish(t, far, brokertest.Msg("v", 1))
	var full error
	for off := uint64(1); off <= 2*bufSize/1024; off++ {
		m := brokertest.Msg("w", off)
		m.Data = make([]byte, 1024)
		if full = far.Publish(context.Background(), []*herald.Message{m}); full != nil {
			break
		}
	}
	if !isUnavailable(full) {
		t.Errorf("Publish with the reconnect buffer full: %v, want an EUnavailable error", full)
	}
	if stop, err := far.Subscribe(context.Background(), &brokertest.Recorder{}); !isUnavailable(err) {
		if err == nil {
			stop()
		}
		t.Errorf("Subscribe while cut: %v, want an EUnavailable error", err)
	}

	p.setCut(false)
	brokertest.Eventually(t, "Ready after the network is back", func() bool { return far.Ready() == nil })
	brokertest.Eventually(t, "the reconnection in the log", func() bool { return lines.has("subscriptions restored") })
	// The node is told, so that its sessions check the store for what
	// was published meanwhile.
	brokertest.Eventually(t, "the handler told of the resubscription", func() bool { return farResync.resyncs.Load() >= 1 })
	// What far queued arrives once its subscriptions are back.
	brokertest.Eventually(t, "far's queued message at near", func() bool {
		for _, m := range nearRec.Messages() {
			if m.User == "v" {
				return true
			}
		}
		return false
	})
	// Far's subscription is back: near publishes until one gets through.
	off := uint64(2)
	brokertest.Eventually(t, "delivery to far after the reconnection", func() bool {
		for _, m := range farRec.Messages() {
			if m.Offset > 2 {
				return true
			}
		}
		off++
		mustPublish(t, near, brokertest.Msg("u", off))
		return false
	})
	var last uint64
	for _, m := range farRec.Messages() {
		if m.Offset <= last {
			t.Errorf("far: offset %d after %d", m.Offset, last)
		}
		last = m.Offset
	}
	seen := map[string]bool{}
	for _, m := range nearRec.Messages() {
		if seen[m.ID] {
			t.Errorf("near: %s arrived twice", m.ID)
		}
		seen[m.ID] = true
	}
}

// natsServer runs a NATS server of the test's own, which the test may
// stop and start again on the same port (the shared test server must not
// be restarted under other tests).
type natsServer struct {
	t    *testing.T
	bin  string
	port int
	cmd  *exec.Cmd
}

func startServer(t *testing.T) *natsServer {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		servicetest.Missing(t, "nats-server is not on PATH (Debian package nats-server)")
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &natsServer{t: t, bin: bin, port: port}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// start runs the server and waits until it accepts connections.
func (s *natsServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	brokertest.Eventually(s.t, "nats-server to accept connections", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill stops the server at once, as a crash would.
func (s *natsServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// A NATS server killed and started again: both nodes reconnect and
// resubscribe without being told, and delivery resumes. The test logs how
// long delivery paused (for docs/deploy.md); it asserts no duration.
func TestServerRestart(t *testing.T) {
	srv := startServer(t)
	aLog, aLines := newLogs(t)
	bLog, bLines := newLogs(t)
	a := newNode(t, srv.url(), Options{Node: "a", Log: aLog})
	b := newNode(t, srv.url(), Options{Node: "b", Log: bLog})
	rec := &brokertest.Recorder{}
	subscribe(t, b, rec)
	brokertest.Watch(t, b, "u")
	mustPublish(t, a, brokertest.Msg("u", 1))
	rec.WaitMessages(t, 1)

	srv.kill()
	killed := time.Now()
	brokertest.Eventually(t, "Ready to report the server gone", func() bool { return a.Ready() != nil && b.Ready() != nil })
	srv.start()
	started := time.Now()

	off := uint64(1)
	brokertest.Eventually(t, "delivery after the restart", func() bool {
		if n := len(rec.Messages()); n > 0 && rec.Messages()[n-1].Offset > 1 {
			return true
		}
		off++
		// While a is still reconnecting its publications queue; that is
		// fine, they go out once it is back.
		if err := a.Publish(context.Background(), []*herald.Message{brokertest.Msg("u", off)}); err != nil {
			t.Fatalf("Publish while the server restarts: %v", err)
		}
		return false
	})
	resumed := time.Now()
	t.Logf("server down %v; delivery resumed %v after the restart, %v after the kill",
		started.Sub(killed).Round(time.Millisecond), resumed.Sub(started).Round(time.Millisecond), resumed.Sub(killed).Round(time.Millisecond))
	for _, l := range []*logs{aLines, bLines} {
		brokertest.Eventually(t, "the reconnection in each node's log", func() bool { return l.has("subscriptions restored") })
	}
	if a.Ready() != nil || b.Ready() != nil {
		t.Errorf("Ready after the restart: %v, %v", a.Ready(), b.Ready())
	}
	var last uint64
	for _, m := range rec.Messages() {
		if m.Offset <= last {
			t.Errorf("offset %d after %d", m.Offset, last)
		}
		last = m.Offset
	}
}

// resyncRecorder is a Recorder that also counts herald.BrokerResync calls.
type resyncRecorder struct {
	brokertest.Recorder
	resyncs atomic.Int32
}

func (r *resyncRecorder) HandleResubscribed() { r.resyncs.Add(1) }
