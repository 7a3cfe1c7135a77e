package session

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string
	waits  int
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recorder) Opened(transport string) { r.add("opened %s", transport) }
func (r *recorder) Closed(transport string, code int, reason string) {
	r.add("closed %s %d %s", transport, code, reason)
}
func (r *recorder) Resumed(outcome string, messages int) { r.add("resumed %s %d", outcome, messages) }
func (r *recorder) QueueWait(time.Duration) {
	r.mu.Lock()
	r.waits++
	r.mu.Unlock()
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// The observer hears of each session once when it opens and once when it
// ends, with the transport and the code the end was decided with: the
// first close wins, a lost connection is 1006, a transport's own 4008 is
// reported when it says so, and a client over its rate is 4030.
func TestObserverOpenedAndClosed(t *testing.T) {
	cases := []struct {
		name   string
		format wire.Format
		end    func(f *fixture, s *Session)
		want   string
	}{
		{"closed by the server", wire.FormatV1, func(_ *fixture, s *Session) {
			s.Close(wire.CloseDisconnected, "disconnected by the server")
			s.Close(wire.CloseNormal, "again") // not reported twice
			s.Gone()
		}, "closed websocket 4003 disconnected by the server"},
		{"client's close frame", wire.FormatRaw, func(_ *fixture, s *Session) {
			s.Close(3000, "")
			s.Gone()
		}, "closed websocket 3000 "},
		{"connection lost", wire.FormatRaw, func(_ *fixture, s *Session) { s.Gone() }, "closed websocket 1006 connection lost"},
		{"SSE stream lost", wire.FormatSSE, func(_ *fixture, s *Session) { s.Gone() }, "closed sse 1006 connection lost"},
		{"transport overflowed", wire.FormatSSE, func(_ *fixture, s *Session) {
			s.Overflowed()
			s.Gone()
		}, "closed sse 4008 send queue full"},
		{"over the message rate", wire.FormatV1, func(f *fixture, s *Session) {
			for {
				if err := s.HandleMessage([]byte(`{"type":"ping"}`)); err != nil {
					pe := err.(*wire.ProtocolError)
					s.Close(pe.Code, pe.Reason) // what the gateway does with it
					break
				}
			}
			s.Gone()
		}, "closed websocket 4030 message rate exceeded"},
		{"token expired", wire.FormatV1, func(f *fixture, s *Session) {
			f.clock.Advance(2 * time.Hour)
			s.Gone()
		}, "closed websocket 4001 token expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			f := newFixture(t, Config{Observer: rec})
			s := f.open(t, &testTransport{}, Params{Format: tc.format, Expires: f.clock.Now().Add(time.Hour)})
			tc.end(f, s)
			transport := TransportWebSocket
			if tc.format == wire.FormatSSE {
				transport = TransportSSE
			}
			if got, want := rec.seen(), []string{"opened " + transport, tc.want}; !slices.Equal(got, want) {
				t.Fatalf("observed %q, want %q", got, want)
			}
		})
	}
}

// A session made but never started (its handshake failed) was never
// reported open, so its end is not reported either.
func TestObserverIgnoresUnstartedSessions(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, Config{Observer: rec})
	s := f.m.New(&testTransport{}, Params{User: "u", Format: wire.FormatV1})
	s.Gone()
	if got := rec.seen(); len(got) != 0 {
		t.Fatalf("observed %q for a session never started", got)
	}
}

// Each resume request is reported once with how it went: replayed with
// the count, none when the client had everything, reset when its point
// cannot be honoured — by ?since= and by the first-message resume alike.
func TestObserverResumed(t *testing.T) {
	cases := []struct {
		name    string
		stored  int
		resume  func(t *testing.T, f *fixture, tr *testTransport) *Session
		want    string
		offsets []uint64
	}{
		{"since, replayed", 5, func(t *testing.T, f *fixture, tr *testTransport) *Session {
			return f.open(t, tr, Params{Format: wire.FormatV1, Resume: &Resume{Since: 2}})
		}, "resumed replayed 3", seq(3, 5)},
		{"since, nothing missing", 5, func(t *testing.T, f *fixture, tr *testTransport) *Session {
			return f.open(t, tr, Params{Format: wire.FormatV1, Resume: &Resume{Since: 5}})
		}, "resumed none 0", nil},
		{"since, another epoch", 5, func(t *testing.T, f *fixture, tr *testTransport) *Session {
			return f.open(t, tr, Params{Format: wire.FormatV1, Resume: &Resume{Since: 2, Epoch: "another"}})
		}, "resumed reset 0", nil},
		{"since from the future", 2, func(t *testing.T, f *fixture, tr *testTransport) *Session {
			return f.open(t, tr, Params{Format: wire.FormatSSE, Resume: &Resume{Since: 9}})
		}, "resumed reset 0", nil},
		{"resume message, replayed", 4, func(t *testing.T, f *fixture, tr *testTransport) *Session {
			s := f.open(t, tr, Params{Format: wire.FormatV1})
			b, _ := json.Marshal(map[string]any{"type": "resume", "since": 1})
			if err := s.HandleMessage(b); err != nil {
				t.Fatal(err)
			}
			return s
		}, "resumed replayed 3", seq(2, 4)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			f := newFixture(t, Config{Observer: rec})
			f.appendN(t, "u", tc.stored, 10)
			tr := &testTransport{}
			tc.resume(t, f, tr)
			eventually(t, tc.want, func() bool { return slices.Contains(rec.seen(), tc.want) })
			if tc.offsets != nil {
				wantOffsets(t, tr, tc.offsets)
			}
			n := 0
			for _, e := range rec.seen() {
				if len(e) > 7 && e[:7] == "resumed" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d resume reports: %q", n, rec.seen())
			}
		})
	}
}

// A first-message resume after live messages that continue the client's
// point is seamless (none); after live ones that do not, a reset.
func TestObserverResumedAfterLive(t *testing.T) {
	for _, tc := range []struct {
		since uint64
		want  string
	}{{2, "resumed none 0"}, {1, "resumed reset 0"}} {
		t.Run(tc.want, func(t *testing.T) {
			rec := &recorder{}
			f := newFixture(t, Config{Observer: rec})
			f.appendN(t, "u", 2, 10)
			s := f.open(t, &testTransport{}, Params{Format: wire.FormatV1})
			msgs := f.appendN(t, "u", 1, 10)
			s.Send(wire.Encode(wire.FormatV1, msgs[0]), msgs[0].Offset)
			b, _ := json.Marshal(map[string]any{"type": "resume", "since": tc.since})
			if err := s.HandleMessage(b); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(rec.seen(), tc.want) {
				t.Fatalf("observed %q, want %q", rec.seen(), tc.want)
			}
		})
	}
}

// QueueStats sums and maximises what the sessions' transports hold.
func TestQueueStats(t *testing.T) {
	f := newFixture(t, Config{})
	for i, n := range []int{0, 3, 1} {
		tr := &testTransport{stalled: n > 0}
		s := f.open(t, tr, Params{ID: herald.ConnID(fmt.Sprint("c", i)), Format: wire.FormatRaw})
		for range n {
			s.Send([]byte("12345"), 0)
		}
	}
	want := QueueStats{Sessions: 3, Frames: 4, Bytes: 20, MaxFrames: 3, MaxBytes: 15}
	if got := f.m.QueueStats(); got != want {
		t.Fatalf("QueueStats() = %+v, want %+v", got, want)
	}
}
