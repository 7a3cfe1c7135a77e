package redis

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/brokertest"
	"github.com/herald-gw/herald/servicetest"
)

// waitTimeout bounds every wait of these tests; a wait that succeeds
// returns as soon as its condition holds.
const waitTimeout = 30 * time.Second

// eventually polls cond every few milliseconds until it holds, failing the
// test after waitTimeout.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logBuffer collects log output, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testLog returns a logger writing to the test's log, and nowhere once the
// test has ended (the cleanup that stops it runs after the brokers'
// Close, which is registered later).
func testLog(t testing.TB, also io.Writer) *slog.Logger {
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	w := writerFunc(func(p []byte) (int, error) {
		if also != nil {
			also.Write(p)
		}
		if !done.Load() {
			t.Log(strings.TrimSuffix(string(p), "\n"))
		}
		return len(p), nil
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// newNode returns a broker on url closed when the test ends.
func newNode(t testing.TB, url string, opts Options) *Broker {
	t.Helper()
	if opts.Log == nil {
		opts.Log = testLog(t, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := New(ctx, url, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func subscribe(t testing.TB, b *Broker, h herald.BrokerHandler) {
	t.Helper()
	stop, err := b.Subscribe(context.Background(), h)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(stop)
}

// rawClient is a plain go-redis client on the test's Redis, to publish
// by hand and to look at and kill connections.
func rawClient(t testing.TB, url string) *goredis.Client {
	t.Helper()
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestBehaviour runs the broker suite on nodes sharing the test's Redis
// and prefix.
func TestBehaviour(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, n int) []herald.Broker {
		url, prefix := servicetest.Redis(t)
		nodes := make([]herald.Broker, n)
		for i := range nodes {
			// A short linger, so that the suite sees a user it no
			// longer watches dropped soon.
			nodes[i] = newNode(t, url, Options{Prefix: prefix, Linger: 20 * time.Millisecond})
		}
		return nodes
	})
}

// TestOwnMessagesDropped checks that a node never receives what it
// published (messages, broadcasts, controls), and that it drops envelopes
// it cannot read without harm. A witness node receives what node a
// publishes; a marker published to Redis after that reaches a after a's
// own publications would have, since Redis delivers to a's connection in
// the order it ran the PUBLISHes.
func TestOwnMessagesDropped(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	a := newNode(t, url, Options{Prefix: prefix})
	w := newNode(t, url, Options{Prefix: prefix})
	recA, recW := &brokertest.Recorder{}, &brokertest.Recorder{}
	subscribe(t, a, recA)
	subscribe(t, w, recW)
	brokertest.Watch(t, a, "u")
	brokertest.Watch(t, w, "u", "v")
	ctx := context.Background()

	if err := a.Publish(ctx, []*herald.Message{brokertest.Msg("u", 1), brokertest.Msg("v", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := a.Broadcast(ctx, &herald.Message{ID: "b", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Control(ctx, herald.Control{Kind: herald.ControlPostToConn, Conn: "c", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	recW.WaitMessages(t, 2)
	recW.WaitBroadcasts(t, 1)
	recW.WaitControls(t, 1)

	raw := rawClient(t, url)
	publish := func(channel string, p []byte) {
		t.Helper()
		if err := raw.Publish(ctx, channel, p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage on every channel, and an envelope forged with a's id.
	publish(a.userChannel("u"), []byte("not an envelope"))
	publish(a.broadcastCh, []byte{wireVersion, byte(kindBroadcast), 0xff})
	publish(a.controlCh, nil)
	forged := brokertest.Msg("u", 2)
	publish(a.userChannel("u"), encodeMessages(nil, a.node, "u", []*herald.Message{forged}))
	marker := brokertest.Msg("u", 3)
	marker.ID = "marker"
	publish(a.userChannel("u"), encodeMessages(nil, "test", "u", []*herald.Message{marker}))

	got := recA.WaitMessages(t, 1)
	if len(got) != 1 || got[0].ID != "marker" {
		t.Errorf("node a received messages %v, want only the marker", got)
	}
	if n := len(recA.Broadcasts()) + len(recA.Controls()); n != 0 {
		t.Errorf("node a received %d of its own broadcasts and controls", n)
	}
	if n := a.badInput.Load(); n != 3 {
		t.Errorf("node a dropped %d unreadable envelopes, want 3", n)
	}
	if err := a.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// clientIDs returns the ids of the Redis connections of type typ (normal,
// pubsub) named name.
func clientIDs(t testing.TB, raw *goredis.Client, typ, name string) []string {
	t.Helper()
	list, err := raw.Do(context.Background(), "CLIENT", "LIST", "TYPE", typ).Text()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		var id string
		named := false
		for _, f := range strings.Fields(sc.Text()) {
			k, v, _ := strings.Cut(f, "=")
			switch {
			case k == "id":
				id = v
			case k == "name" && v == name:
				named = true
			}
		}
		if named {
			ids = append(ids, id)
		}
	}
	return ids
}

// deliverMarker publishes markers of user "marker" on from, one every few
// milliseconds, until one reaches rec, and fails the test if none does
// within waitTimeout. It proves delivery works now, whatever was lost
// before. rec's node must watch "marker" (see watchMarker).
func deliverMarker(t *testing.T, from *Broker, rec *brokertest.Recorder, tag string) {
	t.Helper()
	deliverTo(t, from, rec, "marker", tag)
}

// watchMarker makes b watch the user of deliverMarker.
func watchMarker(t *testing.T, b *Broker) { brokertest.Watch(t, b, "marker") }

// deliverTo is deliverMarker with messages of user.
func deliverTo(t *testing.T, from *Broker, rec *brokertest.Recorder, user herald.UserID, tag string) {
	t.Helper()
	arrived := func() bool {
		for _, m := range rec.Messages() {
			if strings.HasPrefix(m.ID, tag+"/") {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(waitTimeout)
	for off := uint64(1); !arrived(); off++ {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for a %q marker to arrive", waitTimeout, tag)
		}
		m := brokertest.Msg(user, off)
		m.ID = fmt.Sprintf("%s/%d", tag, off)
		if err := from.Publish(context.Background(), []*herald.Message{m}); err != nil && !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Publish: %v", err)
		}
		for range 5 {
			if arrived() {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// TestReconnect kills the subscriber's pub/sub connection and the
// publisher's connections from the server side: go-redis reconnects and
// resubscribes by itself, the broker says so in its log and in Ready, and
// delivery resumes without anyone touching the nodes.
func TestReconnect(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	tag := prefix[len(prefix)-13 : len(prefix)-1] // the test's random part
	logs := &logBuffer{}
	pub := newNode(t, url, Options{Prefix: prefix, Node: "pub-" + tag})
	sub := newNode(t, url, Options{Prefix: prefix, Node: "sub-" + tag, Log: testLog(t, logs)})
	resync := &resyncRecorder{}
	rec := &resync.Recorder
	subscribe(t, sub, resync)
	watchMarker(t, sub)
	deliverMarker(t, pub, rec, "before")
	if resync.resyncs.Load() != 0 {
		t.Fatal("the first subscription counted as a resubscription")
	}

	raw := rawClient(t, url)
	before := clientIDs(t, raw, "pubsub", "herald-sub-"+tag)
	if len(before) != 1 {
		t.Fatalf("subscriber has %d pub/sub connections, want 1", len(before))
	}
	kill := append(before, clientIDs(t, raw, "normal", "herald-pub-"+tag)...)
	for _, id := range kill {
		if err := raw.Do(context.Background(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
			t.Fatalf("CLIENT KILL ID %s: %v", id, err)
		}
	}

	deliverMarker(t, pub, rec, "after")
	eventually(t, "the log to say the subscription was lost and is back", func() bool {
		s := logs.String()
		return strings.Contains(s, "subscription lost") && strings.Contains(s, "subscription back")
	})
	after := clientIDs(t, raw, "pubsub", "herald-sub-"+tag)
	if len(after) != 1 || after[0] == before[0] {
		t.Errorf("pub/sub connections %v after killing %v, want one new one", after, before)
	}
	eventually(t, "the subscriber to be ready", func() bool { return sub.Ready() == nil })
	// The node is told, so that its sessions check the store for what was
	// published meanwhile.
	eventually(t, "the handler told of the resubscription", func() bool { return resync.resyncs.Load() >= 1 })
}

// resyncRecorder is a Recorder that also counts herald.BrokerResync calls.
type resyncRecorder struct {
	brokertest.Recorder
	resyncs atomic.Int32
}

func (r *resyncRecorder) HandleResubscribed() { r.resyncs.Add(1) }

// proxy is a TCP proxy in front of Redis that can hold the bytes in both
// directions: a Redis that stops answering without closing anything.
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   sync.Cond
	paused bool // hold the bytes
	down   bool // close every connection, accepted ones at once
	conns  []net.Conn
	closed bool
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.cond.L = &p.mu
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed || p.down {
			closed := p.closed
			p.mu.Unlock()
			c.Close()
			s.Close()
			if closed {
				return
			}
			continue
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies src to dst, holding each read while the proxy is paused.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused && !p.closed {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *proxy) setPaused(paused bool) {
	p.mu.Lock()
	p.paused = paused
	p.cond.Broadcast()
	p.mu.Unlock()
}

// setDown makes Redis look down (every connection closed, new ones
// closed as soon as they are accepted) or up again, as a restart does.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// TestQueueFull stalls Redis for one node (a proxy holds its bytes): its
// writer waits on a pipeline, Publish goes on returning at once until the
// small queue is full, and then fails with ErrQueueFull (EUnavailable)
// rather than block. Once Redis answers again, delivery resumes.
func TestQueueFull(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	p, purl := proxied(t, url)
	a := newNode(t, purl, Options{Prefix: prefix, QueueSize: 4})
	w := newNode(t, url, Options{Prefix: prefix})
	rec := &brokertest.Recorder{}
	subscribe(t, w, rec)
	watchMarker(t, w)
	deliverMarker(t, a, rec, "before")

	p.setPaused(true)
	result := make(chan error, 1)
	go func() {
		for off := uint64(1); off <= 100000; off++ {
			if err := a.Publish(context.Background(), []*herald.Message{brokertest.Msg("u", off)}); err != nil {
				result <- err
				return
			}
		}
		result <- nil
	}()
	select {
	case err := <-result:
		var herr *herald.Error
		switch {
		case err == nil:
			t.Fatal("100000 Publishes to a stalled Redis all succeeded")
		case !errors.Is(err, ErrQueueFull) || !errors.As(err, &herr) || herr.Code != herald.EUnavailable:
			t.Fatalf("Publish to a stalled Redis: %v, want ErrQueueFull with code %q", err, herald.EUnavailable)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Publish blocked for %v on a stalled Redis", waitTimeout)
	}

	p.setPaused(false)
	deliverMarker(t, a, rec, "after")
}

// proxied returns url with its host replaced by a new proxy's.
func proxied(t *testing.T, url string) (*proxy, string) {
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	return p, u.String()
}

// TestOutage takes Redis away from two nodes, as a restart does (every
// connection closed, new ones refused), and brings it back: during the
// outage Ready fails on both and Publish neither blocks nor fails other
// than with ErrQueueFull; afterwards both recover by themselves, Ready
// included on a node that publishes nothing more, and delivery resumes.
func TestOutage(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	p, purl := proxied(t, url)
	logs := &logBuffer{}
	a := newNode(t, purl, Options{Prefix: prefix, Log: testLog(t, logs), HealthInterval: 100 * time.Millisecond})
	b := newNode(t, purl, Options{Prefix: prefix, HealthInterval: 100 * time.Millisecond})
	rec := &brokertest.Recorder{}
	subscribe(t, b, rec)
	watchMarker(t, b)
	deliverMarker(t, a, rec, "before")

	p.setDown(true)
	eventually(t, "both nodes to report the outage", func() bool { return a.Ready() != nil && b.Ready() != nil })
	off := uint64(0)
	eventually(t, "node a to find publishing failing", func() bool {
		off++
		err := a.Publish(context.Background(), []*herald.Message{brokertest.Msg("u", off)})
		if err != nil && !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Publish during the outage: %v", err)
		}
		return a.state.writeFailing()
	})
	if err := a.Ready(); herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Errorf("Ready during the outage: %v, want an EUnavailable error", err)
	}

	p.setDown(false)
	eventually(t, "both nodes to be ready again", func() bool { return a.Ready() == nil && b.Ready() == nil })
	deliverMarker(t, a, rec, "after")
	for _, want := range []string{"subscription lost", "subscription back", "publishing failed", "publishing works again"} {
		eventually(t, fmt.Sprintf("node a's log to say %q", want), func() bool { return strings.Contains(logs.String(), want) })
	}
}

// TestSilentConnection stalls Redis without closing anything (a peer gone
// without a reset): the health check's ping goes unanswered, the node
// reports it in Ready and replaces its pub/sub connection, and recovers
// once Redis answers again.
func TestSilentConnection(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	p, purl := proxied(t, url)
	logs := &logBuffer{}
	a := newNode(t, url, Options{Prefix: prefix})
	b := newNode(t, purl, Options{Prefix: prefix, Log: testLog(t, logs), HealthInterval: 100 * time.Millisecond})
	rec := &brokertest.Recorder{}
	subscribe(t, b, rec)
	watchMarker(t, b)
	deliverMarker(t, a, rec, "before")

	p.setPaused(true)
	eventually(t, "the stalled node to report it", func() bool { return b.Ready() != nil })
	eventually(t, "the log to name the unanswered ping", func() bool {
		return strings.Contains(logs.String(), "no reply to a ping")
	})
	p.setPaused(false)
	eventually(t, "the node to be ready again", func() bool { return b.Ready() == nil })
	deliverMarker(t, a, rec, "after")
}

// TestNew checks New's failures: a URL it cannot use (without quoting its
// password back) and a Redis it cannot reach before ctx ends.
func TestNew(t *testing.T) {
	for _, url := range []string{
		"http://user:s3cret@127.0.0.1:6379",
		"redis://user:s3cret@127.0.0.1:notaport",
		"redis://user:s3cret@127.0.0.1:6379/notadb",
	} {
		_, err := New(context.Background(), url, Options{})
		if err == nil {
			t.Errorf("New(%q) succeeded", url)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%q): the error quotes the password: %v", url, err)
		}
	}

	// A port nothing listens on: take one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	b, err := New(ctx, "redis://"+addr, Options{Log: testLog(t, nil)})
	if err == nil {
		b.Close()
		t.Fatal("New on a closed port succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("New on a closed port: %v, want the deadline and the connection error", err)
	}

	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := New(cancelled, "redis://"+addr, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("New with a cancelled context: %v", err)
	}
}

// TestReadyAfterClose checks Ready's two ends: nil on a working node, the
// EUnavailable ErrClosed after Close.
func TestReadyAfterClose(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	b := newNode(t, url, Options{Prefix: prefix})
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	b.Close()
	if err := b.Ready(); !errors.Is(err, ErrClosed) || herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Fatalf("Ready after Close: %v, want ErrClosed", err)
	}
}

// TestNames checks the names the broker gives Redis: user ids of any
// bytes make plain channel names, and a node id makes a valid client
// name.
func TestNames(t *testing.T) {
	b := &Broker{prefix: "p:"}
	for _, u := range []herald.UserID{"42", "user ✓ with spaces/é", "*?[]\\", "a:b"} {
		c := b.userChannel(u)
		if !strings.HasPrefix(c, "p:u:") || strings.ContainsAny(c[4:], "*?[]\\:/ +=") {
			t.Errorf("userChannel(%q) = %q", u, c)
		}
	}
	if got := clientName("node 1\n✓"); strings.ContainsAny(got, " \n") || !strings.HasPrefix(got, "herald-node_1_") {
		t.Errorf("clientName = %q", got)
	}
}

// BenchmarkPublish measures messages per second from one node through
// Redis to the others (one other, or two as in a three-node cluster, each
// watching all the users), each Publish one message of one of 100 users,
// for two payload sizes; a
// Publish refused because the queue is full is retried (and counted). A
// message counts once every other node has it. It also reports the CPU
// Redis spent per 1,000 messages (from INFO cpu, so run it alone for a
// clean figure):
//
//	go test -run '^$' -bench BenchmarkPublish -benchtime 200000x ./redis/
func BenchmarkPublish(b *testing.B) {
	for _, nodes := range []int{2, 3} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("nodes=%d/payload=%dB", nodes, size), func(b *testing.B) { benchmarkPublish(b, nodes, size) })
		}
	}
}

func benchmarkPublish(b *testing.B, nodes, size int) {
	url, prefix := servicetest.Redis(b)
	pub := newNode(b, url, Options{Prefix: prefix})
	var got atomic.Int64 // deliveries on all the other nodes
	msgs := make([]*herald.Message, 100)
	for i := range msgs {
		msgs[i] = brokertest.Msg(herald.UserID(fmt.Sprintf("user-%d", i)), 1)
		msgs[i].Data = bytes.Repeat([]byte{'x'}, size)
	}
	for range nodes - 1 {
		n := newNode(b, url, Options{Prefix: prefix})
		subscribe(b, n, countHandler{&got})
		for _, m := range msgs {
			brokertest.Watch(b, n, m.User) // every node holds every user
		}
	}
	raw := rawClient(b, url)
	cpu0 := redisCPU(b, raw)
	full := 0
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		m := msgs[i%len(msgs)]
		m.Offset = uint64(i + 1)
		for {
			err := pub.Publish(context.Background(), []*herald.Message{m})
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) {
				b.Fatal(err)
			}
			full++
			time.Sleep(100 * time.Microsecond)
		}
	}
	eventually(b, "every message to arrive", func() bool { return got.Load() >= int64(b.N*(nodes-1)) })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(full)/float64(b.N), "queue-full/op")
	b.ReportMetric((redisCPU(b, raw)-cpu0).Seconds()*1000/(float64(b.N)/1000), "redis-cpu-ms/1k-msgs")
}

// redisCPU returns the CPU time the Redis server has used (user + system,
// INFO cpu).
func redisCPU(b *testing.B, raw *goredis.Client) time.Duration {
	info, err := raw.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			var f float64
			fmt.Sscan(v, &f)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

type countHandler struct{ n *atomic.Int64 }

func (h countHandler) HandleMessages(msgs []*herald.Message) { h.n.Add(int64(len(msgs))) }
func (h countHandler) HandleBroadcast(*herald.Message)       {}
func (h countHandler) HandleControl(herald.Control)          {}
