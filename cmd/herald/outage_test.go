package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-gw/herald/postgres"
	"github.com/herald-gw/herald/servicetest"
)

// The outage tests take a dependency of a running cluster away and give it
// back, with no Herald node restarted: a broker killed and started again
// (TestBrokerRestart), PostgreSQL cut off behind a proxy (TestStoreUnreachable).
// Their promise is the one of docs/api.md: a 200 means stored, so every
// acknowledged message reaches every tab once, in order, however the
// outage went; what is refused is refused with 503 `unavailable`.

// privateBrokers are the broker servers TestBrokerRestart runs a process of
// its own of: the machine's shared Redis and NATS serve other tests and
// must never be restarted.
var privateBrokers = []struct {
	name     string
	bin      string // looked up in PATH first
	fallback string // where the development and CI machines have it
	scheme   string
	args     func(port int) []string
}{
	{"redis", "redis-server", "/usr/bin/redis-server", "redis", func(port int) []string {
		// Nothing to keep: Herald keeps nothing in Redis (docs/deploy.md).
		return []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}
	}},
	{"nats", "nats-server", "/usr/sbin/nats-server", "nats", func(port int) []string {
		return []string{"-a", "127.0.0.1", "-p", fmt.Sprint(port)} // core NATS: Herald uses no JetStream
	}},
}

// brokerServer is a broker server process of the test's own on a loopback
// port, which the test can kill and start again on the same port.
type brokerServer struct {
	path string
	args []string
	dir  string
	addr string // 127.0.0.1:port
	URL  string

	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer // its stdout and stderr, for a failure message
}

// startBrokerServer runs a private server (bin, with args for its port)
// on a free loopback port, or
// skips the test (fails it with HERALD_REQUIRE_SERVICES=1) when its binary
// is not installed. It is killed when the test ends.
func startBrokerServer(t *testing.T, name, bin, fallback, scheme string, args func(int) []string) *brokerServer {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		if _, serr := os.Stat(fallback); serr != nil {
			servicetest.Missing(t, fmt.Sprintf("%s is not installed (not in PATH, not at %s): this test restarts a private %s server", bin, fallback, name))
			return nil
		}
		path = fallback
	}
	port := freePort(t)
	b := &brokerServer{path: path, args: args(port), dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", port)}
	b.URL = scheme + "://" + b.addr
	b.start(t)
	t.Cleanup(b.stop)
	return b
}

// freePort returns a loopback port nobody listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the server and returns once its port accepts connections.
// A server that exits first (its port still held by the kernel, for
// instance) is started again, until a generous deadline.
func (b *brokerServer) start(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b.out = &syncBuffer{}
		b.cmd = exec.Command(b.path, b.args...)
		b.cmd.Dir = b.dir
		b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
		if err := b.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", b.path, err)
		}
		exited := make(chan struct{})
		b.exited = exited
		go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(b.cmd)
		for {
			c, err := net.DialTimeout("tcp", b.addr, time.Second)
			if err == nil {
				c.Close()
				return
			}
			select {
			case <-exited:
			case <-time.After(10 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatalf("%s does not listen on %s; its output:\n%s", b.path, b.addr, b.out.String())
				}
				continue
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s exited before listening on %s; its output:\n%s", b.path, b.addr, b.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill sends SIGKILL, as a crash or an OOM kill does, and waits for the
// process to be gone: its sockets are closed by then.
func (b *brokerServer) kill(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", b.path, err)
	}
	select {
	case <-b.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not die of SIGKILL", b.path)
	}
}

func (b *brokerServer) stop() {
	_ = b.cmd.Process.Kill()
	<-b.exited
}

// waitHeld waits until node i holds want[i] connections of user. A node
// lists the whole cluster's connections, each with the node that holds
// it, once the registry is cluster-wide, and only its own before.
func waitHeld(t *testing.T, nodes []*proc, user string, want ...int) {
	t.Helper()
	for i, n := range nodes {
		name := fmt.Sprintf("node%d", i+1)
		var last string
		waitFor(t, lazy(func() string {
			return fmt.Sprintf("%s to hold %d connections of %s; it lists %s", name, want[i], user, last)
		}), func() bool {
			status, body, err := apiGet(n.URL, "/v1/users/"+user+"/connections")
			last = body
			var out struct {
				Connections []struct {
					Node *string `json:"node"`
				} `json:"connections"`
			}
			if err != nil || status != 200 || json.Unmarshal([]byte(body), &out) != nil {
				return false
			}
			held := 0
			for _, c := range out.Connections {
				if c.Node == nil || *c.Node == name {
					held++
				}
			}
			return held == want[i]
		})
	}
}

// apiGet calls the server API with the test key.
func apiGet(base, path string) (int, string, error) {
	req, err := newAPIRequest("GET", base+path, "")
	if err != nil {
		return 0, "", err
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// noTrim keeps every message: the tests read everything they sent back,
// and retention must not reset a resume.
var noTrim = []string{"HERALD_RETENTION_COUNT", "-1", "HERALD_RETENTION_AGE", "-1s"}

// outageTab is a herald.v1 client of one user. It reconnects when its
// connection fails (to the next node when a connect is refused, pausing a
// little), resuming from the last offset it saw as a browser tab does, and
// counts what it lost and got twice. It keeps each offset's payload, to
// compare with what the API acknowledged.
type outageTab struct {
	user string
	node int // where it connects first

	mu         sync.Mutex
	cur        int // the node it is connected to, or tries
	conn       *websocket.Conn
	last       uint64
	epoch      string
	data       map[uint64]string
	lost, dup  int
	resets     int
	reconnects int       // connections that ended, and connects that failed
	mark       time.Time // set by setMark
	afterMark  time.Time // when the first message after mark arrived
}

func (tb *outageTab) run(ctx context.Context, nodes []*proc, tok string) {
	tb.mu.Lock()
	tb.cur, tb.data = tb.node, map[uint64]string{}
	tb.mu.Unlock()
	for ctx.Err() == nil {
		tb.mu.Lock()
		u := nodes[tb.cur].WSURL + "/ws?token=" + tok
		if tb.last > 0 {
			u += fmt.Sprintf("&since=%d&epoch=%s", tb.last, tb.epoch)
		}
		tb.mu.Unlock()
		dctx, cancel := context.WithTimeout(ctx, testTimeout)
		c, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{Subprotocols: []string{"herald.v1"}})
		cancel()
		if err != nil {
			tb.mu.Lock()
			tb.reconnects++
			tb.cur = (tb.cur + 1) % len(nodes)
			tb.mu.Unlock()
			pause(ctx)
			continue
		}
		c.SetReadLimit(1 << 20)
		tb.mu.Lock()
		tb.conn = c
		tb.mu.Unlock()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				break
			}
			tb.handle(b)
		}
		c.CloseNow()
		tb.mu.Lock()
		tb.conn = nil
		tb.reconnects++
		tb.mu.Unlock()
		pause(ctx)
	}
}

// pause is a tab's back-off before it connects again: a real client backs
// off more, this one only a little.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(50 * time.Millisecond):
	}
}

func (tb *outageTab) handle(b []byte) {
	var e envelope
	if json.Unmarshal(b, &e) != nil {
		return
	}
	now := time.Now()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch e.Type {
	case "reset":
		tb.resets++
		return
	case "message":
	default:
		return
	}
	if !tb.mark.IsZero() && tb.afterMark.IsZero() {
		tb.afterMark = now
	}
	switch {
	case e.Offset <= tb.last:
		tb.dup++
		return
	case e.Offset > tb.last+1:
		tb.lost += int(e.Offset - tb.last - 1)
	}
	tb.last, tb.epoch = e.Offset, e.Epoch
	tb.data[e.Offset] = string(e.Data)
}

// drop closes the tab's connection from the client's side, as a network
// change does: the tab reconnects and resumes.
func (tb *outageTab) drop() {
	tb.mu.Lock()
	c := tb.conn
	tb.mu.Unlock()
	if c != nil {
		c.CloseNow()
	}
}

// setMark starts watching for the tab's next message.
func (tb *outageTab) setMark(at time.Time) {
	tb.mu.Lock()
	tb.mark, tb.afterMark = at, time.Time{}
	tb.mu.Unlock()
}

func (tb *outageTab) lastOffset() uint64 {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.last
}

// startTabs runs tabs until the returned stop is called.
func startTabs(t *testing.T, nodes []*proc, tabs []*outageTab) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, tb := range tabs {
		tok := nodes[0].token(t, tb.user)
		wg.Go(func() { tb.run(ctx, nodes, tok) })
	}
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

// outageTabs describes tabs for a failure message.
type outageTabs []*outageTab

func (o outageTabs) String() string {
	var b strings.Builder
	for i, tb := range o {
		tb.mu.Lock()
		fmt.Fprintf(&b, "tab %d (%s, node %d, now %d): last %d, reconnects %d; ", i, tb.user, tb.node, tb.cur, tb.last, tb.reconnects)
		tb.mu.Unlock()
	}
	return b.String()
}

// waitOffsets waits until every tab has seen its user's offset in want.
func waitOffsets(t *testing.T, tabs []*outageTab, want map[string]uint64) {
	t.Helper()
	waitFor(t, lazy(func() string { return fmt.Sprintf("every tab at %v (%s)", want, outageTabs(tabs)) }), func() bool {
		for _, tb := range tabs {
			if tb.lastOffset() < want[tb.user] {
				return false
			}
		}
		return true
	})
}

// checkTabs checks that each tab got exactly the acknowledged messages of
// its user: offsets 1..final once each, in order, no reset, and at each
// acknowledged offset the payload the API acknowledged.
func checkTabs(t *testing.T, tabs []*outageTab, l *notifyLog) {
	t.Helper()
	final := l.final()
	for i, tb := range tabs {
		tb.mu.Lock()
		if tb.lost != 0 || tb.dup != 0 || tb.resets != 0 || tb.last != final[tb.user] {
			t.Errorf("tab %d (%s, node %d): last %d of %d, lost %d, duplicated %d, resets %d, reconnects %d",
				i, tb.user, tb.node, tb.last, final[tb.user], tb.lost, tb.dup, tb.resets, tb.reconnects)
		}
		for off, d := range l.ackedOf(tb.user) {
			if got, ok := tb.data[off]; !ok || got != d {
				t.Errorf("tab %d (%s): acknowledged offset %d is %s, the tab got %q (%v)", i, tb.user, off, d, got, ok)
				break
			}
		}
		tb.mu.Unlock()
	}
}

// notifyLog records what the API answered to the senders: the payload of
// every acknowledged offset, and the payloads refused with 503.
type notifyLog struct {
	mu       sync.Mutex
	acked    map[string]map[uint64]string // user → offset → payload
	refused  map[string][]refusal         // user → what was answered 503
	okAfter  map[int]time.Time            // node → its first 200 after mark
	refAfter map[int]int                  // node → its 503s after mark
	mark     time.Time
	slowest  time.Duration // the longest notify since mark
	slowCode int           // and its status
	problems []string      // anything but a 200 with an offset or a well-formed 503
}

// refusal is a notify answered 503.
type refusal struct {
	data string
	took time.Duration // from request to answer
}

func newNotifyLog() *notifyLog {
	return &notifyLog{acked: map[string]map[uint64]string{}, refused: map[string][]refusal{}, okAfter: map[int]time.Time{}, refAfter: map[int]int{}}
}

func (l *notifyLog) count() (acked, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.acked {
		acked += len(m)
	}
	for _, r := range l.refused {
		refused += len(r)
	}
	return acked, refused
}

// final is the highest acknowledged offset of each user.
func (l *notifyLog) final() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := map[string]uint64{}
	for u, m := range l.acked {
		for off := range m {
			f[u] = max(f[u], off)
		}
	}
	return f
}

func (l *notifyLog) ackedOf(user string) map[uint64]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked[user]
}

// setMark starts watching for each node's next 200, counting its 503s
// and timing the slowest notify.
func (l *notifyLog) setMark(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mark, l.slowest, l.slowCode = at, 0, 0
	clear(l.okAfter)
	clear(l.refAfter)
}

// timed notes how long a notify answered status took, after the mark.
// l.mu is held.
func (l *notifyLog) timed(took time.Duration, status int) {
	if !l.mark.IsZero() && took > l.slowest {
		l.slowest, l.slowCode = took, status
	}
}

// notifier is an HTTP client that waits long enough for any answer: a
// notify whose commit answer was lost is held while the store finds out
// whether it committed (up to 10 s, docs/deploy.md), and a client timeout
// would turn that answer into an unknown outcome.
var notifier = &http.Client{Timeout: 60 * time.Second}

// send notifies user through node i at base once and records the
// answer; it reports whether the answer was a refusal.
func (l *notifyLog) send(i int, base, user, data string) (refused bool) {
	req, err := newAPIRequest("POST", base+"/v1/users/"+user+"/messages", data)
	if err != nil {
		panic(err)
	}
	start := time.Now()
	resp, err := notifier.Do(req)
	if err != nil {
		l.problem("%s: %v", data, err)
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		if err := checkErrorShape(resp, http.StatusServiceUnavailable, "unavailable"); err != nil {
			l.problem("%s: 503 but %v", data, err)
		}
		took := time.Since(start)
		l.mu.Lock()
		l.refused[user] = append(l.refused[user], refusal{data, took})
		if !l.mark.IsZero() {
			l.refAfter[i]++
		}
		l.timed(took, resp.StatusCode)
		l.mu.Unlock()
		return true
	}
	body, err := io.ReadAll(resp.Body)
	var r struct {
		Offset uint64 `json:"offset"`
	}
	// An offset of 0, or one no test stream reaches, is a false
	// acknowledgement: the message is not where the reply says.
	if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || r.Offset == 0 || r.Offset > 1<<32 {
		l.problem("%s: %d %s %v", data, resp.StatusCode, body, err)
		return false
	}
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timed(took, resp.StatusCode)
	if l.acked[user] == nil {
		l.acked[user] = map[uint64]string{}
	}
	if prev, ok := l.acked[user][r.Offset]; ok {
		l.problems = append(l.problems, fmt.Sprintf("offset %d of %s acknowledged twice: %s and %s", r.Offset, user, prev, data))
	}
	l.acked[user][r.Offset] = data
	if !l.mark.IsZero() && l.okAfter[i].IsZero() {
		l.okAfter[i] = time.Now()
	}
	return false
}

func (l *notifyLog) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.problems) < 20 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

func (l *notifyLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.problems {
		t.Errorf("notify: %s", p)
	}
}

// senders notify continuously, one for each user of users, sender s
// through nodes[s%len(nodes)], until stopped; after a 503 a sender backs
// off a little, as a client should.
func (l *notifyLog) senders(nodes []*proc, users []string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for s, u := range users {
		node := s % len(nodes)
		base := nodes[node].URL
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if l.send(node, base, u, fmt.Sprintf(`{"s":%d,"i":%d}`, s, i)) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// readyz asks base's /readyz: its status and, for a 503, whether the body
// is the one error shape with code unavailable.
func readyz(base string) (status int, body string, err error) {
	resp, err := apiClient.Get(base + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		return resp.StatusCode, string(b), checkErrorShape(resp, http.StatusServiceUnavailable, "unavailable")
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// waitReadyz waits until every node's /readyz answers status, and returns
// the last body of each (a 503's message says why).
func waitReadyz(t *testing.T, nodes []*proc, status int) []string {
	t.Helper()
	bodies := make([]string, len(nodes))
	for i, n := range nodes {
		waitFor(t, lazy(func() string { return fmt.Sprintf("node %d: /readyz %d (last: %s)", i+1, status, bodies[i]) }), func() bool {
			got, body, err := readyz(n.URL)
			bodies[i] = body
			if err != nil && got != 0 {
				t.Fatalf("node %d: /readyz %d: %v", i+1, got, err)
			}
			return got == status
		})
	}
	return bodies
}

// A broker (Redis, then NATS: a private server, on a port of its own)
// dies of SIGKILL while a sender notifies through one of three nodes and
// is started again on the same port; no Herald node is restarted. While
// it is down, notifies still succeed (the store is the truth), every
// node's /readyz answers 503 and the sender's node still delivers to its
// own tabs. Once it is back, the nodes resubscribe by themselves and
// every tab on every node ends with every acknowledged message once, in
// order. The test logs how long cross-node delivery paused.
func TestBrokerRestart(t *testing.T) {
	for _, eng := range privateBrokers {
		t.Run(eng.name, func(t *testing.T) {
			bs := startBrokerServer(t, eng.name, eng.bin, eng.fallback, eng.scheme, eng.args)
			dsn := servicetest.Postgres(t)
			nodes := startCluster(t, 3, bs.URL, "herald_outage", dsn, noTrim...)
			const sender = 0 // every notify goes through node 1

			// Users k and m, with tabs on every node: k has one on the
			// sender's node.
			tabs := []*outageTab{
				{user: "k", node: 0}, {user: "k", node: 1}, {user: "k", node: 2}, {user: "k", node: 2},
				{user: "m", node: 1}, {user: "m", node: 2},
			}
			stopTabs := startTabs(t, nodes, tabs)
			waitHeld(t, nodes, "k", 1, 1, 2)
			waitHeld(t, nodes, "m", 0, 1, 1)
			var local, remote []*outageTab
			for _, tb := range tabs {
				if tb.node == sender {
					local = append(local, tb)
				} else {
					remote = append(remote, tb)
				}
			}

			l := newNotifyLog()
			stopSenders := l.senders(nodes[sender:sender+1], []string{"k", "m"})
			defer stopSenders()
			waitFor(t, "100 acknowledged notifies before the kill", func() bool { a, _ := l.count(); return a >= 100 })
			waitOffsets(t, tabs, map[string]uint64{"k": 50, "m": 50}) // delivery across nodes works

			atKill := map[*outageTab]uint64{}
			for _, tb := range remote {
				atKill[tb] = tb.lastOffset()
			}
			killed := time.Now()
			bs.kill(t)
			before := l.final()
			bodies := waitReadyz(t, nodes, http.StatusServiceUnavailable)
			down := time.Since(killed)
			// Notifies go on, and the sender's node delivers them to its
			// own tabs without the broker.
			during := l.final()
			waitFor(t, "50 more acknowledged notifies with the broker down", func() bool {
				f := l.final()
				return f["k"]+f["m"] >= during["k"]+during["m"]+50
			})
			waitOffsets(t, local, l.final())
			// A few seconds of outage, then the same server again.
			if d := 2*time.Second - time.Since(killed); d > 0 {
				time.Sleep(d)
			}
			atRestart := l.final()
			stuck := map[*outageTab]uint64{}
			for _, tb := range remote {
				stuck[tb] = tb.lastOffset()
			}
			restarted := time.Now()
			for _, tb := range remote {
				tb.setMark(restarted)
			}
			bs.start(t)
			listening := time.Since(restarted)

			// Cross-node delivery resumes, with no node restarted.
			var first time.Time
			waitFor(t, lazy(func() string {
				return fmt.Sprintf("a tab on another node than the sender's to get a message after the restart (%s)", outageTabs(remote))
			}), func() bool {
				for _, tb := range remote {
					tb.mu.Lock()
					at := tb.afterMark
					tb.mu.Unlock()
					if !at.IsZero() && (first.IsZero() || at.Before(first)) {
						first = at
					}
				}
				return !first.IsZero()
			})
			waitOffsets(t, remote, atRestart)
			caughtUp := time.Since(restarted)
			waitReadyz(t, nodes, http.StatusOK)
			ready := time.Since(restarted)
			after := l.final()
			waitFor(t, "100 more acknowledged notifies after the restart", func() bool {
				f := l.final()
				return f["k"]+f["m"] >= after["k"]+after["m"]+100
			})
			stopSenders()
			waitOffsets(t, tabs, l.final())
			stopTabs()

			l.check(t)
			checkTabs(t, tabs, l)
			inFlight := 0
			for _, tb := range remote {
				inFlight += int(stuck[tb] - atKill[tb])
			}
			acked, _ := l.count()
			t.Logf("%d acknowledged; broker down %v (every /readyz 503 after %v: %q); messages acknowledged during the outage: %d",
				acked, restarted.Sub(killed).Round(time.Millisecond), down.Round(time.Millisecond), bodies[1],
				int(atRestart["k"]+atRestart["m"]-before["k"]-before["m"]))
			t.Logf("cross-node delivery paused: first delivery %v after the kill, %v after the restart (the server listened after %v); "+
				"every remote tab caught up %v after the restart; every /readyz 200 %v after it; remote tabs got %d messages between kill and restart",
				first.Sub(killed).Round(time.Millisecond), first.Sub(restarted).Round(time.Millisecond), listening.Round(time.Millisecond),
				caughtUp.Round(time.Millisecond), ready.Round(time.Millisecond), inFlight)
		})
	}
}

// history reads user's whole stored stream through n.
func history(t *testing.T, n *proc, user string) []envelope {
	t.Helper()
	var all []envelope
	for since := uint64(0); ; {
		status, body := n.api(t, "GET", fmt.Sprintf("/v1/users/%s/messages?since=%d&limit=1000", user, since), "")
		var r struct {
			Messages []envelope `json:"messages"`
			Next     uint64     `json:"next"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &r) != nil {
			t.Fatalf("history of %s since %d: %d %s", user, since, status, body)
		}
		if len(r.Messages) == 0 {
			return all
		}
		all = append(all, r.Messages...)
		since = r.Next
	}
}

// PostgreSQL is cut off (a proxy in front of it drops every connection and
// refuses new ones) for a few seconds while senders notify through both
// nodes of a cluster. Meanwhile notifies answer 503 `unavailable` in the
// one error shape and /readyz answers 503; a tab that loses its connection
// cannot resume yet. Once the proxy is back, with no node restarted,
// notifies succeed again, /readyz answers 200, and every tab — the one
// that reconnected across the outage too — ends with every acknowledged
// message once, in order; the history holds every acknowledged message at
// its offset, and the test counts the 503s whose message was stored after
// all.
func TestStoreUnreachable(t *testing.T) {
	dsn := servicetest.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := servicetest.NewCutProxy(t, u.Host)
	u.Host = p.Addr()
	busURL, cluster := clusterEngines[0].bus(t) // postgres+redis: the machine's Redis, a prefix of the test's own
	nodes := startCluster(t, 2, busURL, cluster, u.String(), noTrim...)

	tabs := []*outageTab{{user: "k", node: 0}, {user: "k", node: 1}, {user: "k", node: 1}}
	flapper := tabs[2] // loses its connection during the outage
	stopTabs := startTabs(t, nodes, tabs)
	waitHeld(t, nodes, "k", 1, 2)

	l := newNotifyLog()
	// Two senders per node: while a notify whose commit answer was lost
	// waits for the store to find out what became of it, the other shows
	// what its node answers meanwhile.
	stopSenders := l.senders(nodes, []string{"k", "k", "k", "k"})
	defer stopSenders()
	waitFor(t, "100 acknowledged notifies before the cut", func() bool { a, _ := l.count(); return a >= 100 })
	waitOffsets(t, tabs, map[string]uint64{"k": 50})

	cut := time.Now()
	l.setMark(cut)
	p.Cut()
	bodies := waitReadyz(t, nodes, http.StatusServiceUnavailable)
	waitFor(t, "a 503 from each node", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.refAfter[0] > 0 && l.refAfter[1] > 0
	})
	flapper.drop()
	if d := 3*time.Second - time.Since(cut); d > 0 {
		time.Sleep(d)
	}
	_, refusedDuring := l.count()
	l.mu.Lock()
	slowCut, slowCutCode := l.slowest, l.slowCode
	l.mu.Unlock()
	flapper.mu.Lock()
	flaps := flapper.reconnects
	flapper.mu.Unlock()

	restored := time.Now()
	l.setMark(restored)
	p.Restore()

	var okAgain time.Time
	waitFor(t, "a 200 from each node after the proxy is back", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		okAgain = l.okAfter[0]
		if l.okAfter[1].After(okAgain) {
			okAgain = l.okAfter[1]
		}
		return !l.okAfter[0].IsZero() && !l.okAfter[1].IsZero()
	})
	waitReadyz(t, nodes, http.StatusOK)
	ready := time.Since(restored)
	after := l.final()
	waitFor(t, "100 more acknowledged notifies after the cut", func() bool { return l.final()["k"] >= after["k"]+100 })
	stopSenders()
	final := l.final()
	waitOffsets(t, tabs, final)
	stopTabs()

	l.check(t)
	checkTabs(t, tabs, l)

	// The history: offsets 1..final, each acknowledged payload at its
	// offset, no payload twice; and what became of the refused ones.
	h := history(t, nodes[1], "k")
	stored := map[string]uint64{}
	for i, m := range h {
		if m.Offset != uint64(i+1) {
			t.Fatalf("history[%d] has offset %d: a gap or a duplicate", i, m.Offset)
		}
		if prev, ok := stored[string(m.Data)]; ok {
			t.Errorf("%s stored twice, at %d and %d", m.Data, prev, m.Offset)
		}
		stored[string(m.Data)] = m.Offset
	}
	if uint64(len(h)) != final["k"] {
		t.Errorf("history holds %d messages, the last acknowledged offset is %d", len(h), final["k"])
	}
	for off, d := range l.ackedOf("k") {
		if stored[d] != off {
			t.Errorf("acknowledged %s at offset %d; the history has it at %d (0: missing)", d, off, stored[d])
		}
	}
	l.mu.Lock()
	refused := l.refused["k"]
	slowAfter, slowAfterCode := l.slowest, l.slowCode
	l.mu.Unlock()
	// docs/api.md: a 503 means nothing was stored. The one exception is a
	// commit whose outcome stays unknown: its answer lost, the server
	// unreachable for the store's whole write timeout
	// (postgres.DefaultWriteTimeout) while it asks. Such a 503 comes that
	// late; only those may have been stored.
	var refusedStored, unknown int
	for _, r := range refused {
		_, ok := stored[r.data]
		switch {
		case r.took >= postgres.DefaultWriteTimeout:
			unknown++
			if ok {
				refusedStored++
			}
		case ok:
			refusedStored++
			t.Errorf("%s was answered 503 after %v, and is stored at offset %d", r.data, r.took, stored[r.data])
		}
	}
	acked, _ := l.count()
	t.Logf("%d acknowledged, %d refused with 503 (%d during the %v cut; %d late enough to be of unknown outcome), %d of them stored; /readyz during the cut: %q",
		acked, len(refused), refusedDuring, restored.Sub(cut).Round(time.Millisecond), unknown, refusedStored, bodies[0])
	t.Logf("slowest notify during the cut: %v (answered %d); after the proxy came back: %v (answered %d)",
		slowCut.Round(time.Millisecond), slowCutCode, slowAfter.Round(time.Millisecond), slowAfterCode)
	t.Logf("after the proxy came back: every sender's notify succeeded within %v, every /readyz 200 within %v; the tab dropped in the cut had %d connects refused or cut before the proxy came back",
		okAgain.Sub(restored).Round(time.Millisecond), ready.Round(time.Millisecond), flaps)
}
