package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// testTransport records what a session writes. It drains at once unless
// stalled, in which case its queue only grows, like a client that does not
// read.
type testTransport struct {
	mu      sync.Mutex
	frames  [][]byte
	pings   int
	closed  uint16
	stalled bool
	queued  int // bytes, while stalled
	oneWay  bool
	onWrite func(queued int) // called with the queue size after each write
}

func (t *testTransport) Write(b []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed != 0 {
		return false
	}
	t.frames = append(t.frames, b)
	if t.stalled {
		t.queued += len(b)
	}
	if t.onWrite != nil {
		t.onWrite(t.queued)
	}
	return true
}

func (t *testTransport) Pending() (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queued == 0 {
		return 0, 0
	}
	return len(t.frames), t.queued
}

func (t *testTransport) Ping() {
	t.mu.Lock()
	t.pings++
	t.mu.Unlock()
}

func (t *testTransport) Close(code uint16, _ string) {
	t.mu.Lock()
	if t.closed == 0 {
		t.closed = code
	}
	t.mu.Unlock()
}

func (t *testTransport) Bidirectional() bool { return !t.oneWay }

func (t *testTransport) closeCode() uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// messages decodes the herald.v1 text frames written so far.
func (t *testTransport) messages() []map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []map[string]any
	for _, f := range t.frames {
		p := framePayload(f)
		var m map[string]any
		if json.Unmarshal(p, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// offsets lists the offsets of the messages written so far, in order.
func (t *testTransport) offsets() []uint64 {
	var out []uint64
	for _, m := range t.messages() {
		if m["type"] == "message" {
			out = append(out, uint64(m["offset"].(float64)))
		}
	}
	return out
}

func framePayload(f []byte) []byte {
	switch n := f[1] & 0x7F; n {
	case 126:
		return f[4:]
	case 127:
		return f[10:]
	default:
		return f[2:]
	}
}

// fakeClock is a Clock tests advance by hand.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock and runs the timers that came due, in the
// caller's goroutine.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

type fixture struct {
	store  *memory.Store
	hub    *hub.Hub
	m      *Manager
	clock  *fakeClock
	tokens *token.Issuer
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	iss, err := token.NewIssuer([]byte("test-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	// Real time to start from: tokens carry real expiry times.
	clk := &fakeClock{now: time.Now().Truncate(time.Second)}
	if cfg.Clock == nil {
		cfg.Clock = clk
	}
	h := hub.New(0)
	return &fixture{store: st, hub: h, m: NewManager(cfg, h, st, iss, slog.New(slog.DiscardHandler)), clock: clk, tokens: iss}
}

func (f *fixture) open(t *testing.T, tr Transport, p Params) *Session {
	t.Helper()
	if p.ID == "" {
		p.ID = herald.ConnID(fmt.Sprintf("c%p", tr))
	}
	if p.User == "" {
		p.User = "u"
	}
	s := f.m.New(tr, p)
	f.m.Start(s)
	t.Cleanup(s.Gone)
	return s
}

// appendN stores n messages for user with payloads of size bytes.
func (f *fixture) appendN(t *testing.T, user herald.UserID, n, size int) []*herald.Message {
	t.Helper()
	msgs := make([]*herald.Message, n)
	for i := range msgs {
		data := bytes.Repeat([]byte("x"), size)
		copy(data, fmt.Sprintf(`"%d`, i))
		data[len(data)-1] = '"'
		msgs[i] = &herald.Message{User: user, Data: data}
	}
	if err := f.store.Append(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// eventually polls cond until it holds or 20 s pass: a bound, not a window.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantOffsets(t *testing.T, tr *testTransport, want []uint64) {
	t.Helper()
	eventually(t, fmt.Sprintf("offsets %v", want), func() bool { return len(tr.offsets()) >= len(want) })
	if got := tr.offsets(); !slices.Equal(got, want) {
		t.Fatalf("offsets %v, want %v", got, want)
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// A session handed n and then n+2 fetches n+1 from the Store before n+2,
// and drops n+1 when it arrives late: a late or lost delivery never becomes
// a gap, a duplicate or a reordering.
func TestGapFilledFromStore(t *testing.T) {
	f := newFixture(t, Config{})
	tr := &testTransport{}
	s := f.open(t, tr, Params{Format: wire.FormatV1}) // the stream is empty: position 0
	msgs := f.appendN(t, "u", 5, 10)
	send := func(i int) { s.Send(wire.Encode(wire.FormatV1, msgs[i]), msgs[i].Offset) }
	send(0) // 1
	send(2) // 3: 2 is missing
	send(4) // 5: parked behind the gap fill
	wantOffsets(t, tr, seq(1, 5))
	send(1) // 2, late
	send(3) // 4, late
	send(4) // 5 again
	if got := tr.offsets(); !slices.Equal(got, seq(1, 5)) {
		t.Fatalf("late deliveries were sent again: %v", got)
	}
}

// Concurrent publishers reach the hub in any order; every session still
// sees its user's offsets 1..n once each, in order.
func TestOrderUnderConcurrentPublishers(t *testing.T) {
	f := newFixture(t, Config{})
	tr := &testTransport{}
	f.open(t, tr, Params{Format: wire.FormatV1})
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				m := &herald.Message{User: "u", Data: []byte(`1`)}
				if err := f.store.Append(context.Background(), []*herald.Message{m}); err != nil {
					t.Error(err)
					return
				}
				f.hub.SendUser(m) // after the commit, as stream.Publish does, racing the others
			}
		})
	}
	wg.Wait()
	wantOffsets(t, tr, seq(1, writers*each))
}

// A resuming client that does not read holds at most its send queue's
// worth of memory, however long the replay: history is read a page at a
// time, each page small enough to fit half the queue, and the next page
// only when the queue has room.
func TestReplayMemoryBoundedByQueue(t *testing.T) {
	const queueBytes = 1 << 20
	f := newFixture(t, Config{MaxQueueBytes: queueBytes})
	f.appendN(t, "u", 60, 100<<10) // 6 MB of history
	var mu sync.Mutex
	worst := 0
	tr := &testTransport{stalled: true}
	tr.onWrite = func(queued int) {
		// Called with the transport's lock held: what the session holds
		// besides the queue is at most the rest of one page.
		mu.Lock()
		worst = max(worst, queued)
		mu.Unlock()
	}
	held := &heldHistory{History: f.store, queued: func() int { _, b := tr.Pending(); return b }}
	f.m.history = held
	s := f.open(t, tr, Params{Format: wire.FormatV1, Resume: &Resume{Since: 0}})
	eventually(t, "the replay to stall on the full queue", func() bool {
		_, b := tr.Pending()
		return b+100<<10 > queueBytes/2
	})
	s.Gone() // the client goes away: the replay must stop, not hang
	held.mu.Lock()
	defer held.mu.Unlock()
	if held.worst > queueBytes {
		t.Fatalf("a page plus the queue held %d bytes; the queue bound is %d", held.worst, queueBytes)
	}
	if held.pages < 2 {
		t.Fatalf("history was read in %d page(s): not paged", held.pages)
	}
}

// heldHistory records, at each history read, the bytes of the page plus
// what is queued: the most a replay holds at once.
type heldHistory struct {
	History
	queued func() int
	mu     sync.Mutex
	worst  int
	pages  int
}

func (h *heldHistory) Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	msgs, err := h.History.Since(ctx, user, since, limit)
	n := 0
	for _, m := range msgs {
		n += len(m.Data) + 200 // the envelope around it
	}
	h.mu.Lock()
	h.worst = max(h.worst, n+h.queued())
	h.pages++
	h.mu.Unlock()
	return msgs, err
}

// The first-message form of resume: before any live message it replays
// exactly like ?since=; after live messages were sent it continues
// seamlessly when they start right after the client's point, and otherwise
// answers with a reset rather than leaving a gap or repeating messages.
func TestResumeMessage(t *testing.T) {
	cases := []struct {
		name      string
		live      [2]int // indexes of the messages sent live before the resume
		since     uint64 // the client's resume point
		epoch     string
		wantReset bool
		want      []uint64
	}{
		{"before anything live", [2]int{4, 4}, 2, "", false, seq(3, 6)},
		{"live continues the point", [2]int{3, 4}, 3, "", false, seq(4, 6)},
		{"gap before the live ones", [2]int{4, 5}, 2, "", true, seq(5, 6)},
		{"live ones overlap the point", [2]int{1, 4}, 3, "", true, seq(2, 6)},
		{"other epoch", [2]int{3, 4}, 3, "another", true, seq(4, 6)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			// What was stored before the connection is its position; the
			// rest comes after it, some of it live before the resume.
			msgs := f.appendN(t, "u", tc.live[0], 10)
			tr := &testTransport{}
			s := f.open(t, tr, Params{Format: wire.FormatV1})
			msgs = append(msgs, f.appendN(t, "u", 6-tc.live[0], 10)...)
			for _, m := range msgs[tc.live[0]:tc.live[1]] {
				s.Send(wire.Encode(wire.FormatV1, m), m.Offset)
			}
			epoch := tc.epoch
			if epoch == "" {
				epoch = f.store.Epoch()
			}
			resume, _ := json.Marshal(map[string]any{"type": "resume", "since": tc.since, "epoch": epoch})
			if err := s.HandleMessage(resume); err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs[max(tc.live[1], 4):] {
				s.Send(wire.Encode(wire.FormatV1, m), m.Offset)
			}
			wantOffsets(t, tr, tc.want)
			reset := slices.ContainsFunc(tr.messages(), func(m map[string]any) bool { return m["type"] == "reset" })
			if reset != tc.wantReset {
				t.Fatalf("reset sent: %v, want %v (%v)", reset, tc.wantReset, tr.messages())
			}
		})
	}
}

// A client cannot acknowledge an offset it was never sent: such an ack is
// refused and not counted, so ?wait=ack cannot report a false receipt.
func TestAckBeyondSentRefused(t *testing.T) {
	f := newFixture(t, Config{})
	tr := &testTransport{}
	s := f.open(t, tr, Params{Format: wire.FormatV1})
	msgs := f.appendN(t, "u", 3, 10)
	s.Send(wire.Encode(wire.FormatV1, msgs[0]), 1)
	if err := s.Ack(3); herald.ErrorCodeOf(err) != herald.EInvalidRequest {
		t.Fatalf("ack of an unsent offset: %v", err)
	}
	if s.Acked() != 0 {
		t.Fatalf("refused ack counted: %d", s.Acked())
	}
	if err := s.HandleMessage([]byte(`{"type":"ack","offset":2}`)); err != nil {
		t.Fatal(err)
	}
	if m := tr.messages(); m[len(m)-1]["code"] != "bad_ack" {
		t.Fatalf("no bad_ack error: %v", m)
	}
	if err := s.Ack(1); err != nil || s.Acked() != 1 {
		t.Fatalf("ack of a sent offset: %v, acked %d", err, s.Acked())
	}
}

// Token expiry runs on the token's own deadline, and a refresh moves it.
func TestTokenExpiryOnItsDeadline(t *testing.T) {
	f := newFixture(t, Config{})
	tr := &testTransport{}
	now := f.clock.Now()
	s := f.open(t, tr, Params{Format: wire.FormatV1, Expires: now.Add(time.Hour)})
	f.clock.Advance(59 * time.Minute)
	if c := tr.closeCode(); c != 0 {
		t.Fatalf("closed %d before expiry", c)
	}
	tok, err := f.tokens.Mint("u", 3*time.Hour) // real time: only its exp matters
	if err != nil {
		t.Fatal(err)
	}
	if err := s.HandleMessage([]byte(`{"type":"refresh","token":"` + tok + `"}`)); err != nil {
		t.Fatal(err)
	}
	claims, _ := f.tokens.Verify(tok)
	f.clock.Advance(2 * time.Minute) // past the first expiry
	if c := tr.closeCode(); c != 0 {
		t.Fatalf("refreshed session closed %d", c)
	}
	f.clock.Advance(claims.Expires.Sub(f.clock.Now()) + time.Second)
	if c := tr.closeCode(); c != wire.CloseTokenExpired {
		t.Fatalf("close code %d after the refreshed expiry, want %d", c, wire.CloseTokenExpired)
	}
}

// Liveness counts pings sent, not clock time: a session is dead only after
// MaxPingsOut pings without any read since, however late the heartbeats
// come; a one-way transport (SSE) is never judged by pings.
func TestHeartbeatByPingsSent(t *testing.T) {
	f := newFixture(t, Config{MaxPingsOut: 2})
	live, dead, oneWay := &testTransport{}, &testTransport{}, &testTransport{oneWay: true}
	ls := f.open(t, live, Params{Format: wire.FormatV1})
	f.open(t, dead, Params{Format: wire.FormatRaw})
	f.open(t, oneWay, Params{Format: wire.FormatSSE})
	for range 10 {
		f.m.HeartbeatAll()
		ls.Read(f.clock.Now()) // the live client answers every ping
	}
	if c := live.closeCode(); c != 0 {
		t.Fatalf("live session closed %d", c)
	}
	if c := oneWay.closeCode(); c != 0 {
		t.Fatalf("one-way session closed %d by heartbeats", c)
	}
	if c := dead.closeCode(); c != wire.ClosePolicyViolation {
		t.Fatalf("dead session: close %d, want %d", c, wire.ClosePolicyViolation)
	}
	if dead.pings != 2 {
		t.Fatalf("dead session got %d pings before the close, want 2", dead.pings)
	}
}

// A message the Store does not know (another store's, or history lost)
// cannot be gap-filled: the session says so with a reset and goes on,
// rather than reading the Store forever.
func TestGapTheStoreCannotFill(t *testing.T) {
	f := newFixture(t, Config{})
	tr := &testTransport{}
	s := f.open(t, tr, Params{Format: wire.FormatV1})
	msgs := f.appendN(t, "u", 1, 10)
	s.Send(wire.Encode(wire.FormatV1, msgs[0]), 1)
	foreign := &herald.Message{ID: "x", User: "u", Offset: 5, Epoch: f.store.Epoch(), Data: []byte(`1`)}
	s.Send(wire.Encode(wire.FormatV1, foreign), 5)
	wantOffsets(t, tr, []uint64{1, 5})
	if !slices.ContainsFunc(tr.messages(), func(m map[string]any) bool { return m["type"] == "reset" && m["offset"] == 4.0 }) {
		t.Fatalf("no reset to offset 4: %v", tr.messages())
	}
}

// discard is a transport that takes everything and keeps nothing.
type discard struct{}

func (discard) Write([]byte) bool    { return true }
func (discard) Pending() (int, int)  { return 0, 0 }
func (discard) Ping()                {}
func (discard) Close(uint16, string) {}
func (discard) Bidirectional() bool  { return true }

// Handing a session an already encoded message allocates nothing: a
// fan-out to a million sessions costs the encoding once per format, not
// an allocation per delivery. An observer changes nothing there.
func TestSendAllocatesNothing(t *testing.T) {
	for _, obs := range []Observer{nil, &recorder{}} {
		t.Run(fmt.Sprintf("observer %T", obs), func(t *testing.T) {
			f := newFixture(t, Config{Observer: obs})
			s := f.open(t, discard{}, Params{Format: wire.FormatV1})
			b := wire.Encode(wire.FormatV1, &herald.Message{ID: "m", User: "u", Offset: 1, Epoch: "e", Data: []byte(`{}`)})
			off := uint64(0)
			if n := testing.AllocsPerRun(1000, func() {
				off++
				s.Send(b, off)
			}); n != 0 {
				t.Fatalf("%v allocations per Send", n)
			}
		})
	}
}

// Expiry keeps no timer per session: sessions whose tokens expire in the
// same second share one, a refresh moves a session to its new second, and
// a closed session leaves at once (nothing holds it until its expiry).
func TestExpiryBuckets(t *testing.T) {
	f := newFixture(t, Config{})
	at := f.clock.Now().Add(time.Hour)
	var ss []*Session
	var trs []*testTransport
	for range 100 {
		tr := &testTransport{}
		trs = append(trs, tr)
		ss = append(ss, f.open(t, tr, Params{Format: wire.FormatV1, Expires: at}))
	}
	if n := len(f.clock.timers); n != 1 {
		t.Fatalf("%d timers for 100 sessions expiring in one second", n)
	}
	ss[0].Close(wire.CloseNormal, "")
	if n := f.m.expiries.pending(); n != 99 {
		t.Fatalf("%d sessions wait for expiry after one closed, want 99", n)
	}
	ss[2].mu.Lock()
	ss[2].armExpiryLocked(at.Add(time.Hour)) // a refresh
	ss[2].mu.Unlock()
	f.clock.Advance(time.Hour)
	for i, tr := range trs {
		want := wire.CloseTokenExpired
		switch i {
		case 0:
			want = wire.CloseNormal
		case 2:
			want = 0
		}
		if c := tr.closeCode(); c != want {
			t.Fatalf("session %d: close %d, want %d", i, c, want)
		}
	}
	if n := f.m.expiries.pending(); n != 1 {
		t.Fatalf("%d sessions wait for expiry, want the refreshed one", n)
	}
	f.clock.Advance(time.Hour)
	if c := trs[2].closeCode(); c != wire.CloseTokenExpired {
		t.Fatalf("refreshed session: close %d after its new expiry", c)
	}
}

// A new session's position is the stream's last offset when it connects:
// of two messages published right after, the later one arriving first
// cannot make it skip the earlier one; what was stored before the
// connection is not sent.
func TestNewSessionStartsAtTheStreamsEnd(t *testing.T) {
	f := newFixture(t, Config{})
	f.appendN(t, "u", 10, 10) // before the connection
	tr := &testTransport{}
	s := f.open(t, tr, Params{Format: wire.FormatV1})
	msgs := f.appendN(t, "u", 2, 10) // 11 and 12, published after it
	s.Send(wire.Encode(wire.FormatV1, msgs[1]), 12)
	s.Send(wire.Encode(wire.FormatV1, msgs[0]), 11)
	wantOffsets(t, tr, []uint64{11, 12})
}

// The User-Agent intern table shares equal strings and stops growing at
// its bound, so clients sending random agents cannot grow it forever.
func TestInternBounded(t *testing.T) {
	f := newFixture(t, Config{})
	a := f.m.agents.intern(string([]byte("Mozilla/5.0")))
	b := f.m.agents.intern(string([]byte("Mozilla/5.0")))
	if unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("equal agents are not shared")
	}
	for i := range maxInterned + 100 {
		f.m.agents.intern(fmt.Sprint("agent-", i))
	}
	if n := f.m.agents.n.Load(); n != maxInterned {
		t.Fatalf("intern table holds %d, bound %d", n, maxInterned)
	}
}

// A session keeps its source IP without its RemoteAddr: connections from
// one address share one copy of it, and none pins the "host:port" string
// it was cut from (16–32 bytes a connection, issue 14).
func TestSourceIPShared(t *testing.T) {
	f := newFixture(t, Config{})
	addrs := []string{string([]byte("192.0.2.7:40001")), string([]byte("192.0.2.7:40002"))}
	var ips []string
	for _, a := range addrs {
		s := f.m.New(&testTransport{}, Params{Format: wire.FormatRaw, User: "u", RemoteAddr: a})
		ips = append(ips, s.Info().SourceIP)
	}
	if ips[0] != "192.0.2.7" || ips[1] != "192.0.2.7" {
		t.Fatalf("source IPs %q", ips)
	}
	if unsafe.StringData(ips[0]) != unsafe.StringData(ips[1]) {
		t.Fatal("one address, two copies")
	}
	for _, a := range addrs {
		if unsafe.StringData(ips[0]) == unsafe.StringData(a) {
			t.Fatal("the source IP points into RemoteAddr, keeping it alive")
		}
	}
}

// The rate limiter and the observer's bookkeeping cost an idle session
// nothing: Session stays in the 192-byte size class (on 64-bit systems).
func TestSessionSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit systems")
	}
	if got := unsafe.Sizeof(Session{}); got > 192 {
		t.Fatalf("Session is %d bytes, was 192: idle connections are what a node holds most of", got)
	}
}

// slowBounds holds one Bounds call (the blockOn-th) until released, as a
// Store over the network on a busy machine may: whatever is committed
// meanwhile is in its answer.
type slowBounds struct {
	History
	blockOn int
	early   bool // answer from before the hold, not after it
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (h *slowBounds) Bounds(ctx context.Context, user herald.UserID) (uint64, uint64, error) {
	if int(h.calls.Add(1)) != h.blockOn {
		return h.History.Bounds(ctx, user)
	}
	var first, last uint64
	var err error
	if h.early {
		first, last, err = h.History.Bounds(ctx, user)
	}
	close(h.entered)
	<-h.release
	if !h.early {
		first, last, err = h.History.Bounds(ctx, user)
	}
	return first, last, err
}

// A new session receives every message committed after its position was
// first read, whichever moment of its start the commit falls in: while
// that read is in flight and before the session is in the hub (the hub
// cannot hand it the message: it is fetched), or while the second read is
// in flight and the hub hands it over (delivered once, although both the
// read and the hub have it). A client the API lists must get the next
// notify.
func TestLiveStartKeepsWhatTheHubHanded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		blockOn int
		early   bool
		viaHub  bool
	}{
		// The first read answers 2, then 3 is committed before the
		// session is in the hub: only the Store can give it.
		{"committed before the session joins the hub", 1, true, false},
		// The second read answers 3 and the hub hands 3 over too: once.
		{"handed by the hub while the Store is read", 2, false, true},
		// The second read answers 2, the hub hands 3 over: parked, sent.
		{"handed by the hub after the Store was read", 2, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			f.appendN(t, "u", 2, 10) // history before the connection: not sent
			hist := &slowBounds{History: f.store, blockOn: tc.blockOn, early: tc.early, entered: make(chan struct{}), release: make(chan struct{})}
			m := NewManager(Config{Clock: f.clock}, f.hub, hist, f.tokens, slog.New(slog.DiscardHandler))
			tr := &testTransport{}
			s := m.New(tr, Params{ID: "c1", User: "u", Format: wire.FormatV1})
			t.Cleanup(s.Gone)
			started := make(chan struct{})
			go func() { m.Start(s); close(started) }()
			<-hist.entered
			msgs := f.appendN(t, "u", 1, 10) // offset 3
			if tc.viaHub {
				f.hub.SendUser(msgs[0])
			}
			close(hist.release)
			<-started
			wantOffsets(t, tr, []uint64{3})
			more := f.appendN(t, "u", 1, 10)
			f.hub.SendUser(more[0])
			wantOffsets(t, tr, []uint64{3, 4})
		})
	}
}

// After a broker lost messages (it reconnected), Recheck finds the
// stream ahead of what the session was sent and fetches the rest, in
// order, without waiting for the user's next message; a session that is
// up to date reads the Store and sends nothing.
func TestRecheckFetchesWhatTheBrokerLost(t *testing.T) {
	f := newFixture(t, Config{})
	tr := &testTransport{}
	s := f.open(t, tr, Params{Format: wire.FormatV1})
	msgs := f.appendN(t, "u", 1, 10)
	f.hub.SendUser(msgs[0])
	wantOffsets(t, tr, []uint64{1})
	s.Recheck()              // up to date: nothing
	f.appendN(t, "u", 2, 10) // committed, never handed over: the broker lost them
	s.Recheck()
	wantOffsets(t, tr, []uint64{1, 2, 3})
	s.Recheck()
	more := f.appendN(t, "u", 1, 10)
	f.hub.SendUser(more[0]) // live again after the catch-up
	wantOffsets(t, tr, []uint64{1, 2, 3, 4})
}

// What a new session's start fetches from the Store (committed while it
// joined the hub) counts as sent live for a first-message resume: a
// resume from right before it is seamless, one from further back gets a
// reset — never a silent skip of the offsets in between.
func TestResumeAfterStartCatchup(t *testing.T) {
	for _, tc := range []struct {
		since     uint64
		wantReset bool
	}{{2, false}, {1, true}} {
		t.Run(fmt.Sprintf("since %d", tc.since), func(t *testing.T) {
			f := newFixture(t, Config{})
			f.appendN(t, "u", 2, 10)
			hist := &slowBounds{History: f.store, blockOn: 1, early: true, entered: make(chan struct{}), release: make(chan struct{})}
			m := NewManager(Config{Clock: f.clock}, f.hub, hist, f.tokens, slog.New(slog.DiscardHandler))
			tr := &testTransport{}
			s := m.New(tr, Params{ID: "c1", User: "u", Format: wire.FormatV1})
			t.Cleanup(s.Gone)
			started := make(chan struct{})
			go func() { m.Start(s); close(started) }()
			<-hist.entered
			f.appendN(t, "u", 1, 10) // offset 3, committed before the session is in the hub
			close(hist.release)
			<-started
			wantOffsets(t, tr, []uint64{3})
			if err := s.HandleMessage(fmt.Appendf(nil, `{"type":"resume","since":%d}`, tc.since)); err != nil {
				t.Fatal(err)
			}
			if err := s.HandleMessage([]byte(`{"type":"ping"}`)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the pong", func() bool {
				ms := tr.messages()
				return len(ms) > 0 && ms[len(ms)-1]["type"] == "pong"
			})
			reset := false
			for _, m := range tr.messages() {
				reset = reset || m["type"] == "reset"
			}
			if reset != tc.wantReset {
				t.Fatalf("resume since %d after a start that sent 3: reset %v, want %v (%v)", tc.since, reset, tc.wantReset, tr.messages())
			}
		})
	}
}
