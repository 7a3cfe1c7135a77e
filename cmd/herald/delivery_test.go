package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The original front end: new WebSocket(url + "?token=" + token), and the
// original API server's payload {"user_id": 42, "json": "..."}. The raw
// client must receive exactly the bytes of the json string, on every tab.
// Over SSE the envelope's data holds exactly those bytes.
func TestNotifyRawBytesExactly(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		tabs := []*conn{tr.dial(t, h, "42"), tr.dial(t, h, "42"), tr.dial(t, h, "42")}
		other := tr.dial(t, h, "43")
		h.waitConns(t, "42", 3)

		payload := `{"message":"hi","n":1, "spaces" : [1, 2]}`
		body, _ := json.Marshal(map[string]any{"user_id": 42, "json": payload})
		status, reply := h.api(t, "POST", "/v1/notify", string(body))
		if status != 200 {
			t.Fatalf("notify: %d %s", status, reply)
		}
		r := mustJSON(t, reply)
		if r["user_id"] != "42" || r["connections"] != float64(3) {
			t.Fatalf("reply %s", reply)
		}
		for i, c := range tabs {
			m := c.next(t)
			if m.Type != "message" || m.Binary || string(m.Payload) != payload {
				t.Fatalf("tab %d got %+v %q, want text %q", i, m.envelope, m.Payload, payload)
			}
			if c.envelopes() && (m.ID != r["id"] || m.Offset != 1) {
				t.Fatalf("tab %d got %+v, want id %v offset 1", i, m.envelope, r["id"])
			}
		}
		// The other user got nothing: the next thing it sees is its own message.
		h.api(t, "POST", "/v1/users/43/messages", `{"for":"43"}`)
		if got := other.payload(t); got != `{"for":"43"}` {
			t.Fatalf("user 43 got %q", got)
		}
	})
}

// Subprotocols are WebSocket's: an SSE client's token comes in the query
// or an Authorization header (TestSSEStream).
func TestTokenLocations(t *testing.T) {
	h := startHerald(t, testEnv(t))
	tok := h.token(t, "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name    string
		url     string
		opts    *websocket.DialOptions
		wantSub string
	}{
		{"query", "/ws?token=" + tok, nil, ""},
		{"bearer header", "/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}}, ""},
		{"token subprotocol alone is echoed", "/ws", &websocket.DialOptions{Subprotocols: []string{"herald.token." + tok}}, "herald.token." + tok},
		{"herald.v1 preferred over token subprotocol", "/ws", &websocket.DialOptions{Subprotocols: []string{"herald.token." + tok, "herald.v1"}}, "herald.v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := websocket.Dial(ctx, h.WSURL+tc.url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if c.Subprotocol() != tc.wantSub {
				t.Fatalf("subprotocol %q, want %q", c.Subprotocol(), tc.wantSub)
			}
		})
	}
}

func TestEnvelopeV1(t *testing.T) {
	h := startHerald(t, testEnv(t))
	c := h.dial(t, "7", "herald.v1")
	h.waitConns(t, "7", 1)
	status, reply := h.api(t, "POST", "/v1/users/7/messages", `{"kind":"order","id":9}`)
	if status != 200 {
		t.Fatalf("%d %s", status, reply)
	}
	_, got := read(t, c)
	env := mustJSON(t, string(got))
	if env["type"] != "message" || env["id"] != mustJSON(t, reply)["id"] || env["offset"] != float64(1) {
		t.Fatalf("envelope %s (reply %s)", got, reply)
	}
	if d, _ := json.Marshal(env["data"]); string(d) != `{"id":9,"kind":"order"}` {
		t.Fatalf("data %s", d)
	}
	// A /v1/notify string that is not JSON is embedded as a JSON string.
	h.api(t, "POST", "/v1/notify", `{"user_id":"7","json":"plain text"}`)
	_, got = read(t, c)
	if env := mustJSON(t, string(got)); env["data"] != "plain text" || env["offset"] != float64(2) {
		t.Fatalf("envelope %s", got)
	}
	// App-level ping is answered.
	writeV1(t, c, []byte(`{"type":"ping"}`))
	if _, got := read(t, c); string(got) != `{"type":"pong"}` {
		t.Fatalf("got %s", got)
	}
}

// Many users at once, and everyone: raw WebSocket clients get the bytes,
// herald.v1 and SSE clients envelopes without offset for a broadcast.
func TestNotifyUsersAndBroadcast(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		a, b, c := tr.dial(t, h, "a"), tr.dial(t, h, "b"), tr.dial(t, h, "c", asV1())
		h.waitConns(t, "a", 1)
		h.waitConns(t, "b", 1)
		h.waitConns(t, "c", 1)

		status, reply := h.api(t, "POST", "/v1/messages", `{"users":["a","b","b","nobody"],"data":{"x":1}}`)
		if status != 200 {
			t.Fatalf("%d %s", status, reply)
		}
		var multi struct {
			Users []struct {
				User        string `json:"user_id"`
				Connections int    `json:"connections"`
			} `json:"users"`
			Connections int `json:"connections"`
		}
		json.Unmarshal([]byte(reply), &multi)
		if multi.Connections != 2 || len(multi.Users) != 3 || multi.Users[2].User != "nobody" || multi.Users[2].Connections != 0 {
			t.Fatalf("reply %s", reply)
		}
		for _, cl := range []*conn{a, b} {
			if got := cl.payload(t); got != `{"x":1}` {
				t.Fatalf("got %s", got)
			}
		}
		status, reply = h.api(t, "POST", "/v1/broadcast", `{"data":"all"}`)
		if status != 200 || mustJSON(t, reply)["connections"] != float64(3) {
			t.Fatalf("%d %s", status, reply)
		}
		for _, cl := range []*conn{a, b, c} {
			m := cl.next(t)
			if m.Type != "message" || string(m.Payload) != `"all"` {
				t.Fatalf("got %+v %s", m.envelope, m.Payload)
			}
			// A broadcast is not stored: no offset, no epoch (and over SSE no id).
			if cl.envelopes() && (m.Offset != 0 || m.Epoch != "" || m.ID == "") {
				t.Fatalf("broadcast envelope %+v", m.envelope)
			}
		}
	})
}

func TestListAndDisconnectUser(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		c1, c2 := tr.dial(t, h, "u"), tr.dial(t, h, "u")
		conns := h.waitConns(t, "u", 2)
		for _, c := range conns {
			for _, k := range []string{"id", "connected_at", "last_active_at", "source_ip", "user_agent"} {
				if _, ok := c[k]; !ok {
					t.Fatalf("connection lacks %q: %v", k, c)
				}
			}
			if c["source_ip"] != "127.0.0.1" {
				t.Fatalf("source_ip %v", c["source_ip"])
			}
			if c["protocol"] != c1.protocol() {
				t.Fatalf("protocol %v, want %s", c["protocol"], c1.protocol())
			}
		}
		if tr.sse() { // the listed ids are the ones the streams were told
			if ids := []any{conns[0]["id"], conns[1]["id"]}; !(ids[0] == c1.id && ids[1] == c2.id || ids[0] == c2.id && ids[1] == c1.id) {
				t.Fatalf("listed %v, streams have %s and %s", ids, c1.id, c2.id)
			}
		}
		status, reply := h.api(t, "DELETE", "/v1/users/u/connections", "")
		if status != 200 || mustJSON(t, reply)["closed"] != float64(2) {
			t.Fatalf("%d %s", status, reply)
		}
		for _, c := range []*conn{c1, c2} {
			c.expectClose(t, 4003)
		}
		h.waitConns(t, "u", 0)
		// Unknown user: an empty list, not an error (a user simply has no
		// connection open right now).
		status, reply = h.api(t, "GET", "/v1/users/nobody/connections", "")
		if status != 200 || reply != "{\"connections\":[]}\n" {
			t.Fatalf("%d %q", status, reply)
		}
	})
}

func TestMaxConnsPerUserClosesOldest(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t, "HERALD_MAX_CONNS_PER_USER", "2"))
		oldest := tr.dial(t, h, "u")
		h.waitConns(t, "u", 1)
		tr.dial(t, h, "u")
		h.waitConns(t, "u", 2)
		tr.dial(t, h, "u")
		oldest.expectClose(t, 4029)
		h.waitConns(t, "u", 2)
	})
}

// A bad token is refused before anything else, the same way on /ws and
// /sse.
func TestWebSocketAuthErrors(t *testing.T) {
	// No clock-skew leeway: the expired token is a second old.
	h := startHerald(t, testEnv(t, "HERALD_TOKEN_LEEWAY", "0s"))
	expired, _ := h.issuer.Mint("u", time.Nanosecond)
	time.Sleep(1100 * time.Millisecond) // JWT exp has one-second resolution
	algNone := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwfQ."
	for _, tr := range []transport{wsEpoll, sseTransport} {
		for _, tc := range []struct {
			name, token, message string
		}{
			{"missing", "", "missing token"},
			{"garbage", "abc", "malformed token"},
			{"expired", expired, "token expired"},
			{"alg none", algNone, `token algorithm "none" not allowed`},
		} {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				c, status, body, err := tr.tryDial(t, h, "u", withToken(tc.token))
				if c != nil {
					t.Fatal("connected")
				}
				if status != 401 {
					t.Fatalf("status %d (%v)", status, err)
				}
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if err := json.Unmarshal([]byte(body), &e); err != nil {
					t.Fatal(err)
				}
				if e.Error.Code != "unauthorized" || e.Error.Message != tc.message {
					t.Fatalf("error %+v", e.Error)
				}
			})
		}
	}
	// A plain GET without an upgrade is a clear 400.
	status, body := h.request(t, "GET", "/ws?token="+h.token(t, "u"), "", nil)
	if status != 400 || mustJSON(t, body)["error"].(map[string]any)["code"] != "invalid_request" {
		t.Fatalf("%d %s", status, body)
	}
}

// Many connections of many users, messages in flight to all: every client
// gets its own messages, in order.
func TestConcurrentDeliveryOrder(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		const users, perUser = 20, 30
		conns := make([]*conn, users)
		for i := range conns {
			conns[i] = tr.dial(t, h, fmt.Sprint("u", i))
			h.waitConns(t, fmt.Sprint("u", i), 1)
		}
		errs := make(chan error, users)
		for i := range users {
			go func() {
				for n := range perUser {
					status, body := h.api(t, "POST", fmt.Sprintf("/v1/users/u%d/messages", i), fmt.Sprint(n))
					if status != 200 {
						errs <- fmt.Errorf("%d %s", status, body)
						return
					}
				}
				errs <- nil
			}()
		}
		for range users {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range conns {
			for n := range perUser {
				if got := c.payload(t); got != fmt.Sprint(n) {
					t.Fatalf("user %d message %d: got %s", i, n, got)
				}
			}
		}
	})
}

// Protocol pings are WebSocket frames; an SSE client cannot send one (its
// heartbeat is the server's comment line, see TestHeartbeatDropsDeadKeepsLive).
func TestClientPingAnswered(t *testing.T) {
	ioModes(t, func(t *testing.T, mode string) {
		h := startHerald(t, testEnv(t, "HERALD_IO", mode))
		c := h.dial(t, "p")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// coder/websocket only sees the pong while reading.
		go func() { _, _, _ = c.Read(ctx) }()
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
	})
}

// Client frames exist only on WebSocket: an SSE client sends nothing on its
// stream, so there is no client message to limit.
func TestClientFrameLimits(t *testing.T) {
	ioModes(t, func(t *testing.T, mode string) {
		h := startHerald(t, testEnv(t, "HERALD_IO", mode))
		for _, tc := range []struct {
			name string
			typ  websocket.MessageType
			msg  []byte
			code websocket.StatusCode
		}{
			{"too big", websocket.MessageText, []byte(strings.Repeat("x", 33<<10)), 1009},
			{"invalid utf-8", websocket.MessageText, []byte{0xff, 0xfe}, 1007},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := h.dial(t, "f")
				if err := c.Write(context.Background(), tc.typ, tc.msg); err != nil {
					t.Fatal(err)
				}
				err := readErr(t, c)
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != tc.code {
					t.Fatalf("err %v, want close %d", err, tc.code)
				}
			})
		}
	})
}
