package seed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/herald-gw/herald/servicetest"
)

// Test settings. The AWS key pair is the one Herald checks SigV4 with
// (HERALD_AWS_*) and the one the API server and the notification function
// sign with (AWS_*); the token secret is the application's, known to the
// connect Lambda only.
const (
	tokenSecret  = "seed-e2e-token-secret-0123456789abcdef"
	heraldSecret = "seed-e2e-herald-token-secret-0123456789"
	heraldAPIKey = "seed-e2e-herald-api-key-0123456789abcdef"
	awsKeyID     = "AKIDSEEDE2E"
	awsSecret    = "seed-e2e-aws-secret-access-key"

	// wait bounds every poll and every read: generous, because it is never
	// waited out when things work, and a loaded CI machine is slow.
	wait = 60 * time.Second
)

// TestSeedOnHerald runs the original system — its three Lambdas and its API
// server, unmodified AWS code — on Herald instead of API Gateway and Lambda:
// Herald runs the Lambdas from a routes file, serves the WebSocket API they
// sit behind, the @connections API the notification function posts to, and
// the Lambda Invoke API the API server calls. It proves, end to end, with
// real processes and a real PostgreSQL:
//
//   - $connect decides the handshake: good tokens connect (a row each), a
//     bad token is refused with HTTP 401 (and leaves no row);
//   - POST /notify on the API server reaches every tab of the user, byte for
//     byte, and no one else's;
//   - a stale connection id is deleted by the notification function
//     (GoneException from Herald) and is not an error;
//   - a function error comes back through Lambda Invoke as 502 with the
//     function's error document;
//   - closing a tab runs $disconnect, which deletes its row.
func TestSeedOnHerald(t *testing.T) {
	dsn := servicetest.Postgres(t)
	ctx := context.Background()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	build(t, bin)
	// Registered before any process starts, so it runs after every one
	// has been stopped: nothing built for this test may still be running.
	t.Cleanup(func() { reapLeftovers(t, bin) })

	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	routesFile := filepath.Join(tmp, "routes.toml")
	writeRoutes(t, routesFile, bin, dsn, base)

	herald := start(t, "herald", []string{filepath.Join(bin, "herald")}, map[string]string{
		"HERALD_ADDR":                  "127.0.0.1:" + strconv.Itoa(port),
		"HERALD_DB":                    filepath.Join(tmp, "herald.db"),
		"HERALD_TOKEN_SECRET":          heraldSecret,
		"HERALD_API_KEY":               heraldAPIKey,
		"HERALD_AWS_ACCESS_KEY_ID":     awsKeyID,
		"HERALD_AWS_SECRET_ACCESS_KEY": awsSecret,
		"HERALD_ROUTES_FILE":           routesFile,
	})
	poll(t, "Herald to be ready (GET /readyz 200)", herald, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	api := start(t, "apiserver", []string{filepath.Join(bin, "apiserver")}, map[string]string{
		"ADDR":                  "127.0.0.1:0",
		"LAMBDA_ENDPOINT":       base,
		"NOTIFY_FUNCTION":       "notification",
		"AWS_REGION":            "us-east-1",
		"AWS_ACCESS_KEY_ID":     awsKeyID,
		"AWS_SECRET_ACCESS_KEY": awsSecret,
	})
	var apiURL string
	listening := regexp.MustCompile(`apiserver listening on (http://\S+)`)
	poll(t, "the API server to listen", api, func() bool {
		m := listening.FindStringSubmatch(api.out.String())
		if m != nil {
			apiURL = m[1]
		}
		return m != nil
	})

	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// The connect Lambda creates the table at its cold start, which comes
	// with the first $connect; until then there is nothing to count.
	rows := func() map[int64][]string {
		got := map[int64][]string{}
		r, err := db.Query(ctx, "SELECT user_id, connection_id FROM connections ORDER BY connected_at")
		if err != nil {
			return nil
		}
		defer r.Close()
		for r.Next() {
			var user int64
			var id string
			if err := r.Scan(&user, &id); err != nil {
				t.Fatal(err)
			}
			got[user] = append(got[user], id)
		}
		return got
	}

	// Two tabs of user 42 (sub as the string "42"), one of user 7 (sub as
	// the JSON number 7): both forms the original's tokens used.
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws?token="
	tab42a := dial(t, wsURL+sign(t, "42"))
	tab42b := dial(t, wsURL+sign(t, 42))
	tab7 := dial(t, wsURL+sign(t, 7))

	// A bad token: the connect Lambda answers 401, so does the handshake.
	bad, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "42", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte("not-the-token-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, wait)
	c, resp, err := websocket.Dial(dctx, wsURL+bad, nil)
	cancel()
	if err == nil {
		c.CloseNow()
		t.Fatal("a bad token connected")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a bad token: %v, response %v; want HTTP 401", err, resp)
	}

	var byUser map[int64][]string
	poll(t, "rows for 42 (two) and 7 (one)", herald, func() bool {
		byUser = rows()
		return len(byUser[42]) == 2 && len(byUser[7]) == 1 && len(byUser) == 2
	})

	// Both tabs of 42 get exactly the text; the API server answers with the
	// function's result.
	msg42 := `{"type":"invoice.paid","id":"inv_1","text":"Ünïcödé ✓"}`
	if status, body := notify(t, apiURL, 42, msg42); status != 200 || body != `{"sent":2,"gone":0}` {
		t.Fatalf("notify 42: %d %s", status, body)
	}
	for name, tab := range map[string]*websocket.Conn{"42a": tab42a, "42b": tab42b} {
		if got := read(t, tab); got != msg42 {
			t.Fatalf("tab %s got %q, want %q", name, got, msg42)
		}
	}
	// 7 got nothing of it: its first message is its own.
	msg7 := `{"type":"hello","to":7}`
	if status, body := notify(t, apiURL, 7, msg7); status != 200 || body != `{"sent":1,"gone":0}` {
		t.Fatalf("notify 7: %d %s", status, body)
	}
	if got := read(t, tab7); got != msg7 {
		t.Fatalf("tab 7's first message is %q, want %q", got, msg7)
	}

	// A stale id — its $disconnect never ran — is gone at Herald: the
	// function deletes its row and counts it, and the call succeeds.
	if _, err := db.Exec(ctx, "INSERT INTO connections (connection_id, user_id) VALUES ('stale-id=', 42)"); err != nil {
		t.Fatal(err)
	}
	msg42b := `{"n":2}`
	if status, body := notify(t, apiURL, 42, msg42b); status != 200 || body != `{"sent":2,"gone":1}` {
		t.Fatalf("notify 42 with a stale id: %d %s", status, body)
	}
	for _, tab := range []*websocket.Conn{tab42a, tab42b} {
		if got := read(t, tab); got != msg42b {
			t.Fatalf("got %q, want %q", got, msg42b)
		}
	}
	if ids := rows()[42]; slices.Contains(ids, "stale-id=") || len(ids) != 2 {
		t.Fatalf("user 42's rows after the stale post: %v", ids)
	}

	// The function fails (an empty json): Lambda Invoke says so, and the
	// API server answers 502 with the function's error document.
	if status, body := notify(t, apiURL, 42, ""); status != http.StatusBadGateway || !strings.Contains(body, `"errorMessage"`) || !strings.Contains(body, "json is 0 bytes") {
		t.Fatalf("notify with an empty json: %d %s", status, body)
	}

	// Closing a tab runs $disconnect: its row goes, the other tab's stays,
	// and the next notification reaches only the open tab.
	if err := tab42a.Close(websocket.StatusNormalClosure, "tab closed"); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The rows are in connection order, and the tabs connected one after
	// the other (each dial waits for its $connect): 42a's is the first.
	poll(t, "tab 42a's row to be deleted", herald, func() bool {
		return slices.Equal(rows()[42], byUser[42][1:])
	})
	msg42c := `{"n":3}`
	if status, body := notify(t, apiURL, 42, msg42c); status != 200 || body != `{"sent":1,"gone":0}` {
		t.Fatalf("notify 42 after a tab closed: %d %s", status, body)
	}
	if got := read(t, tab42b); got != msg42c {
		t.Fatalf("the open tab got %q, want %q", got, msg42c)
	}
}

// build compiles Herald, the three Lambdas and the API server into dir —
// one go build, so the packages they share compile once.
func build(t *testing.T, dir string) {
	t.Helper()
	const m = "github.com/herald-gw/herald/"
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		m+"cmd/herald", m+"examples/seed/connect", m+"examples/seed/disconnect", m+"examples/seed/notification", m+"examples/seed/apiserver")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// writeRoutes writes the seed's routes file for this run: the same routes
// and functions as examples/seed/routes.toml, with absolute commands and
// this run's database, secret and Herald address. Timeouts are generous
// (30 s rather than Lambda's 3 s): a race-enabled run on a loaded machine
// must not fail by a clock.
func writeRoutes(t *testing.T, path, bin, dsn, herald string) {
	t.Helper()
	q := strconv.Quote
	text := fmt.Sprintf(`selection_expression = "$request.body.action"
auth = "integration"
stage = "production"
aws_compatible = true

[routes."$connect"]
kind = "lambda"
function = "connect"

[routes."$disconnect"]
kind = "lambda"
function = "disconnect"

[functions.connect]
command = [%s]
timeout = "30s"
env = { DATABASE_URL = %s, TOKEN_SECRET = %s }

[functions.disconnect]
command = [%s]
timeout = "30s"
env = { DATABASE_URL = %s }

[functions.notification]
command = [%s]
timeout = "30s"
env = { DATABASE_URL = %s, APIGW_ENDPOINT = %s, AWS_ACCESS_KEY_ID = %s, AWS_SECRET_ACCESS_KEY = %s }
`,
		q(filepath.Join(bin, "connect")), q(dsn), q(tokenSecret),
		q(filepath.Join(bin, "disconnect")), q(dsn),
		q(filepath.Join(bin, "notification")), q(dsn), q(herald), q(awsKeyID), q(awsSecret))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort finds a port free at the moment. Herald must listen on a port
// known in advance: the routes file, written before Herald starts, names
// it as the notification function's APIGW_ENDPOINT.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// sign makes the application's token for user sub, HS256 with the token
// secret, valid for an hour.
func sign(t *testing.T, sub any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte(tokenSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dial opens a browser tab's WebSocket (coder/websocket: another
// implementation than Herald's server side).
func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial: %v (response %v)", err, resp)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// read returns the next text message of c.
func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("got a %v message %q, want text", typ, b)
	}
	return string(b)
}

// notify calls the API server as the application does and returns the
// status and body.
func notify(t *testing.T, apiURL string, user int64, text string) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"user_id":%d,"json":%s}`, user, strconv.Quote(text))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/notify", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /notify: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// proc is a process the test started, with its output kept.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{} // closed once it has exited
	err    error         // its exit status, once exited is closed
}

// start runs argv with a clean environment — PATH and HOME, no HERALD_* or
// AWS_* of the developer's — plus env. Its cleanup stops it: SIGTERM,
// which lets Herald stop its function processes, and SIGKILL if it has not
// exited within the wait.
func start(t *testing.T, name string, argv []string, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{name: name, cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// A child that inherited the output pipe (a function process Herald
	// left running) must not keep Wait from returning once the process
	// itself has exited; reapLeftovers deals with such a child.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(wait):
			t.Errorf("%s did not exit within %v of SIGTERM; killed", name, wait)
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, p.out.String())
		}
	})
	return p
}

// poll waits for cond, checking every few milliseconds for up to the
// wait; it fails the test, with p's output, if cond never holds or p
// exits meanwhile.
func poll(t *testing.T, what string, p *proc, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("waiting for %s: %s exited (%v):\n%s", what, p.name, p.err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v", what, wait)
		}
	}
}

// reapLeftovers fails the test if any process still runs a binary of dir
// — a function process Herald left behind — and kills it, so that no
// process outlives the test. It looks in /proc; where there is none it
// does nothing.
func reapLeftovers(t *testing.T, dir string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			continue
		}
		t.Errorf("process %d (%s) outlived Herald; killing it", pid, exe)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("kill %d: %v", pid, err)
		}
	}
}

// syncBuffer is a bytes.Buffer a process writes to while the test reads.
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
