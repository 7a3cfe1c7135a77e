package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// envelope is a herald.v1 server message.
type envelope struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
	Unread *int            `json:"unread"`
	Unseen *int            `json:"unseen"`
	IDs    []string        `json:"ids"`
	Mark   string          `json:"mark"`
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

// A client disconnects, 50 messages are sent, it reconnects with since and
// epoch: it gets exactly those 50 in order, then live ones.
func TestResumeAfterReconnect(t *testing.T) {
	ioModes(t, func(t *testing.T, mode string) {
		h := startHerald(t, testEnv(t, "HERALD_IO", mode))
		c := h.dialURL(t, "r", "", "herald.v1")
		h.waitConns(t, "r", 1)
		h.publish(t, "r", 0)
		first := readEnv(t, c)
		if first.Offset != 1 || first.Epoch == "" {
			t.Fatalf("first %+v", first)
		}
		c.Close(websocket.StatusNormalClosure, "")
		h.waitConns(t, "r", 0)
		for n := 1; n <= 50; n++ {
			h.publish(t, "r", n)
		}
		c = h.dialURL(t, "r", fmt.Sprintf("&since=%d&epoch=%s", first.Offset, first.Epoch), "herald.v1")
		for n := 1; n <= 50; n++ {
			e := readEnv(t, c)
			if e.Type != "message" || e.Offset != uint64(n+1) || string(e.Data) != fmt.Sprintf(`{"n":%d}`, n) {
				t.Fatalf("replayed #%d: %+v %s", n, e, e.Data)
			}
		}
		h.publish(t, "r", 51)
		if e := readEnv(t, c); e.Offset != 52 {
			t.Fatalf("live after replay: %+v", e)
		}
	})
}

// Messages sent while the client reconnects: after resuming, the offsets it
// has seen are exactly 1..N — no gap, no duplicate — in every round.
func TestResumeDuringConcurrentSends(t *testing.T) {
	ioModes(t, func(t *testing.T, mode string) {
		h := startHerald(t, testEnv(t, "HERALD_IO", mode))
		var sent atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				status, body := h.api(t, "POST", "/v1/users/cc/messages", fmt.Sprint(n))
				if status != 200 {
					t.Errorf("publish: %d %s", status, body)
					return
				}
				sent.Add(1)
			}
		})
		var last uint64
		epoch := ""
		for round := range 5 {
			q := ""
			if round > 0 {
				q = fmt.Sprintf("&since=%d&epoch=%s", last, epoch)
			}
			c := h.dialURL(t, "cc", q, "herald.v1")
			for range 20 + round*10 {
				e := readEnv(t, c)
				if e.Type != "message" {
					t.Fatalf("round %d: %+v", round, e)
				}
				if round > 0 && e.Offset != last+1 {
					t.Fatalf("round %d: offset %d after %d", round, e.Offset, last)
				}
				last, epoch = e.Offset, e.Epoch
			}
			c.CloseNow()
		}
		close(stop)
		wg.Wait()
		// Finally catch up completely: everything sent is replayed.
		c := h.dialURL(t, "cc", fmt.Sprintf("&since=%d&epoch=%s", last, epoch), "herald.v1")
		for last < uint64(sent.Load()) {
			e := readEnv(t, c)
			if e.Offset != last+1 {
				t.Fatalf("catch-up: offset %d after %d", e.Offset, last)
			}
			last = e.Offset
		}
	})
}

func TestResumeFirstFrame(t *testing.T) {
	h := startHerald(t, testEnv(t))
	for n := range 5 {
		h.publish(t, "ff", n)
	}
	epoch := h.epoch(t, "ff")
	c := h.dialURL(t, "ff", "", "herald.v1")
	msg := fmt.Sprintf(`{"type":"resume","since":2,"epoch":%q}`, epoch)
	if err := c.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	for want := uint64(3); want <= 5; want++ {
		if e := readEnv(t, c); e.Offset != want {
			t.Fatalf("got %+v, want offset %d", e, want)
		}
	}
	// A second resume is refused.
	c.Write(context.Background(), websocket.MessageText, []byte(msg))
	if e := readEnv(t, c); e.Type != "error" {
		t.Fatalf("second resume: %+v", e)
	}
}

func TestResumeReset(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_RETENTION_COUNT", "5", "HERALD_RETENTION_INTERVAL", "50ms"))
	for n := range 20 {
		h.publish(t, "rs", n)
	}
	epoch := h.epoch(t, "rs")
	head := uint64(20)
	for _, tc := range []struct{ name, query string }{
		{"other epoch", "&since=3&epoch=0000000000000000"},
		{"future offset", fmt.Sprintf("&since=99&epoch=%s", epoch)},
		{"no epoch, trimmed", "&since=1"},
		{"trimmed by retention", fmt.Sprintf("&since=2&epoch=%s", epoch)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deadline := time.Now().Add(5 * time.Second)
			for { // wait for retention to trim offsets 1..15
				_, body := h.api(t, "GET", "/v1/users/rs/messages?limit=1", "")
				if strings.Contains(body, `"offset":16`) || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			c := h.dialURL(t, "rs", tc.query, "herald.v1")
			e := readEnv(t, c)
			if e.Type != "reset" || e.Epoch != epoch || e.Offset != head {
				t.Fatalf("got %+v, want reset to offset %d", e, head)
			}
			h.publish(t, "rs", 100)
			head++
			if e := readEnv(t, c); e.Type != "message" || e.Offset != head {
				t.Fatalf("after reset: %+v", e)
			}
		})
	}
	status, body := h.request(t, "GET", "/ws?since=abc&token="+h.token(t, "rs"), "", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
	if status != 400 || !strings.Contains(body, "invalid_request") {
		t.Fatalf("bad since: %d %s", status, body)
	}
}

func TestHistoryAPI(t *testing.T) {
	h := startHerald(t, testEnv(t))
	for n := range 7 {
		h.publish(t, "hist", n)
	}
	var got []uint64
	since := uint64(0)
	for {
		status, body := h.api(t, "GET", fmt.Sprintf("/v1/users/hist/messages?since=%d&limit=3", since), "")
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		var r struct {
			Messages []envelope `json:"messages"`
			Next     uint64     `json:"next"`
		}
		json.Unmarshal([]byte(body), &r)
		if len(r.Messages) == 0 {
			break
		}
		for _, m := range r.Messages {
			if m.Type != "message" || string(m.Data) != fmt.Sprintf(`{"n":%d}`, m.Offset-1) {
				t.Fatalf("message %+v", m)
			}
			got = append(got, m.Offset)
		}
		since = r.Next
	}
	if fmt.Sprint(got) != "[1 2 3 4 5 6 7]" {
		t.Fatalf("pages gave %v", got)
	}
	if status, _ := h.api(t, "GET", "/v1/users/hist/messages?since=x", ""); status != 400 {
		t.Fatalf("bad since: %d", status)
	}
}

// POST …/messages?wait=ack returns once a client acknowledged the message.
func TestWaitForAck(t *testing.T) {
	h := startHerald(t, testEnv(t))
	acker := h.dialURL(t, "ack", "", "herald.v1")
	h.dialURL(t, "ack", "", "herald.v1") // a tab that never acks
	h.waitConns(t, "ack", 2)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			_, b, err := acker.Read(ctx)
			if err != nil {
				return
			}
			var e envelope
			json.Unmarshal(b, &e)
			if e.Type == "message" {
				acker.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"ack","offset":%d}`, e.Offset))
			}
		}
	}()
	status, body := h.api(t, "POST", "/v1/users/ack/messages?wait=ack&timeout=5s", `{"x":1}`)
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
}

// Two tabs of one user: marking read in one pushes new counts to the
// other; counts survive a restart.
func TestInboxCountsAcrossTabsAndRestart(t *testing.T) {
	env := testEnv(t)
	h := startHerald(t, env)
	tab1 := h.dialURL(t, "in", "", "herald.v1")
	tab2 := h.dialURL(t, "in", "", "herald.v1")
	h.waitConns(t, "in", 2)
	var ids []string
	for n := range 3 {
		h.publish(t, "in", n)
		ids = append(ids, readEnv(t, tab1).ID)
		readEnv(t, tab2)
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
	for _, tab := range []*websocket.Conn{tab1, tab2} {
		e := readEnv(t, tab)
		if e.Type != "counts" || *e.Unread != 2 || *e.Unseen != 2 || e.Mark != "read" || len(e.IDs) != 1 || e.IDs[0] != ids[0] {
			t.Fatalf("push: %+v", e)
		}
	}
	// Marking again changes nothing and pushes nothing.
	if status, body = h.request(t, "POST", "/v1/inbox/read", fmt.Sprintf(`{"ids":[%q]}`, ids[0]), tok); !strings.Contains(body, `"changed":[]`) {
		t.Fatalf("read again: %s", body)
	}
	h.request(t, "POST", "/v1/inbox/seen", `{"all":true}`, tok)
	if e := readEnv(t, tab2); e.Type != "counts" || *e.Unseen != 0 || *e.Unread != 2 || len(e.IDs) != 2 {
		t.Fatalf("seen all push: %+v", e)
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
	req, _ := http.NewRequest("OPTIONS", h.URL+"/v1/inbox/read", nil)
	req.Header.Set("Origin", "https://dashboard.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://dashboard.example" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

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
// herald.v1 messages (without app pings) and the final error.
func pump(c *websocket.Conn) (<-chan envelope, <-chan error) {
	msgs, errc := make(chan envelope, 100), make(chan error, 1)
	go func() {
		for {
			_, b, err := c.Read(context.Background())
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
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
		return envelope{}
	}
}

// A token expires: the connection is closed with 4001, unless the client
// refreshed it with a newer token of the same user.
func TestTokenExpiryAndRefresh(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_PING_INTERVAL", "100ms"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() *websocket.Conn {
		tok, err := h.issuer.Mint("exp", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := websocket.Dial(ctx, h.WSURL+"/ws?token="+tok, &websocket.DialOptions{Subprotocols: []string{"herald.v1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	expiring, refreshed := dial(), dial()
	_, expErr := pump(expiring)
	msgs, refErr := pump(refreshed)
	// Refresh with someone else's token is refused; with our own, accepted.
	other, _ := h.issuer.Mint("someone-else", time.Hour)
	refreshed.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"refresh","token":%q}`, other))
	if e := next(t, msgs); e.Type != "error" {
		t.Fatalf("foreign refresh: %+v", e)
	}
	refreshed.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"refresh","token":%q}`, h.token(t, "exp")))
	if e := next(t, msgs); e.Type != "refreshed" {
		t.Fatalf("refresh: %+v", e)
	}
	if code := websocket.CloseStatus(<-expErr); code != 4001 {
		t.Fatalf("expired connection closed with %d, want 4001", code)
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
	}
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
