package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// envelope is a herald.v1 server message.
type envelope struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch"`
	TS      string          `json:"ts"`
	Data    json.RawMessage `json:"data"`
	Unread  *int            `json:"unread"`
	Unseen  *int            `json:"unseen"`
	IDs     []string        `json:"ids"`
	Mark    string          `json:"mark"`
	Code    string          `json:"code"`    // error
	Message string          `json:"message"` // error
	Expires time.Time       `json:"expires"` // refreshed
}

// readEnv reads the next herald.v1 message, skipping heartbeats.
func readEnv(t *testing.T, c *websocket.Conn) envelope {
	t.Helper()
	for {
		_, b := read(t, c)
		var e envelope
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("not an envelope: %s", b)
		}
		if e.Type != "ping" {
			return e
		}
	}
}

func (h *server) dialURL(t *testing.T, user, query string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, h.WSURL+"/ws?token="+h.token(t, user)+query, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func (h *server) publish(t *testing.T, user string, n int) (offset uint64, epoch string) {
	t.Helper()
	status, body := h.api(t, "POST", "/v1/users/"+user+"/messages", fmt.Sprintf(`{"n":%d}`, n))
	if status != 200 {
		t.Fatalf("publish: %d %s", status, body)
	}
	var r struct {
		Offset uint64 `json:"offset"`
	}
	json.Unmarshal([]byte(body), &r)
	return r.Offset, ""
}

func (h *server) epoch(t *testing.T, user string) string {
	t.Helper()
	_, body := h.api(t, "GET", "/v1/users/"+user+"/messages?limit=1", "")
	var r struct {
		Epoch string `json:"epoch"`
	}
	json.Unmarshal([]byte(body), &r)
	return r.Epoch
}

// A client disconnects, 50 messages are sent, it reconnects from the last
// message it got — with Last-Event-ID over SSE, as a browser's EventSource
// does, with since and epoch over WebSocket: it gets exactly those 50 in
// order, then live ones. Then once more with ?since=&epoch=, which both
// transports take.
func TestResumeAfterReconnect(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		c := tr.dial(t, h, "r", asV1())
		h.waitConns(t, "r", 1)
		h.publish(t, "r", 0)
		first := c.next(t)
		if first.Offset != 1 || first.Epoch == "" {
			t.Fatalf("first %+v", first.envelope)
		}
		n := 0 // the payload {"n":n} is at offset n+1
		for _, resume := range []func(*conn) dialOpt{
			(*conn).resume,
			func(c *conn) dialOpt { return sinceQuery(c.last.Offset, c.last.Epoch) },
		} {
			c.close()
			h.waitConns(t, "r", 0)
			from := n + 1
			for range 50 {
				n++
				h.publish(t, "r", n)
			}
			c = tr.dial(t, h, "r", asV1(), resume(c))
			for i := from; i <= n; i++ {
				e := c.next(t)
				if e.Type != "message" || e.Offset != uint64(i+1) || string(e.Data) != fmt.Sprintf(`{"n":%d}`, i) {
					t.Fatalf("replayed #%d: %+v %s", i, e.envelope, e.Data)
				}
			}
			n++
			h.publish(t, "r", n)
			if e := c.next(t); e.Offset != uint64(n+1) {
				t.Fatalf("live after replay: %+v", e.envelope)
			}
		}
	})
}

// publishing publishes to user without a pause, {"n":0}, {"n":1}, …,
// until stop is called, and counts what was sent.
func (h *server) publishing(t *testing.T, user string) (sent *atomic.Int64, stop func()) {
	sent = new(atomic.Int64)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-quit:
				return
			default:
			}
			status, body := h.api(t, "POST", "/v1/users/"+user+"/messages", fmt.Sprint(n))
			if status != 200 {
				t.Errorf("publish: %d %s", status, body)
				return
			}
			sent.Add(1)
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return sent, stop
}

// Messages sent while the client reconnects: after resuming, the offsets it
// has seen are exactly 1..N — no gap, no duplicate — in every round. Over
// SSE the rounds resume alternately with Last-Event-ID and ?since=.
func TestResumeDuringConcurrentSends(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		sent, stop := h.publishing(t, "cc")
		var c *conn
		var last uint64
		epoch := ""
		for round := range 5 {
			opts := []dialOpt{asV1()}
			switch {
			case round == 0:
			case round%2 == 1:
				opts = append(opts, c.resume())
			default:
				opts = append(opts, sinceQuery(last, epoch))
			}
			c = tr.dial(t, h, "cc", opts...)
			for range 20 + round*10 {
				e := c.next(t)
				if e.Type != "message" {
					t.Fatalf("round %d: %+v", round, e.envelope)
				}
				if round > 0 && e.Offset != last+1 {
					t.Fatalf("round %d: offset %d after %d", round, e.Offset, last)
				}
				last, epoch = e.Offset, e.Epoch
			}
			c.closeNow()
		}
		stop()
		// Finally catch up completely: everything sent is replayed.
		c = tr.dial(t, h, "cc", asV1(), sinceQuery(last, epoch))
		for last < uint64(sent.Load()) {
			e := c.next(t)
			if e.Offset != last+1 {
				t.Fatalf("catch-up: offset %d after %d", e.Offset, last)
			}
			last = e.Offset
		}
	})
}

// The resume message is herald.v1's; an SSE client sends nothing on its
// stream and resumes with Last-Event-ID or ?since= (TestResumeAfterReconnect).
func TestResumeFirstFrame(t *testing.T) {
	h := startHerald(t, testEnv(t))
	for n := range 5 {
		h.publish(t, "ff", n)
	}
	epoch := h.epoch(t, "ff")
	c := h.dialURL(t, "ff", "", "herald.v1")
	msg := fmt.Appendf(nil, `{"type":"resume","since":2,"epoch":%q}`, epoch)
	writeV1(t, c, msg)
	for want := uint64(3); want <= 5; want++ {
		if e := readEnv(t, c); e.Offset != want {
			t.Fatalf("got %+v, want offset %d", e, want)
		}
	}
	// A second resume is refused.
	writeV1(t, c, msg)
	if e := readEnv(t, c); e.Type != "error" || e.Code != "bad_resume" {
		t.Fatalf("second resume: %+v", e)
	}
}

// The first-message form of resume while live messages flow to the user.
// A live message may reach the connection before its resume message
// reaches Herald; what the client lacks before it can then no longer be
// sent in order, and Herald must say so with a reset rather than skip or
// repeat silently. So in every round the offsets after the resume point
// increase strictly and without a gap, or a reset comes, and they go on
// without a gap from the reset's offset. The messages before a reset can
// only be live ones that overtook the resume: a ping sent right behind the
// resume message bounds them, since its pong follows whatever the resume
// caused. Odd rounds read one live message before resuming, so the
// overtaking case is met for sure.
func TestResumeFirstMessageDuringConcurrentSends(t *testing.T) {
	ioModes(t, func(t *testing.T, mode string) {
		h := startHerald(t, testEnv(t, "HERALD_IO", mode))
		h.publishing(t, "fm")
		var last uint64
		epoch := ""
		resets := 0
		for round := range 24 {
			c := h.dialURL(t, "fm", "", "herald.v1")
			var early []uint64 // messages before the resume was handled: a reset or the pong says when
			if round%2 == 1 {
				e := readEnv(t, c)
				if e.Type != "message" {
					t.Fatalf("round %d: before resuming got %+v", round, e)
				}
				early = append(early, e.Offset)
			}
			writeV1(t, c, fmt.Appendf(nil, `{"type":"resume","since":%d,"epoch":%q}`, last, epoch))
			writeV1(t, c, []byte(`{"type":"ping"}`))
			next, handled, after := last, false, 0
			for !handled || after < 10 {
				e := readEnv(t, c)
				switch e.Type {
				case "message":
					if !handled {
						if n := len(early); n > 0 && e.Offset <= early[n-1] {
							t.Fatalf("round %d (since %d): offset %d after %v", round, last, e.Offset, early)
						}
						early = append(early, e.Offset)
						continue
					}
					if e.Offset != next+1 {
						t.Fatalf("round %d (since %d, early %v): offset %d after %d: a gap or a duplicate", round, last, early, e.Offset, next)
					}
					next = e.Offset
					after++
				case "reset":
					// Whatever came before is excused: the client refetches.
					// But the reset says live messages after its offset
					// follow, so none of them may have come before it.
					seen := next
					if n := len(early); !handled && n > 0 {
						seen = early[n-1]
					}
					if seen > e.Offset {
						t.Fatalf("round %d (resume since %d): offsets up to %d came before {\"type\":\"reset\",\"offset\":%d} (early ones: %v): the reset must name the last offset sent", round, last, seen, e.Offset, early)
					}
					next, epoch, handled = e.Offset, e.Epoch, true
					resets++
				case "pong":
					if !handled {
						// No reset: what came early must be exactly what follows since.
						for _, o := range early {
							if o != next+1 {
								t.Fatalf("round %d (since %d): got offsets %v and no reset", round, last, early)
							}
							next = o
						}
						handled = true
					}
				default:
					t.Fatalf("round %d: %+v", round, e)
				}
				if e.Epoch != "" {
					epoch = e.Epoch
				}
			}
			last = next
			c.CloseNow()
		}
		t.Logf("%d resets in 24 rounds", resets)
	})
}

func TestResumeReset(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t, "HERALD_RETENTION_COUNT", "5", "HERALD_RETENTION_INTERVAL", "50ms"))
		for n := range 20 {
			h.publish(t, "rs", n)
		}
		epoch := h.epoch(t, "rs")
		head := uint64(20)
		cases := []struct {
			name string
			from dialOpt
		}{
			{"other epoch", withQuery("&since=3&epoch=0000000000000000")},
			{"future offset", sinceQuery(99, epoch)},
			{"no epoch, trimmed", withQuery("&since=1")},
			{"trimmed by retention", sinceQuery(2, epoch)},
		}
		if tr.sse() {
			cases = append(cases, []struct {
				name string
				from dialOpt
			}{
				{"Last-Event-ID of another epoch", withHeader("Last-Event-ID", "0000000000000000:3")},
				{"Last-Event-ID trimmed", withHeader("Last-Event-ID", epoch+":2")},
				{"Last-Event-ID wins over since", func(c *dialConfig) {
					withHeader("Last-Event-ID", epoch+":2")(c)
					sinceQuery(head, epoch)(c)
				}},
			}...)
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				deadline := time.Now().Add(testTimeout)
				for { // wait for retention to trim offsets 1..15 (or more: each case adds two)
					_, body := h.api(t, "GET", "/v1/users/rs/messages?limit=1", "")
					var r struct {
						Messages []envelope `json:"messages"`
					}
					json.Unmarshal([]byte(body), &r)
					if len(r.Messages) == 1 && r.Messages[0].Offset >= 16 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("retention did not trim offsets 1..15: %s", body)
					}
					time.Sleep(20 * time.Millisecond)
				}
				c := tr.dial(t, h, "rs", asV1(), tc.from)
				e := c.next(t)
				if e.Type != "reset" || e.Epoch != epoch || e.Offset != head {
					t.Fatalf("got %+v, want reset to offset %d", e.envelope, head)
				}
				h.publish(t, "rs", 100)
				head++
				if e := c.next(t); e.Type != "message" || e.Offset != head {
					t.Fatalf("after reset: %+v", e.envelope)
				}
				// Resuming from there is honoured: no reset, the next offset.
				c.close()
				c = tr.dial(t, h, "rs", asV1(), c.resume())
				h.publish(t, "rs", 101)
				head++
				if e := c.next(t); e.Type != "message" || e.Offset != head {
					t.Fatalf("resumed after the reset: %+v", e.envelope)
				}
			})
		}
		var status int
		var body string
		if tr.sse() {
			status, body = h.request(t, "GET", "/sse?since=abc&token="+h.token(t, "rs"), "", nil)
		} else {
			status, body = h.request(t, "GET", "/ws?since=abc&token="+h.token(t, "rs"), "", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
		}
		if status != 400 || !strings.Contains(body, "invalid_request") {
			t.Fatalf("bad since: %d %s", status, body)
		}
	})
}

// The history API pages through the stream; every message in it matches
// the schema, and a client replaying the stream from 0 is given the very
// same envelopes.
func TestHistoryAPI(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		for n := range 7 {
			h.publish(t, "hist", n)
		}
		var history []envelope
		since := uint64(0)
		for {
			status, body := h.api(t, "GET", fmt.Sprintf("/v1/users/hist/messages?since=%d&limit=3", since), "")
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			var r struct {
				Messages []json.RawMessage `json:"messages"`
				Next     uint64            `json:"next"`
				Epoch    string            `json:"epoch"`
			}
			json.Unmarshal([]byte(body), &r)
			if len(r.Messages) == 0 {
				break
			}
			for _, raw := range r.Messages {
				if err := schema.Check("Message", raw); err != nil {
					t.Errorf("history message %s: %v", raw, err)
				}
				var m envelope
				json.Unmarshal(raw, &m)
				if m.Type != "message" || string(m.Data) != fmt.Sprintf(`{"n":%d}`, m.Offset-1) || m.Epoch != r.Epoch {
					t.Fatalf("message %+v", m)
				}
				history = append(history, m)
			}
			since = r.Next
		}
		var got []uint64
		for _, m := range history {
			got = append(got, m.Offset)
		}
		if fmt.Sprint(got) != "[1 2 3 4 5 6 7]" {
			t.Fatalf("pages gave %v", got)
		}
		if status, _ := h.api(t, "GET", "/v1/users/hist/messages?since=x", ""); status != 400 {
			t.Fatalf("bad since: %d", status)
		}
		c := tr.dial(t, h, "hist", asV1(), withQuery("&since=0"))
		for _, want := range history {
			e := c.next(t)
			if e.Type != want.Type || e.ID != want.ID || e.Offset != want.Offset || e.Epoch != want.Epoch || e.TS != want.TS || string(e.Data) != string(want.Data) {
				t.Fatalf("replayed %+v %s, history has %+v %s", e.envelope, e.Data, want, want.Data)
			}
		}
	})
}

// POST …/messages?wait=ack returns once a client acknowledged the message:
// a herald.v1 ack message, or POST /v1/ack for an SSE stream.
func TestWaitForAck(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		acker := tr.dial(t, h, "ack", asV1())
		tr.dial(t, h, "ack", asV1()) // a tab that never acks
		h.waitConns(t, "ack", 2)
		acked := make(chan error, 1)
		go func() {
			m, err := acker.recv(testTimeout)
			if err == nil && m.Type != "message" {
				err = fmt.Errorf("got %+v", m.envelope)
			}
			if err == nil {
				err = acker.tryAck(m.Offset)
			}
			acked <- err
		}()
		// The timeout bounds the wait; an ack ends it at once.
		status, body := h.api(t, "POST", "/v1/users/ack/messages?wait=ack&timeout=20s", `{"x":1}`)
		if err := <-acked; err != nil {
			t.Fatal(err)
		}
		r := mustJSON(t, body)
		if status != 200 || r["acked"] != float64(1) || r["connections"] != float64(2) {
			t.Fatalf("%d %s", status, body)
		}
		// A user nobody acks for: acked 0 after the timeout.
		status, body = h.api(t, "POST", "/v1/users/nobody/messages?wait=ack&timeout=100ms", `{"x":1}`)
		if r := mustJSON(t, body); status != 200 || r["acked"] != float64(0) {
			t.Fatalf("%d %s", status, body)
		}
		for _, q := range []string{"?wait=receipt", "?wait=ack&timeout=1h", "?wait=ack&timeout=soon"} {
			if status, body := h.api(t, "POST", "/v1/users/ack/messages"+q, `{}`); status != 400 {
				t.Fatalf("%s: %d %s", q, status, body)
			}
		}
	})
}

// An ack for an offset never sent to the connection is refused and not
// counted — a herald.v1 client is answered with error bad_ack, POST
// /v1/ack with 400 — so it cannot confirm that offset once it exists.
func TestAckBeyondSentNotCounted(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		c := tr.dial(t, h, "ab", asV1())
		h.waitConns(t, "ab", 1)
		h.publish(t, "ab", 1)
		if e := c.next(t); e.Type != "message" || e.Offset != 1 {
			t.Fatalf("got %+v", e.envelope)
		}
		// Offset 2 does not exist yet.
		if tr.sse() {
			status, body, err := c.postAck(2)
			if err != nil || status != 400 || mustJSON(t, body)["error"].(map[string]any)["code"] != "invalid_request" {
				t.Fatalf("ack beyond: %d %s %v", status, body, err)
			}
		} else {
			writeV1(t, c.ws, []byte(`{"type":"ack","offset":2}`))
			if e := c.next(t); e.Type != "error" || e.Code != "bad_ack" {
				t.Fatalf("ack beyond: %+v", e.envelope)
			}
		}
		// Now it does, and nobody acknowledged it. The timeout only bounds
		// the wait: had the ack counted, the reply would come at once.
		status, body := h.api(t, "POST", "/v1/users/ab/messages?wait=ack&timeout=300ms", `{"n":2}`)
		if r := mustJSON(t, body); status != 200 || r["offset"] != float64(2) || r["connections"] != float64(1) || r["acked"] != float64(0) {
			t.Fatalf("wait for the refused offset: %d %s", status, body)
		}
		// The connection goes on: it is given offset 2 and may ack it.
		if e := c.next(t); e.Type != "message" || e.Offset != 2 {
			t.Fatalf("got %+v", e.envelope)
		}
		c.ack(t, 2)
		if !tr.sse() { // no error for a good ack: the pong comes next
			writeV1(t, c.ws, []byte(`{"type":"ping"}`))
			if e := c.next(t); e.Type != "pong" {
				t.Fatalf("after a good ack: %+v", e.envelope)
			}
		}
	})
}

// Two tabs of one user: marking read in one pushes new counts to the
// other; counts survive a restart.
func TestInboxCountsAcrossTabsAndRestart(t *testing.T) {
	transports(t, testInboxCountsAcrossTabsAndRestart)
}

func testInboxCountsAcrossTabsAndRestart(t *testing.T, tr transport) {
	env := tr.env(t)
	h := startHerald(t, env)
	tab1 := tr.dial(t, h, "in", asV1())
	tab2 := tr.dial(t, h, "in", asV1())
	h.waitConns(t, "in", 2)
	var ids []string
	for n := range 3 {
		h.publish(t, "in", n)
		ids = append(ids, tab1.next(t).ID)
		tab2.next(t)
	}
	tok := map[string]string{"Authorization": "Bearer " + h.token(t, "in"), "Content-Type": "application/json"}
	status, body := h.request(t, "GET", "/v1/inbox/counts", "", tok)
	if status != 200 || body != "{\"unread\":3,\"unseen\":3}\n" {
		t.Fatalf("counts: %d %s", status, body)
	}
	status, body = h.request(t, "POST", "/v1/inbox/read", fmt.Sprintf(`{"ids":[%q]}`, ids[0]), tok)
	if status != 200 || !strings.Contains(body, ids[0]) {
		t.Fatalf("read: %d %s", status, body)
	}
	for _, tab := range []*conn{tab1, tab2} {
		e := tab.next(t)
		if e.Type != "counts" || *e.Unread != 2 || *e.Unseen != 2 || e.Mark != "read" || len(e.IDs) != 1 || e.IDs[0] != ids[0] {
			t.Fatalf("push: %+v", e.envelope)
		}
	}
	// Marking again changes nothing and pushes nothing.
	if status, body = h.request(t, "POST", "/v1/inbox/read", fmt.Sprintf(`{"ids":[%q]}`, ids[0]), tok); !strings.Contains(body, `"changed":[]`) {
		t.Fatalf("read again: %s", body)
	}
	h.request(t, "POST", "/v1/inbox/seen", `{"all":true}`, tok)
	if e := tab2.next(t); e.Type != "counts" || *e.Unseen != 0 || *e.Unread != 2 || len(e.IDs) != 2 {
		t.Fatalf("seen all push: %+v", e.envelope)
	}
	// List unread, newest first.
	status, body = h.request(t, "GET", "/v1/inbox?status=unread", "", tok)
	var list struct {
		Messages []struct {
			ID   string `json:"id"`
			Seen bool   `json:"seen"`
			Read bool   `json:"read"`
		} `json:"messages"`
	}
	json.Unmarshal([]byte(body), &list)
	if status != 200 || len(list.Messages) != 2 || list.Messages[0].ID != ids[2] || !list.Messages[0].Seen || list.Messages[0].Read {
		t.Fatalf("unread list: %d %s", status, body)
	}
	// Server API equivalents, and bad input.
	if status, body = h.api(t, "GET", "/v1/users/in/inbox/counts", ""); body != "{\"unread\":2,\"unseen\":0}\n" {
		t.Fatalf("server counts: %d %s", status, body)
	}
	for _, tc := range []struct{ path, body string }{
		{"/v1/inbox/read", `{}`},
		{"/v1/inbox/read", `{"ids":["a"],"all":true}`},
		{"/v1/inbox/archive", `{"ids":"a"}`},
	} {
		if status, _ := h.request(t, "POST", tc.path, tc.body, tok); status != 400 {
			t.Fatalf("%s %s: %d", tc.path, tc.body, status)
		}
	}
	if status, _ := h.request(t, "GET", "/v1/inbox?status=bogus", "", tok); status != 400 {
		t.Fatalf("bad status: %d", status)
	}
	if status, _ := h.request(t, "GET", "/v1/inbox/counts", "", map[string]string{"Authorization": "Bearer " + testAPIKey}); status != 401 {
		t.Fatalf("API key is not a user token: %d", status)
	}
	// CORS preflight for the browser API.
	h.wantPreflight(t, "/v1/inbox/read")

	// Restart on the same database: the counts are still there.
	h.stop()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil // for the first server's cleanup
	h2 := startHerald(t, env)
	tok2 := map[string]string{"Authorization": "Bearer " + h2.token(t, "in")}
	if _, body := h2.request(t, "GET", "/v1/inbox/counts", "", tok2); body != "{\"unread\":2,\"unseen\":0}\n" {
		t.Fatalf("after restart: %s", body)
	}
}

// pump reads c in the background — answering pings as it goes, which a
// coder/websocket client only does while reading — and hands over the
// herald.v1 messages (without app pings, each validated on t) and the
// final error.
func pump(t *testing.T, c *websocket.Conn) (<-chan envelope, <-chan error) {
	msgs, errc := make(chan envelope, 100), make(chan error, 1)
	go func() {
		for {
			_, b, err := readWS(context.Background(), t, c)
			if err != nil {
				errc <- err
				return
			}
			var e envelope
			if json.Unmarshal(b, &e) == nil && e.Type != "ping" {
				msgs <- e
			}
		}
	}()
	return msgs, errc
}

func next(t *testing.T, msgs <-chan envelope) envelope {
	t.Helper()
	select {
	case e := <-msgs:
		return e
	case <-time.After(testTimeout):
		t.Fatal("no message")
		return envelope{}
	}
}

// A token expires: the connection is closed with 4001, unless the client
// refreshed it with a newer token of the same user. An SSE client cannot
// send a refresh message, so only the expiry applies to it.
func TestTokenExpiryAndRefresh(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		// Expiry runs on the token's own deadline, not at a heartbeat, so
		// the default ping interval keeps heartbeats out of the way; no
		// clock-skew leeway, so the deadline is the token's exp itself.
		h := startHerald(t, tr.env(t, "HERALD_TOKEN_LEEWAY", "0s"))
		mint := func(ttl time.Duration) string {
			tok, err := h.issuer.Mint("exp", ttl)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		// exp is in whole seconds: 4 s leaves at least 3 for the dial.
		short := func() string { return mint(4 * time.Second) }
		expiring := tr.dial(t, h, "exp", asV1(), withToken(short()))
		// Read it all along (a WebSocket client answers pings only while
		// reading) until it is closed.
		expErr := make(chan error, 1)
		go func() { expErr <- expiring.closed(testTimeout) }()
		if tr.sse() {
			// A connection with a token that lives longer outlives it.
			long := tr.dial(t, h, "exp")
			if err := <-expErr; closeCode(err) != 4001 {
				t.Fatalf("expired stream ended with %v, want close 4001", err)
			}
			h.publish(t, "exp", 1)
			if e := long.next(t); e.Type != "message" {
				t.Fatalf("long-lived stream: %+v", e.envelope)
			}
			return
		}
		// Its first token outlives the short one by far, so the refresh
		// has all the time it needs to arrive; the new expiry is checked
		// in the refreshed reply.
		refreshed := tr.dial(t, h, "exp", asV1(), withToken(mint(30*time.Second)))
		msgs, refErr := pump(t, refreshed.ws)
		// Refresh with someone else's token is refused; with our own, accepted.
		other, _ := h.issuer.Mint("someone-else", time.Hour)
		writeV1(t, refreshed.ws, fmt.Appendf(nil, `{"type":"refresh","token":%q}`, other))
		if e := next(t, msgs); e.Type != "error" || e.Code != "invalid_token" {
			t.Fatalf("foreign refresh: %+v", e)
		}
		longTok := h.token(t, "exp") // an hour
		claims, err := h.issuer.Verify(longTok)
		if err != nil {
			t.Fatal(err)
		}
		writeV1(t, refreshed.ws, fmt.Appendf(nil, `{"type":"refresh","token":%q}`, longTok))
		if e := next(t, msgs); e.Type != "refreshed" || !e.Expires.Equal(claims.Expires) {
			t.Fatalf("refresh: %+v, want expires %v", e, claims.Expires)
		}
		if err := <-expErr; closeCode(err) != 4001 {
			t.Fatalf("expired connection closed with %v, want 4001", err)
		}
		// The refreshed one outlives the first token.
		h.publish(t, "exp", 1)
		select {
		case e := <-msgs:
			if e.Type != "message" {
				t.Fatalf("refreshed connection: %+v", e)
			}
		case err := <-refErr:
			t.Fatalf("refreshed connection closed: %v", err)
		case <-time.After(testTimeout):
			t.Fatal("refreshed connection: no message")
		}
	})
}

// POST /v1/batch: each message appended and delivered as if posted alone;
// a bad one gets its own error without failing the others.
func TestBatch(t *testing.T) {
	h := startHerald(t, testEnv(t))
	a := h.dialURL(t, "ba", "", "herald.v1")
	b := h.dial(t, "bb")
	h.waitConns(t, "ba", 1)
	h.waitConns(t, "bb", 1)
	status, body := h.api(t, "POST", "/v1/batch", `{"messages":[
		{"user":"ba","data":{"n":1}},
		{"user":"bb","data":"two"},
		{"user":"","data":1},
		{"user":"ba","data":{"n":3}},
		{"user":"ba"},
		{"user":7,"data":[7]},
		"not an object"]}`)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var r struct {
		Results []struct {
			User        string `json:"user_id"`
			Offset      uint64 `json:"offset"`
			Connections int    `json:"connections"`
			Error       *struct {
				Code string `json:"code"`
			} `json:"error"`
		} `json:"results"`
		Accepted int `json:"accepted"`
	}
	json.Unmarshal([]byte(body), &r)
	if r.Accepted != 4 || len(r.Results) != 7 {
		t.Fatalf("reply %s", body)
	}
	wantErr := []string{"", "", "invalid_request", "", "invalid_request", "", "invalid_json"}
	for i, res := range r.Results {
		got := ""
		if res.Error != nil {
			got = res.Error.Code
		}
		if got != wantErr[i] {
			t.Fatalf("result %d: %+v, want error %q (%s)", i, res, wantErr[i], body)
		}
	}
	if r.Results[0].Offset != 1 || r.Results[3].Offset != 2 || r.Results[1].Connections != 1 || r.Results[5].User != "7" {
		t.Fatalf("reply %s", body)
	}
	if e := readEnv(t, a); e.Offset != 1 || string(e.Data) != `{"n":1}` {
		t.Fatalf("ba got %+v", e)
	}
	if e := readEnv(t, a); e.Offset != 2 || string(e.Data) != `{"n":3}` {
		t.Fatalf("ba got %+v", e)
	}
	if _, got := read(t, b); string(got) != `"two"` {
		t.Fatalf("bb got %s", got)
	}
	for _, bad := range []string{`{"messages":[]}`, `{"messages":{}}`, `{`} {
		if status, _ := h.api(t, "POST", "/v1/batch", bad); status != 400 {
			t.Fatalf("%s: %d", bad, status)
		}
	}

	// Every message an object with fields of the right types: the one-pass
	// decoding path. Its per-message errors and escaped user ids must come
	// out as the per-message path's do.
	status, body = h.api(t, "POST", "/v1/batch", `{"messages":[
		{"user":"b\u0061","data":{"n":4}},
		{"user":"","data":1},
		{"data":2},
		{"user":"ba"},
		{"user":"ba","data":null}]}`)
	r.Results = nil
	if err := json.Unmarshal([]byte(body), &r); status != 200 || err != nil || r.Accepted != 2 || len(r.Results) != 5 {
		t.Fatalf("%d %s", status, body)
	}
	for i, want := range []string{"", "invalid_request", "invalid_request", "invalid_request", ""} {
		got := ""
		if e := r.Results[i].Error; e != nil {
			got = e.Code
		}
		if got != want {
			t.Fatalf("result %d: error %q, want %q (%s)", i, got, want, body)
		}
	}
	if r.Results[0].User != "ba" || r.Results[0].Offset != 3 || r.Results[4].Offset != 4 {
		t.Fatalf("reply %s", body)
	}
	if e := readEnv(t, a); e.Offset != 3 || string(e.Data) != `{"n":4}` {
		t.Fatalf("ba got %+v", e)
	}
	if e := readEnv(t, a); e.Offset != 4 || string(e.Data) != `null` {
		t.Fatalf("ba got %+v", e)
	}
}
