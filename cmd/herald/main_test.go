package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	heraldpkg "github.com/herald-gw/herald"
	"github.com/herald-gw/herald/schematest"
	"github.com/herald-gw/herald/token"
)

const (
	testSecret = "test-secret-0123456789abcdef0123456789"
	testAPIKey = "test-api-key"
	testAKID   = "AKIDHERALDTEST"
	testSKey   = "herald/test/secret/key"
)

// herald is a Herald server started in-process through run, as main does.
type server struct {
	URL    string // http://127.0.0.1:port
	WSURL  string // ws://127.0.0.1:port
	stdout *syncBuffer
	stderr *syncBuffer // the log
	stop   context.CancelFunc
	done   chan error
	issuer *token.Issuer
}

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

var listenRE = regexp.MustCompile(`listening on (https?://[^ ]+)`)

// testEnv is the environment of a configured (not dev mode) Herald.
func testEnv(t *testing.T, extra ...string) map[string]string {
	env := map[string]string{
		"HERALD_ADDR":                  "127.0.0.1:0",
		"HERALD_DB":                    filepath.Join(t.TempDir(), "herald.db"),
		"HERALD_TOKEN_SECRET":          testSecret,
		"HERALD_API_KEY":               testAPIKey,
		"HERALD_AWS_ACCESS_KEY_ID":     testAKID,
		"HERALD_AWS_SECRET_ACCESS_KEY": testSKey,
		"HERALD_LOG_LEVEL":             "warn",
		// The browser origins the tests' dashboards run on.
		"HERALD_ALLOWED_ORIGINS": "https://dashboard.example,https://app.example",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// startHerald runs Herald with env and flags and waits until it listens.
func startHerald(t *testing.T, env map[string]string, flags ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &server{stdout: &syncBuffer{}, stderr: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
	stderr := h.stderr
	go func() {
		h.done <- run(ctx, append([]string{"herald", "serve"}, flags...), func(k string) string { return env[k] }, h.stdout, stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listenRE.FindStringSubmatch(h.stdout.String()); m != nil {
			h.URL = strings.Replace(m[1], "localhost", "127.0.0.1", 1)
			break
		}
		select {
		case err := <-h.done:
			t.Fatalf("herald exited: %v\nstderr:\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald did not start; stdout:\n%s\nstderr:\n%s", h.stdout.String(), stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.WSURL = "ws" + strings.TrimPrefix(h.URL, "http")
	secret := env["HERALD_TOKEN_SECRET"]
	if secret != "" {
		h.issuer, _ = token.NewIssuer([]byte(secret))
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("herald exited with %v\nstderr:\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("herald did not stop")
		}
	})
	return h
}

func (h *server) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := h.issuer.Mint(heraldpkg.UserID(user), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects a real WebSocket client (coder/websocket, a different
// implementation than the server's) with the token in the query string.
func (h *server) dial(t *testing.T, user string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, h.WSURL+"/ws?token="+h.token(t, user), &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// api calls the server API with the test key.
func (h *server) api(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	return h.request(t, method, path, body, map[string]string{"Authorization": "Bearer " + testAPIKey, "Content-Type": "application/json"})
}

func (h *server) request(t *testing.T, method, path, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wantPreflight checks that a browser route answers a CORS preflight from
// a dashboard's origin.
func (h *server) wantPreflight(t *testing.T, path string) {
	t.Helper()
	req, _ := http.NewRequest("OPTIONS", h.URL+path, nil)
	req.Header.Set("Origin", "https://dashboard.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://dashboard.example" {
		t.Fatalf("preflight %s: %d %v", path, resp.StatusCode, resp.Header)
	}
}

// waitConns waits until user has n connections registered.
func (h *server) waitConns(t *testing.T, user string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		status, body := h.api(t, "GET", "/v1/users/"+user+"/connections", "")
		var out struct {
			Connections []map[string]any `json:"connections"`
		}
		if status == 200 && json.Unmarshal([]byte(body), &out) == nil && len(out.Connections) == n {
			return out.Connections
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %s: want %d connections, last reply %d %s", user, n, status, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testTimeout bounds one read or dial in tests: generous, because CI machines are
// noisy and a passing read returns at once anyway.
const testTimeout = 20 * time.Second

// schema validates every protocol message the tests see against
// docs/protocol.schema.json. TestMain loads it.
var schema *schematest.Validator

// loadSchema compiles the schema of the module, two levels up.
func loadSchema() (*schematest.Validator, error) {
	return schematest.Load(filepath.Join("..", "..", filepath.FromSlash(schematest.SchemaFile)))
}

// readWS reads one message off c. Every text message of a herald.v1
// connection is validated against the schema on tb (raw connections carry
// the application's payloads, which have none).
func readWS(ctx context.Context, tb testing.TB, c *websocket.Conn) (websocket.MessageType, []byte, error) {
	tb.Helper()
	typ, b, err := c.Read(ctx)
	if err == nil && typ == websocket.MessageText && c.Subprotocol() == "herald.v1" {
		schema.ServerMessage(tb, b)
	}
	return typ, b, err
}

func read(t *testing.T, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	typ, b, err := readWS(ctx, t, c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, b
}

// readErr reads until the connection fails and returns the error.
func readErr(t *testing.T, c *websocket.Conn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		if _, _, err := readWS(ctx, t, c); err != nil {
			return err
		}
	}
}

// writeV1Err sends a herald.v1 client message, validated against the
// schema first: the tests speak the protocol as documented.
func writeV1Err(tb testing.TB, c *websocket.Conn, m []byte) error {
	tb.Helper()
	schema.ClientMessage(tb, m)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, m)
}

// writeV1 is writeV1Err failing t.
func writeV1(t *testing.T, c *websocket.Conn, m []byte) {
	t.Helper()
	if err := writeV1Err(t, c, m); err != nil {
		t.Fatalf("write %s: %v", m, err)
	}
}

// ioModes runs f once per connection I/O strategy, so both are tested.
func ioModes(t *testing.T, f func(t *testing.T, mode string)) {
	for _, mode := range []string{"epoll", "goroutine"} {
		t.Run(mode, func(t *testing.T) { f(t, mode) })
	}
}

func mustJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	return m
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"herald", "version"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "herald ") {
		t.Fatalf("version printed %q", out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	err := run(context.Background(), []string{"herald", "frobnicate"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("err = %v", err)
	}
}

func TestTokenCommand(t *testing.T) {
	env := map[string]string{"HERALD_TOKEN_SECRET": testSecret}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"herald", "token", "42", "-ttl", "5m"}, func(k string) string { return env[k] }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	iss, _ := token.NewIssuer([]byte(testSecret))
	c, err := iss.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "42" || time.Until(c.Expires) > 5*time.Minute {
		t.Fatalf("claims %+v", c)
	}
	if err := run(context.Background(), []string{"herald", "token", "42"}, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Fatal("token without a secret succeeded")
	}
}

// herald notify goes through the Go SDK to a running server.
func TestNotifyCommand(t *testing.T) {
	h := startHerald(t, testEnv(t))
	c := h.dial(t, "42")
	h.waitConns(t, "42", 1)
	env := map[string]string{"HERALD_URL": h.URL, "HERALD_API_KEY": testAPIKey}
	var out bytes.Buffer
	err := run(context.Background(), []string{"herald", "notify", "42", `{"from":"cli"}`}, func(k string) string { return env[k] }, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"connections":1`) {
		t.Fatalf("printed %s", out.String())
	}
	if _, got := read(t, c); string(got) != `{"from":"cli"}` {
		t.Fatalf("got %s", got)
	}
	env["HERALD_API_KEY"] = "wrong"
	err = run(context.Background(), []string{"herald", "notify", "42", `{}`}, func(k string) string { return env[k] }, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("wrong key: %v", err)
	}
}

// apiClient fails fast: crash tests must not wait for a dead server.
var apiClient = &http.Client{Timeout: 5 * time.Second}

func newAPIRequest(method, url, body string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func TestAdminListener(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_ADMIN_ADDR", "127.0.0.1:0"))
	h.dial(t, "a")
	h.waitConns(t, "a", 1)
	m := regexp.MustCompile(`Admin \(metrics, pprof, health\) on (http://\S+/)`).FindStringSubmatch(h.stdout.String())
	if m == nil {
		t.Fatalf("no admin address in:\n%s", h.stdout.String())
	}
	resp, err := http.Get(m[1] + "debug/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats struct {
		Connections int `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil || stats.Connections != 1 {
		t.Fatalf("stats: %+v, %v", stats, err)
	}
	if resp, err := http.Get(m[1] + "debug/pprof/heap"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("pprof heap: %v %v", resp, err)
	}
	// The public listener serves neither pprof nor metrics; both serve
	// health.
	for _, p := range []string{"/debug/pprof/", "/metrics"} {
		if status, _ := h.request(t, "GET", p, "", nil); status != 404 {
			t.Fatalf("%s on the public listener: %d", p, status)
		}
	}
	for _, p := range []string{"healthz", "readyz"} {
		if resp, err := http.Get(m[1] + p); err != nil || resp.StatusCode != 200 {
			t.Fatalf("admin %s: %v %v", p, resp, err)
		}
	}
}

// adminURL waits for the banner's admin line and returns its URL.
func (h *server) adminURL(t *testing.T) string {
	t.Helper()
	re := regexp.MustCompile(`Admin \(metrics, pprof, health\) on (http://\S+/)`)
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(h.stdout.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin address in:\n%s", h.stdout.String())
		}
	}
}

// /metrics on the admin listener: the key series, by name, move with what
// happens on the public one.
func TestMetrics(t *testing.T) {
	h := startHerald(t, testEnv(t, "HERALD_ADMIN_ADDR", "127.0.0.1:0"))
	admin := h.adminURL(t)
	c := h.dial(t, "m")
	h.waitConns(t, "m", 1)
	h.publish(t, "m", 1)
	read(t, c)
	h.request(t, "GET", "/ws?token=garbage", "", nil)                                   // a refused token
	h.request(t, "GET", "/v1/users/m/connections", "", nil)                             // no API key
	h.request(t, "GET", "/ws", "", map[string]string{"Origin": "https://evil.example"}) // a foreign origin
	c.Close(websocket.StatusNormalClosure, "")
	h.waitConns(t, "m", 0)

	// The socket is released when its close handshake ends, a moment
	// after the registry forgets it: scrape until the gauge says so.
	var out string
	for deadline := time.Now().Add(testTimeout); !strings.Contains(out, "\nherald_connections 0\n"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("herald_connections never 0:\n%s", out)
		}
		resp, err := http.Get(admin + "metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = string(b)
	}
	for _, want := range []string{
		`herald_connections 0`,
		`herald_connections_opened_total{transport="websocket"} 1`,
		`herald_connections_closed_total{code="1000",transport="websocket"} 1`,
		`herald_messages_published_total 1`,
		`herald_deliveries_total 1`,
		`herald_publish_duration_seconds_count 1`,
		`herald_store_duration_seconds_count{op="append"} 1`,
		`herald_auth_failures_total{kind="malformed"} 1`,
		`herald_auth_failures_total{kind="api_key"} 1`,
		`herald_auth_failures_total{kind="origin"} 1`,
		`herald_auth_failures_total{kind="expired"} 0`, // created at zero, for rate()
		`herald_rate_limited_total{limit="connect"} 0`,
		`herald_store_errors_total{op="append"} 0`,
		`herald_send_queue_bytes 0`,
		`herald_ready 1`,
		`herald_build_info{version="` + version + `"} 1`,
		`process_open_fds`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", out)
	}
}
