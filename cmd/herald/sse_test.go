package main

import (
	"fmt"
	"strings"
	"testing"
)

// What only GET /sse has. The behaviour it shares with /ws (delivery,
// resume, limits, close codes, drain, acks) is tested over both
// transports, with transports(…), next to the WebSocket tests.

// The stream: its reply headers, retry and connected event first (dial
// checks those), the connection as the server API lists it, and how
// events carry messages — a stored one with the id <epoch>:<offset>, a
// payload with line breaks over several data lines, a payload that is not
// JSON as a JSON string.
func TestSSEStream(t *testing.T) {
	h := startHerald(t, testEnv(t))
	c := sseTransport.dial(t, h, "s")
	conns := h.waitConns(t, "s", 1)
	if conns[0]["id"] != c.id || conns[0]["protocol"] != "sse" || conns[0]["source_ip"] != "127.0.0.1" {
		t.Fatalf("listed %v, the stream was told %s", conns[0], c.id)
	}
	if epoch := h.epoch(t, "s"); c.epoch != epoch || epoch == "" {
		t.Fatalf("connected with epoch %q, the store's is %q", c.epoch, epoch)
	}
	// The token in an Authorization header instead of the URL.
	b := sseTransport.dial(t, h, "s", withToken(""), withHeader("Authorization", "Bearer "+h.token(t, "s")))
	h.waitConns(t, "s", 2)

	for i, tc := range []struct{ payload, want string }{
		{"{\n  \"lines\": [1,\n    2]\n}", "{\n  \"lines\": [1,\n    2]\n}"},
		// CR and CRLF end a line too: they come back as LF, the JSON
		// unchanged.
		{"[1,\r\n2,\r3]", "[1,\n2,\n3]"},
		{`"one line"`, `"one line"`},
	} {
		status, reply := h.api(t, "POST", "/v1/users/s/messages", tc.payload)
		if status != 200 {
			t.Fatalf("%d %s", status, reply)
		}
		r := mustJSON(t, reply)
		for _, cl := range []*conn{c, b} {
			m := cl.next(t)
			if m.Type != "message" || string(m.Payload) != tc.want || m.ID != r["id"] || m.Offset != uint64(i+1) {
				t.Fatalf("payload %q: got %+v %q", tc.payload, m.envelope, m.Payload)
			}
			if want := fmt.Sprintf("%s:%d", c.epoch, i+1); m.EventID != want {
				t.Fatalf("event id %q, want %q", m.EventID, want)
			}
		}
	}
	// A /v1/notify string that is not JSON is embedded as a JSON string.
	h.api(t, "POST", "/v1/notify", `{"user_id":"s","json":"plain text"}`)
	if got := c.payload(t); got != `"plain text"` {
		t.Fatalf("got %s", got)
	}
}

// Requests that cannot start a stream: a malformed resume point is 400
// invalid_request, like /ws's since. /sse answers CORS like the browser
// inbox API.
func TestSSERequestErrorsAndCORS(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_CORS_ORIGINS", "https://app.example"))
	tok := h.token(t, "e")
	for _, tc := range []struct {
		name, query string
		headers     map[string]string
	}{
		{"since not a number", "&since=abc", nil},
		{"since negative", "&since=-1", nil},
		{"Last-Event-ID without a colon", "", map[string]string{"Last-Event-ID": "17"}},
		{"Last-Event-ID offset not a number", "", map[string]string{"Last-Event-ID": "3f9c0d1e2a4b5c6d:x"}},
		{"Last-Event-ID empty offset", "", map[string]string{"Last-Event-ID": "3f9c0d1e2a4b5c6d:"}},
		// The header wins over the URL, even a malformed one over a good since.
		{"Last-Event-ID malformed, since fine", "&since=1", map[string]string{"Last-Event-ID": "nonsense"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := h.request(t, "GET", "/sse?token="+tok+tc.query, "", tc.headers)
			if status != 400 || mustJSON(t, body)["error"].(map[string]any)["code"] != "invalid_request" {
				t.Fatalf("%d %s", status, body)
			}
		})
	}
	h.waitConns(t, "e", 0)

	// Preflight, and the stream itself, for an allowed origin.
	status, body := h.request(t, "OPTIONS", "/sse", "", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
	if status != 204 {
		t.Fatalf("preflight: %d %s", status, body)
	}
	resp, cancel, err := sseGet(h, nil, "?token="+tok, map[string]string{"Origin": "https://app.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("stream for an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	checkStreamHeaders(t, resp)
	// Another origin gets no CORS headers (the browser then refuses it).
	resp2, cancel2, err := sseGet(h, nil, "?token="+tok, map[string]string{"Origin": "https://evil.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	defer resp2.Body.Close()
	if v := resp2.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Fatalf("stream for another origin: Access-Control-Allow-Origin %q", v)
	}
}

// POST /v1/ack: an SSE client acknowledges with its user's token and its
// connection id; a connection that is not the user's is not found.
func TestSSEAck(t *testing.T) {
	h := startHerald(t, testEnv(t))
	c := sseTransport.dial(t, h, "k")
	other := sseTransport.dial(t, h, "k2")
	h.waitConns(t, "k", 1)
	h.publish(t, "k", 1)
	h.publish(t, "k", 2)
	for want := uint64(1); want <= 2; want++ {
		if e := c.next(t); e.Offset != want {
			t.Fatalf("got %+v", e.envelope)
		}
	}

	// Ack 1 with the token in the URL, then 2 with the header; a lower one
	// after that changes nothing (acks are cumulative).
	ack := func(query, token string, body string) (int, map[string]any) {
		t.Helper()
		headers := map[string]string{"Content-Type": "application/json"}
		if token != "" {
			headers["Authorization"] = "Bearer " + token
		}
		status, reply := h.request(t, "POST", "/v1/ack"+query, body, headers)
		return status, mustJSON(t, reply)
	}
	body := func(id string, offset int) string {
		b := fmt.Sprintf(`{"connection_id":%q,"offset":%d}`, id, offset)
		schema.AckRequest(t, []byte(b))
		return b
	}
	tok := h.token(t, "k")
	if status, r := ack("?token="+tok, "", body(c.id, 1)); status != 200 || r["connection_id"] != c.id || r["acked"] != float64(1) {
		t.Fatalf("ack 1: %d %v", status, r)
	}
	if status, r := ack("", tok, body(c.id, 2)); status != 200 || r["acked"] != float64(2) {
		t.Fatalf("ack 2: %d %v", status, r)
	}
	if status, r := ack("", tok, body(c.id, 1)); status != 200 || r["acked"] != float64(2) {
		t.Fatalf("ack 1 again: %d %v", status, r)
	}

	notFound := func(name, id string) {
		t.Helper()
		if status, r := ack("", tok, body(id, 1)); status != 404 || r["error"].(map[string]any)["code"] != "not_found" {
			t.Fatalf("%s: %d %v", name, status, r)
		}
	}
	notFound("unknown connection", "AAAAAAAAAAAAAAAA")
	notFound("another user's connection", other.id)

	// Bodies that are not acks: the schema refuses them, and so does Herald.
	for _, bad := range []string{`{"offset":1}`, fmt.Sprintf(`{"connection_id":%q}`, c.id), fmt.Sprintf(`{"connection_id":%q,"offset":-1}`, c.id)} {
		if schema.Check("AckRequest", []byte(bad)) == nil {
			t.Fatalf("the schema takes %s", bad)
		}
		if status, r := ack("", tok, bad); status != 400 {
			t.Fatalf("%s: %d %v", bad, status, r)
		}
	}
	// The API key is not a user's token.
	if status, _ := ack("", testAPIKey, body(c.id, 1)); status != 401 {
		t.Fatalf("API key: %d", status)
	}
	if status, _ := ack("", "", body(c.id, 1)); status != 401 {
		t.Fatalf("no token: %d", status)
	}
	// Preflight, as for the other browser routes.
	h.wantPreflight(t, "/v1/ack")
}

// HERALD_MAX_CONNS counts every transport together.
func TestMaxConnsAcrossTransports(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_MAX_CONNS", "2"))
	wsEpoll.dial(t, h, "a")
	sseTransport.dial(t, h, "b")
	h.waitConns(t, "a", 1)
	h.waitConns(t, "b", 1)
	for _, tr := range []transport{wsEpoll, sseTransport} {
		c, status, body, err := tr.tryDial(t, h, "c")
		if c != nil || status != 503 || !strings.Contains(body, `"code":"unavailable"`) {
			t.Fatalf("%s: third connection: %d %s %v", tr.name, status, body, err)
		}
	}
}
