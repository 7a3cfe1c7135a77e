package routes_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/gateway"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/routes"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// waitFor bounds every wait of these tests: long enough for a loaded
// machine, and only ever spent when something is broken.
const waitFor = 30 * time.Second

// integration is a real HTTP endpoint standing for a route's backend: it
// records every event it is POSTed, decoded as aws-lambda-go decodes it,
// and answers with what reply says for that event.
type integration struct {
	url    string
	events chan events.APIGatewayWebsocketProxyRequest
	mu     sync.Mutex
	reply  func(ev events.APIGatewayWebsocketProxyRequest) (status int, contentType, body string)
}

func newIntegration(t *testing.T) *integration {
	t.Helper()
	in := &integration{events: make(chan events.APIGatewayWebsocketProxyRequest, 1000)}
	in.reply = func(events.APIGatewayWebsocketProxyRequest) (int, string, string) { return 200, "", "" }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev events.APIGatewayWebsocketProxyRequest
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Errorf("integration got an event aws-lambda-go cannot decode: %v: %s", err, b)
		}
		in.events <- ev
		in.mu.Lock()
		status, ct, body := in.reply(ev)
		in.mu.Unlock()
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	in.url = srv.URL
	return in
}

func (in *integration) setReply(f func(ev events.APIGatewayWebsocketProxyRequest) (int, string, string)) {
	in.mu.Lock()
	in.reply = f
	in.mu.Unlock()
}

// next returns the next event the integration received whose routeKey is
// key, skipping others.
func (in *integration) next(t *testing.T, key string) events.APIGatewayWebsocketProxyRequest {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case ev := <-in.events:
			if ev.RequestContext.RouteKey == key {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %s", key, waitFor)
		}
	}
}

// harness is a gateway running a route set behind a real loopback HTTP
// server, as cmd/herald wires them.
type harness struct {
	router *routes.Router
	sm     *session.Manager
	hub    *hub.Hub
	iss    *token.Issuer
	addr   string
	clock  *clock
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// serve parses routesTOML (with %s replaced by urls in order), and runs
// it. invoke serves lambda routes; nil when there are none.
func serve(t *testing.T, cfgText string, invoke routes.InvokeFunc) *harness {
	t.Helper()
	cfg, err := routes.Parse([]byte(cfgText), "toml", "test.toml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	rt, err := routes.New(cfg, invoke, log)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	rt.SetClock(clk.now)
	iss, err := token.NewIssuer([]byte("test-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(0)
	store := memory.New()
	sm := session.NewManager(session.Config{Routes: rt}, h, store, iss, log)
	g, err := gateway.New(gateway.Config{Routes: rt}, sm, iss, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go g.Run(ctx)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var claims token.Claims
		var err error
		if rt.HeraldAuth() {
			claims, err = g.Authenticate(r)
		}
		if err == nil {
			err = g.Accept(w, r, claims)
		}
		if err != nil {
			var he *herald.Error
			status := 500
			if errors.As(err, &he) && he.Status != 0 {
				status = he.Status
			} else if herald.ErrorCodeOf(err) == herald.EIntegrationFailed {
				status = http.StatusBadGateway
			} else if herald.ErrorCodeOf(err) == herald.EUnauthorized {
				status = http.StatusUnauthorized
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"code":%q}}`, herald.ErrorCodeOf(err))
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := rt.Wait(context.Background()); err != nil {
			t.Error(err)
		}
		store.Close()
	})
	return &harness{router: rt, sm: sm, hub: h, iss: iss, addr: strings.TrimPrefix(srv.URL, "http://"), clock: clk}
}

func (hs *harness) dial(t *testing.T, query string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+hs.addr+"/ws"+query, nil)
	if err == nil {
		c.SetReadLimit(1 << 20)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func (hs *harness) mustDial(t *testing.T, query string) *websocket.Conn {
	t.Helper()
	c, _, err := hs.dial(t, query)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func write(t *testing.T, c *websocket.Conn, typ websocket.MessageType, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Write(ctx, typ, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

const openRoutes = `
auth = "integration"
stage = "production"
[routes."$connect"]
kind = "http"
url = "%[1]s"
`

func TestRouteSelection(t *testing.T) {
	in := newIntegration(t)
	hs := serve(t, fmt.Sprintf(openRoutes+`
[routes."$default"]
kind = "http"
url = "%[1]s"
response = true
[routes.sendmessage]
kind = "http"
url = "%[1]s"
response = true
[routes.quiet]
kind = "http"
url = "%[1]s"
`, in.url), nil)
	in.setReply(func(ev events.APIGatewayWebsocketProxyRequest) (int, string, string) {
		if ev.RequestContext.EventType != routes.EventMessage {
			return 200, "", ""
		}
		// A proxy response for the custom route, a plain body for $default:
		// both are replies API Gateway understands.
		if ev.RequestContext.RouteKey == "sendmessage" {
			b, _ := json.Marshal(map[string]any{"statusCode": 200, "body": "echo:" + ev.Body})
			return 200, "application/json", string(b)
		}
		return 200, "text/plain", "default:" + ev.Body
	})
	c := hs.mustDial(t, "?token=abc&token=last&x=1")
	conn := in.next(t, routes.KeyConnect)
	rc := conn.RequestContext
	if rc.EventType != "CONNECT" || rc.Stage != "production" || rc.ConnectionID == "" || rc.Identity.SourceIP != "127.0.0.1" {
		t.Fatalf("connect event context: %+v", rc)
	}
	if conn.QueryStringParameters["token"] != "last" || len(conn.MultiValueQueryStringParameters["token"]) != 2 {
		t.Fatalf("connect query: %v %v", conn.QueryStringParameters, conn.MultiValueQueryStringParameters)
	}
	if conn.Headers["Host"] != hs.addr || conn.Headers["Sec-Websocket-Version"] != "13" {
		t.Fatalf("connect headers: %v", conn.Headers)
	}

	cases := []struct{ send, route, reply string }{
		{`{"action":"sendmessage","text":"hi"}`, "sendmessage", `echo:{"action":"sendmessage","text":"hi"}`},
		{`not json`, "$default", "default:not json"},
		{`{"action":"nope"}`, "$default", `default:{"action":"nope"}`},
		{`{"text":"no action"}`, "$default", `default:{"text":"no action"}`},
		{`{"action":"$connect"}`, "$default", `default:{"action":"$connect"}`},
		{`["action"]`, "$default", `default:["action"]`},
	}
	for _, tc := range cases {
		write(t, c, websocket.MessageText, tc.send)
		ev := in.next(t, tc.route)
		if ev.Body != tc.send || ev.IsBase64Encoded || ev.RequestContext.ConnectionID != rc.ConnectionID ||
			ev.RequestContext.EventType != "MESSAGE" || ev.RequestContext.MessageDirection != "IN" || ev.RequestContext.MessageID == nil {
			t.Fatalf("%s: event %+v", tc.send, ev)
		}
		if got := read(t, c); got != tc.reply {
			t.Fatalf("%s: client got %q, want %q", tc.send, got, tc.reply)
		}
	}
	// A route without a response sends nothing back: the next reply the
	// client reads is the following message's.
	write(t, c, websocket.MessageText, `{"action":"quiet"}`)
	in.next(t, "quiet")
	// Binary messages go base64-encoded, to $default (no selection on bytes).
	write(t, c, websocket.MessageBinary, "\x00\x01bin")
	ev := in.next(t, routes.KeyDefault)
	if !ev.IsBase64Encoded || ev.Body != base64.StdEncoding.EncodeToString([]byte("\x00\x01bin")) {
		t.Fatalf("binary event: %+v", ev)
	}
	if got := read(t, c); !strings.HasPrefix(got, "default:") {
		t.Fatalf("client got %q after the quiet route", got)
	}
}

// A message with no route and no $default gets API Gateway's own answer.
func TestForbiddenWithoutDefault(t *testing.T) {
	in := newIntegration(t)
	hs := serve(t, fmt.Sprintf(openRoutes+`
[routes.sendmessage]
kind = "http"
url = "%[1]s"
`, in.url), nil)
	c := hs.mustDial(t, "")
	id := in.next(t, routes.KeyConnect).RequestContext.ConnectionID
	for _, msg := range []string{`{"action":"other"}`, `plain text`} {
		write(t, c, websocket.MessageText, msg)
		var reply struct {
			Message      string `json:"message"`
			ConnectionID string `json:"connectionId"`
			RequestID    string `json:"requestId"`
		}
		got := read(t, c)
		if err := json.Unmarshal([]byte(got), &reply); err != nil || reply.Message != "Forbidden" || reply.ConnectionID != id || reply.RequestID == "" {
			t.Fatalf("%s: got %s", msg, got)
		}
	}
	// The connection stays usable.
	write(t, c, websocket.MessageText, `{"action":"sendmessage"}`)
	in.next(t, "sendmessage")
}

func TestConnectRejected(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // a URL nothing listens on
	cases := []struct {
		name     string
		url      string
		status   int
		ct, body string
		want     int
		code     string
	}{
		{"proxy response 401", "", 200, "application/json", `{"statusCode":401,"body":"bad token"}`, 401, "connect_refused"},
		{"plain 403", "", 403, "text/plain", "no", 403, "connect_refused"},
		{"proxy response 500", "", 200, "application/json", `{"statusCode":500}`, 500, "connect_refused"},
		{"a redirect is no answer", "", 200, "application/json", `{"statusCode":302}`, 502, "connect_refused"},
		{"integration down", closed.URL, 0, "", "", 502, "integration_failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := newIntegration(t)
			url := in.url
			if tc.url != "" {
				url = tc.url
			}
			hs := serve(t, fmt.Sprintf(openRoutes+`
[routes."$disconnect"]
kind = "http"
url = "%[2]s"
`, url, in.url), nil)
			in.setReply(func(events.APIGatewayWebsocketProxyRequest) (int, string, string) { return tc.status, tc.ct, tc.body })
			_, resp, err := hs.dial(t, "?token=x")
			if err == nil || resp == nil {
				t.Fatalf("handshake not refused: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.code) {
				t.Fatalf("refused with %d %s, want %d %s", resp.StatusCode, body, tc.want, tc.code)
			}
			// A refused connection was never admitted: no $disconnect, and
			// the router forgets it.
			if hs.router.Len() != 0 || hs.sm.Open() != 0 {
				t.Fatalf("router knows %d connections, %d slots held", hs.router.Len(), hs.sm.Open())
			}
			if err := hs.router.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			for len(in.events) > 0 {
				if ev := <-in.events; ev.RequestContext.RouteKey == routes.KeyDisconnect {
					t.Fatal("$disconnect ran for a refused connection")
				}
			}
		})
	}
}

// Herald's token check in front of the route set: the user shows in every
// event as the authorizer's principalId.
func TestHeraldAuthPrincipal(t *testing.T) {
	in := newIntegration(t)
	hs := serve(t, fmt.Sprintf(`
[routes."$connect"]
kind = "http"
url = "%[1]s"
[routes."$default"]
kind = "http"
url = "%[1]s"
`, in.url), nil)
	if _, resp, err := hs.dial(t, ""); err == nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v", err)
	}
	tok, _ := hs.iss.Mint("42", time.Hour)
	c := hs.mustDial(t, "?token="+tok)
	ev := in.next(t, routes.KeyConnect)
	if p, _ := ev.RequestContext.Authorizer.(map[string]any); p["principalId"] != "42" {
		t.Fatalf("authorizer: %v", ev.RequestContext.Authorizer)
	}
	write(t, c, websocket.MessageText, "x")
	ev = in.next(t, routes.KeyDefault)
	if p, _ := ev.RequestContext.Authorizer.(map[string]any); p["principalId"] != "42" {
		t.Fatalf("authorizer: %v", ev.RequestContext.Authorizer)
	}
	if n := len(hs.hub.UserConns("42")); n != 1 {
		t.Fatalf("user 42 has %d connections", n)
	}
}

// A failing message integration is answered as API Gateway answers it,
// and the connection lives on.
func TestIntegrationFailure(t *testing.T) {
	in := newIntegration(t)
	var fail atomic.Bool
	fail.Store(true)
	invoke := func(ctx context.Context, fn string, payload []byte) ([]byte, string, error) {
		if fail.Load() {
			return []byte(`{"errorMessage":"boom","errorType":"Runtime.ExitError"}`), "Unhandled", nil
		}
		return []byte(`{"statusCode":200,"body":"ok"}`), "", nil
	}
	hs := serve(t, fmt.Sprintf(openRoutes+`
[routes."$default"]
kind = "lambda"
command = ["./fn"]
response = true
`, in.url), invoke)
	c := hs.mustDial(t, "")
	write(t, c, websocket.MessageText, "one")
	var reply struct{ Message, ConnectionID string }
	if err := json.Unmarshal([]byte(read(t, c)), &reply); err != nil || reply.Message != "Internal server error" || reply.ConnectionID == "" {
		t.Fatalf("reply %+v, %v", reply, err)
	}
	fail.Store(false)
	write(t, c, websocket.MessageText, "two")
	if got := read(t, c); got != "ok" {
		t.Fatalf("after a failure the connection got %q", got)
	}
}

// $disconnect runs exactly once for every connection, whatever closed it.
func TestDisconnectEveryPath(t *testing.T) {
	type env struct {
		hs    *harness
		c     *websocket.Conn
		id    herald.ConnID
		other herald.ConnID // the connection that stays open ("" under the AWS limits)
	}
	cases := []struct {
		name   string
		aws    bool
		close  func(t *testing.T, e env, in *integration)
		code   int
		reason string
	}{
		{"client close frame", false, func(t *testing.T, e env, _ *integration) { e.c.Close(websocket.StatusNormalClosure, "bye") }, 1000, ""},
		{"client going away", false, func(t *testing.T, e env, _ *integration) { e.c.Close(websocket.StatusGoingAway, "tab closed") }, 1001, ""},
		{"connection lost", false, func(t *testing.T, e env, _ *integration) { e.c.CloseNow() }, 1006, "connection lost"},
		{"server API (DELETE /@connections)", false, func(t *testing.T, e env, _ *integration) {
			e.hs.hub.Get(e.id).Close(wire.CloseDisconnected, "disconnected by the server")
		}, int(wire.CloseDisconnected), "disconnected by the server"},
		{"drain", false, func(t *testing.T, e env, _ *integration) {
			e.hs.sm.Drain(context.Background(), wire.CloseGoingAway, "server shutting down", 0)
		}, 1001, "server shutting down"},
		{"heartbeat", false, func(t *testing.T, e env, _ *integration) {
			// The client does not read, so it answers no ping; the other
			// one reads and answers each round's before the next, so only
			// the silent one can be judged dead, however slow the machine.
			other := e.hs.hub.Get(e.other).(*session.Session)
			for range herald.DefaultMaxPingsOut + 1 {
				e.hs.sm.HeartbeatAll()
				deadline := time.Now().Add(waitFor)
				for other.PingsOutstanding() != 0 {
					if time.Now().After(deadline) {
						t.Fatal("the reading connection did not answer its ping")
					}
					time.Sleep(time.Millisecond)
				}
			}
		}, int(wire.ClosePolicyViolation), "heartbeat timeout"},
		{"message rate limit", false, func(t *testing.T, e env, _ *integration) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			for i := 0; i < 1000; i++ {
				if e.c.Write(ctx, websocket.MessageText, []byte("x")) != nil {
					return
				}
			}
		}, int(wire.CloseRateLimited), "message rate exceeded"},
		{"frame over 32 KB (aws_compatible)", true, func(t *testing.T, e env, _ *integration) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			_ = e.c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", routes.AWSMaxFrame+1)))
		}, int(wire.CloseTooBig), "frame too large"},
		{"idle 10 minutes (aws_compatible)", true, func(t *testing.T, e env, _ *integration) {
			e.hs.clock.advance(routes.AWSIdleTimeout)
			e.hs.router.Sweep()
		}, 1001, routes.ReasonIdle},
		{"2 hours (aws_compatible)", true, func(t *testing.T, e env, in *integration) {
			for range 24 { // keep talking, so only the duration limit applies
				e.hs.clock.advance(routes.AWSMaxDuration / 24)
				write(t, e.c, websocket.MessageText, `{"action":"keepalive"}`)
				in.next(t, routes.KeyDefault) // the router has seen it
				e.hs.router.Sweep()
			}
		}, 1001, routes.ReasonDuration},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := newIntegration(t)
			cfg := fmt.Sprintf("aws_compatible = %[2]t\n"+openRoutes+`
[routes."$disconnect"]
kind = "http"
url = "%[1]s"
[routes."$default"]
kind = "http"
url = "%[1]s"
`, in.url, tc.aws)
			// The $disconnect integration fails: it still runs once, and
			// nothing else depends on it.
			in.setReply(func(ev events.APIGatewayWebsocketProxyRequest) (int, string, string) {
				if ev.RequestContext.RouteKey == routes.KeyDisconnect {
					return 500, "", "boom"
				}
				return 200, "", ""
			})
			hs := serve(t, cfg, nil)
			// Another connection stays open, reading (so it answers pings):
			// it proves only the closed one is told. (Under the AWS limits
			// it would go idle too, so there the final count proves it.)
			var other *websocket.Conn
			var otherID string
			if !tc.aws {
				other = hs.mustDial(t, "")
				otherID = in.next(t, routes.KeyConnect).RequestContext.ConnectionID
				other.CloseRead(context.Background())
			}
			c := hs.mustDial(t, "")
			id := herald.ConnID(in.next(t, routes.KeyConnect).RequestContext.ConnectionID)
			tc.close(t, env{hs, c, id, herald.ConnID(otherID)}, in)
			ev := in.next(t, routes.KeyDisconnect)
			rc := ev.RequestContext
			if herald.ConnID(rc.ConnectionID) != id && tc.name != "drain" {
				t.Fatalf("$disconnect for %s, want %s", rc.ConnectionID, id)
			}
			if tc.name != "drain" {
				if int(rc.DisconnectStatusCode) != tc.code || rc.DisconnectReason == nil || *rc.DisconnectReason != tc.reason {
					t.Fatalf("$disconnect code %d reason %v, want %d %q", rc.DisconnectStatusCode, rc.DisconnectReason, tc.code, tc.reason)
				}
				// The other connection is untouched; closing it now gives the
				// second and last $disconnect.
				if other != nil {
					other.Close(websocket.StatusNormalClosure, "")
					if got := in.next(t, routes.KeyDisconnect).RequestContext.ConnectionID; got != otherID {
						t.Fatalf("second $disconnect for %s, want %s", got, otherID)
					}
				}
			} else {
				second := in.next(t, routes.KeyDisconnect).RequestContext
				seen := map[string]bool{rc.ConnectionID: true, second.ConnectionID: true}
				if !seen[string(id)] || !seen[otherID] || rc.DisconnectStatusCode != 1001 || second.DisconnectStatusCode != 1001 {
					t.Fatalf("drain: $disconnect for %s (%d) and %s (%d)", rc.ConnectionID, rc.DisconnectStatusCode, second.ConnectionID, second.DisconnectStatusCode)
				}
			}
			if err := hs.router.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			hs.sm.Drain(context.Background(), wire.CloseGoingAway, "test over", 0)
			if err := hs.router.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			for len(in.events) > 0 {
				if ev := <-in.events; ev.RequestContext.RouteKey == routes.KeyDisconnect {
					t.Fatalf("a second $disconnect for %s", ev.RequestContext.ConnectionID)
				}
			}
			if hs.router.Len() != 0 {
				t.Fatalf("router still knows %d connections", hs.router.Len())
			}
		})
	}
}
