package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// The fakes below stand in for the handlers' dependencies. They hold no
// logic worth testing: each answers from its fields and records what it
// was asked, so a test can arrange an answer and then check both the reply
// and what reached the delivery path. (What the real parts do is tested in
// their packages and, together, in cmd/herald.)

// fakeStreams is a Streams. Publish numbers messages like the real one
// (ids m1, m2, …; offsets 1, 2, … per user) so replies are predictable.
type fakeStreams struct {
	err error // returned by every method that can fail; set to test error replies

	calls     []string          // the methods called, in order
	published []*herald.Message // every message of every Publish, in order
	batches   int               // Publish calls
	conns     map[herald.UserID]int
	failed    map[herald.UserID][]hub.Failure
	offsets   map[herald.UserID]uint64

	broadcast []byte
	bcConns   int // Broadcast's count

	disconnected herald.UserID
	closed       int // DisconnectUser's count

	// WaitAck's arguments (and its context's deadline) and answer.
	wait struct {
		user         herald.UserID
		offset       uint64
		deadline     time.Time
		hasDeadline  bool
		conns, acked int
	}

	// History's arguments and answer.
	historyUser  herald.UserID
	historySince uint64
	historyLimit int
	history      []herald.Message

	// Inbox's, Counts' and Mark's arguments and answers.
	inboxQuery herald.InboxQuery
	inbox      []herald.InboxItem
	countsUser herald.UserID
	counts     herald.InboxCounts
	mark       struct {
		user herald.UserID
		mark herald.Mark
		ids  []string
		all  bool
	}
	changed []string

	epoch string
}

func newFakeStreams() *fakeStreams {
	return &fakeStreams{
		conns:   map[herald.UserID]int{},
		failed:  map[herald.UserID][]hub.Failure{},
		offsets: map[herald.UserID]uint64{},
		epoch:   "epoch-1",
	}
}

func (f *fakeStreams) Publish(ctx context.Context, msgs []*herald.Message) ([]hub.Result, error) {
	f.calls = append(f.calls, "Publish")
	if f.err != nil {
		return nil, f.err
	}
	f.batches++
	res := make([]hub.Result, len(msgs))
	for i, m := range msgs {
		f.published = append(f.published, m)
		f.offsets[m.User]++
		m.ID, m.Offset = fmt.Sprintf("m%d", len(f.published)), f.offsets[m.User]
		res[i] = hub.Result{User: m.User, Connections: f.conns[m.User], Failed: f.failed[m.User]}
	}
	return res, nil
}

func (f *fakeStreams) Broadcast(ctx context.Context, data []byte) (*herald.Message, int) {
	f.calls = append(f.calls, "Broadcast")
	f.broadcast = data
	return &herald.Message{ID: "b1", Data: data}, f.bcConns
}

func (f *fakeStreams) DisconnectUser(ctx context.Context, user herald.UserID) int {
	f.calls = append(f.calls, "DisconnectUser")
	f.disconnected = user
	return f.closed
}

func (f *fakeStreams) WaitAck(ctx context.Context, user herald.UserID, offset uint64) (conns, acked int) {
	f.calls = append(f.calls, "WaitAck")
	f.wait.user, f.wait.offset = user, offset
	f.wait.deadline, f.wait.hasDeadline = ctx.Deadline()
	return f.wait.conns, f.wait.acked
}

func (f *fakeStreams) History(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	f.calls = append(f.calls, "History")
	f.historyUser, f.historySince, f.historyLimit = user, since, limit
	return f.history, f.err
}

func (f *fakeStreams) Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error) {
	f.calls = append(f.calls, "Inbox")
	f.inboxQuery = q
	return f.inbox, f.err
}

func (f *fakeStreams) Counts(ctx context.Context, user herald.UserID) (herald.InboxCounts, error) {
	f.calls = append(f.calls, "Counts")
	f.countsUser = user
	return f.counts, f.err
}

func (f *fakeStreams) Mark(ctx context.Context, user herald.UserID, mark herald.Mark, ids []string, all bool) ([]string, herald.InboxCounts, error) {
	f.calls = append(f.calls, "Mark")
	f.mark.user, f.mark.mark, f.mark.ids, f.mark.all = user, mark, ids, all
	if f.err != nil {
		return nil, herald.InboxCounts{}, f.err
	}
	return f.changed, f.counts, nil
}

func (f *fakeStreams) Epoch() string { return f.epoch }

// fakeConn is an open connection as the hub holds it, of a transport that
// takes acks (as sessions do).
type fakeConn struct {
	id     herald.ConnID
	user   herald.UserID
	acked  uint64
	ackErr error // Ack's answer: a session refuses an offset it never sent
}

func (c *fakeConn) ID() herald.ConnID        { return c.id }
func (c *fakeConn) User() herald.UserID      { return c.user }
func (c *fakeConn) Format() wire.Format      { return wire.FormatV1 }
func (c *fakeConn) Send([]byte, uint64) bool { return true }
func (c *fakeConn) Acked() uint64            { return c.acked }
func (c *fakeConn) Close(uint16, string)     {}
func (c *fakeConn) Info() herald.ConnInfo {
	return herald.ConnInfo{ID: c.id, User: c.user, Protocol: herald.SubprotocolV1, ConnectedAt: testTime()}
}

func (c *fakeConn) Ack(offset uint64) error {
	if c.ackErr != nil {
		return c.ackErr
	}
	c.acked = max(c.acked, offset)
	return nil
}

// ackless is a connection whose transport takes no acks: embedding the
// interface hides fakeConn's Ack.
type ackless struct{ hub.Conn }

// fakeRegistry is a Registry over a list of connections, oldest first.
type fakeRegistry struct{ conns []hub.Conn }

func (r *fakeRegistry) Get(id herald.ConnID) hub.Conn {
	for _, c := range r.conns {
		if c.ID() == id {
			return c
		}
	}
	return nil
}

func (r *fakeRegistry) UserConns(user herald.UserID) []hub.Conn {
	var out []hub.Conn
	for _, c := range r.conns {
		if c.User() == user {
			out = append(out, c)
		}
	}
	return out
}

// fakeTransport is a WebSocket and an EventStream: its tokens are the
// users' names plus "-token".
type fakeTransport struct {
	err           error // Accept's and Serve's answer
	authenticated int   // Authenticate calls
	served        []token.Claims
	mu            sync.Mutex // for real HTTP tests: see tokenChecks
}

func (t *fakeTransport) Authenticate(r *http.Request) (token.Claims, error) {
	t.mu.Lock()
	t.authenticated++
	t.mu.Unlock()
	tok := r.URL.Query().Get("token")
	if tok == "" {
		tok = token.Bearer(r)
	}
	if user, ok := strings.CutSuffix(tok, "-token"); ok && user != "" {
		return token.Claims{User: herald.UserID(user)}, nil
	}
	return token.Claims{}, herald.Errorf(herald.EUnauthorized, "invalid token")
}

func (t *fakeTransport) Accept(w http.ResponseWriter, r *http.Request, claims token.Claims) error {
	return t.serve(w, claims, http.StatusSwitchingProtocols)
}

func (t *fakeTransport) Serve(w http.ResponseWriter, r *http.Request, claims token.Claims) error {
	return t.serve(w, claims, http.StatusOK)
}

// tokenChecks is authenticated for tests whose requests the server
// handles on its own goroutines.
func (t *fakeTransport) tokenChecks() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.authenticated
}

func (t *fakeTransport) serve(w http.ResponseWriter, claims token.Claims, status int) error {
	t.mu.Lock()
	t.served = append(t.served, claims)
	t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	w.WriteHeader(status)
	return nil
}

// fakeAWS serves the management API routes by naming them, so a test can
// tell that a request reached the right one.
type fakeAWS struct{}

func (fakeAWS) PostToConnection() http.Handler { return awsRoute("post") }
func (fakeAWS) GetConnection() http.Handler    { return awsRoute("get") }
func (fakeAWS) DeleteConnection() http.Handler { return awsRoute("delete") }
func awsRoute(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.PathValue("id"))
	})
}

// The fixture's credentials: the server API key (the legacy single key,
// all scopes), a named key per scope, and client tokens as fakeTransport
// reads them; and the browser origin it allows.
const (
	apiKey     = "server-key"
	aliceToken = "alice-token"
	origin     = "https://app.example"
)

// fixtureKeys are the fixture's named keys: one per scope, secret
// "<scope>-secret-0123456789".
func fixtureKeys() []APIKey {
	var keys []APIKey
	for _, s := range Scopes() {
		keys = append(keys, APIKey{Name: string(s) + "-key", Secret: secretOf(s), Scopes: []Scope{s}})
	}
	return keys
}

func secretOf(s Scope) string { return string(s) + "-secret-0123456789" }

// fakeObserver counts what an Observer is told. Real HTTP tests call it
// from the server's goroutines, hence the lock.
type fakeObserver struct {
	mu      sync.Mutex
	limited map[string]int
	failed  map[string]int
}

func (o *fakeObserver) RateLimited(kind string) { o.count(&o.limited, kind) }
func (o *fakeObserver) AuthFailed(kind string)  { o.count(&o.failed, kind) }

func (o *fakeObserver) count(m *map[string]int, kind string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[kind]++
}

// counts returns copies of the counts: rate limited, auth failed.
func (o *fakeObserver) counts() (limited, failed map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.limited), maps.Clone(o.failed)
}

// fakeClock is the limiters' clock: it stands still until a test steps it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testTime is the time of every message and connection the fakes hold.
func testTime() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

// fixture is a Server over fresh fakes. Alice (aliceToken) has one open
// connection, "c1", which takes acks; nobody else has any.
type fixture struct {
	streams  *fakeStreams
	hub      *fakeRegistry
	ws, sse  *fakeTransport
	observer *fakeObserver
	clock    *fakeClock
	health   *fakeHealth
	srv      *Server
	handler  http.Handler
	logs     syncBuffer
}

// fixtureConfig is the fixture's configuration: the legacy key, a named
// key per scope, origin allowed, no rate limits.
func fixtureConfig() Config {
	return Config{APIKey: apiKey, APIKeys: fixtureKeys(), AllowedOrigins: []string{origin}}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, fixtureConfig())
}

// newFixtureWith is newFixture with another configuration; its Observer
// is the fixture's.
func newFixtureWith(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{
		streams:  newFakeStreams(),
		hub:      &fakeRegistry{conns: []hub.Conn{&fakeConn{id: "c1", user: "alice"}}},
		ws:       &fakeTransport{},
		sse:      &fakeTransport{},
		observer: &fakeObserver{},
		clock:    &fakeClock{now: testTime()},
		health:   &fakeHealth{},
	}
	cfg.Observer = f.observer
	log := slog.New(slog.NewTextHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.srv = New(cfg, log, Deps{Hub: f.hub, Gateway: f.ws, SSE: f.sse, Stream: f.streams, AWS: fakeAWS{}, Health: f.health})
	f.srv.now = f.clock.Now
	f.handler = f.srv.Handler()
	return f
}

// syncBuffer is a log sink that real HTTP tests write from the server's
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve runs r through every route; handlers run on the caller's
// goroutine, so the fakes need no locks.
func (f *fixture) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

// newRequest builds a request with headers given as name, value pairs.
func newRequest(method, target, body string, header ...string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

// apiRequest is a server API request: API key, JSON body.
func apiRequest(method, target, body string) *http.Request {
	return newRequest(method, target, body, "Authorization", "Bearer "+apiKey, "Content-Type", "application/json")
}

// userRequest is a browser request of user alice: her client token, JSON
// body.
func userRequest(method, target, body string) *http.Request {
	return newRequest(method, target, body, "Authorization", "Bearer "+aliceToken, "Content-Type", "application/json")
}

// routeTest is one request and the reply it must get. An error reply
// (code set) is checked by assertError, so every error case also checks
// Herald's one error shape.
type routeTest struct {
	name   string
	req    *http.Request
	setup  func(*fixture) // arranges the fakes; optional
	status int
	code   herald.ErrorCode // the error code; "" for a success
	msg    string           // a part of the error message, e.g. the field it names
	body   string           // the whole success reply, as JSON; optional
	check  func(*testing.T, *fixture, *httptest.ResponseRecorder)
}

func runRouteTests(t *testing.T, tests []routeTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			w := f.serve(tt.req)
			if tt.code != "" {
				assertError(t, w, tt.status, tt.code, tt.msg)
				// docs/api.md: "Rejected requests deliver nothing." A
				// failure the fake was told to report comes after the
				// call, so it does not count.
				if f.streams.err == nil && len(f.streams.published) > 0 {
					t.Errorf("a rejected request published %d messages", len(f.streams.published))
				}
			} else if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if tt.body != "" {
				assertJSON(t, w, tt.body)
			}
			if tt.check != nil {
				tt.check(t, f, w)
			}
		})
	}
}

// assertError checks that w is an error reply of status and code in the
// one error shape, {"error":{"code","message"}} and nothing else, whose
// message contains msg, with the headers its status requires.
func assertError(t *testing.T, w *httptest.ResponseRecorder, status int, code herald.ErrorCode, msg string) {
	t.Helper()
	if w.Code != status {
		t.Errorf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error *struct {
			Code    *herald.ErrorCode `json:"code"`
			Message *string           `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil || body.Error.Code == nil || body.Error.Message == nil || dec.More() {
		t.Fatalf("body is not {\"error\":{\"code\",\"message\"}} (%v): %s", err, w.Body)
	}
	if *body.Error.Code != code {
		t.Errorf("code %q, want %q; message %q", *body.Error.Code, code, *body.Error.Message)
	}
	if *body.Error.Message == "" || !strings.Contains(*body.Error.Message, msg) {
		t.Errorf("message %q, want one containing %q", *body.Error.Message, msg)
	}
	switch status {
	case http.StatusUnauthorized:
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="herald"` {
			t.Errorf("WWW-Authenticate %q on a 401", got)
		}
	case http.StatusMethodNotAllowed:
		if w.Header().Get("Allow") == "" {
			t.Error("no Allow header on a 405")
		}
	}
}

// assertJSON checks that w is a JSON reply equal to want, whatever the
// order of object members.
func assertJSON(t *testing.T, w *httptest.ResponseRecorder, want string) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var got, exp any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("reply is not JSON (%v): %s", err, w.Body)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("reply\n\t%s\nwant\n\t%s", bytes.TrimSpace(w.Body.Bytes()), want)
	}
}

// fakeHealth stands in for the store watcher: the fault of a failing
// store cannot be caused through the API's other fakes.
type fakeHealth struct{ err error }

func (h *fakeHealth) Ready() error { return h.err }
