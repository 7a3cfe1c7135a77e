package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-gw/herald/token"
)

// TestMain lets a test start Herald as a real process: the test binary
// re-executed with HERALD_TEST_MAIN=1 runs main itself. For the tests it
// loads the protocol schema every message they see is validated against.
func TestMain(m *testing.M) {
	if os.Getenv("HERALD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	v, err := loadSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, "protocol schema:", err)
		os.Exit(1)
	}
	schema = v
	os.Exit(m.Run())
}

// proc is Herald running as a separate process.
type proc struct {
	*server
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	waitErr error         // its exit status, once exited is closed
}

// wait waits up to d for the process to exit and returns its status.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(d):
		t.Fatalf("herald did not exit within %v", d)
		return nil
	}
}

// startProcess runs Herald as a process of its own and waits until it
// listens. All of its stdout is kept in p.stdout (the banner's later
// lines name the admin listener, for instance).
func startProcess(t *testing.T, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "HERALD_TEST_MAIN=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), server: &server{stdout: &syncBuffer{}}}
	copied := make(chan struct{})
	go func() { io.Copy(p.stdout, stdout); close(copied) }()
	go func() {
		<-copied // Wait closes the pipe: read it all first
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := listenRE.FindStringSubmatch(p.stdout.String()); m != nil {
			p.URL = strings.Replace(m[1], "localhost", "127.0.0.1", 1)
			break
		}
		select {
		case <-p.exited:
			t.Fatalf("herald exited: %v", p.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald did not start; stdout:\n%s", p.stdout.String())
		}
	}
	p.WSURL = "ws" + strings.TrimPrefix(p.URL, "http")
	p.issuer, _ = token.NewIssuer([]byte(env["HERALD_TOKEN_SECRET"]))
	return p
}

// SIGTERM drains: herald.v1 and SSE clients are told to reconnect and
// closed with 1012 (an SSE stream by its close event, then its end), and
// the process exits 0 within the drain window.
func TestGracefulDrain(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		p := startProcess(t, tr.env(t, "HERALD_DRAIN_TIMEOUT", "1s"))
		var conns []*conn
		for i := range 5 {
			conns = append(conns, tr.dial(t, p.server, fmt.Sprint("d", i), asV1()))
		}
		var raw *conn // raw WebSocket clients see payloads only: no reconnect message
		d0 := 1
		if !tr.sse() {
			raw = tr.dial(t, p.server, "d0")
			d0++
		}
		p.waitConns(t, "d0", d0)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			if e := c.next(t); e.Type != "reconnect" {
				t.Fatalf("got %+v, want reconnect", e.envelope)
			}
			c.expectClose(t, 1012)
		}
		if raw != nil {
			raw.expectClose(t, 1012)
		}
		if err := p.wait(t, 15*time.Second); err != nil {
			t.Fatalf("exit: %v", err)
		}
	})
}

// kill -9 while a sender notifies concurrently: after a restart on the same
// SQLite file every message whose API call returned 2xx is in the history,
// in order, without duplicates, and a resuming client receives the ones it
// missed.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	// No retention trimming: the test reads back everything it sent.
	env := testEnv(t, "HERALD_DB", filepath.Join(t.TempDir(), "crash.db"), "HERALD_RETENTION_COUNT", "-1")
	p := startProcess(t, env)
	c := p.dialURL(t, "k", "", "herald.v1")
	p.waitConns(t, "k", 1)
	first := readEnvAfter(t, p, c)

	type ack struct {
		offset uint64
		n      int
	}
	var mu sync.Mutex
	var acked []ack
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				n := w*1_000_000 + i
				req := fmt.Sprintf(`{"n":%d}`, n)
				status, body, err := tryAPI(p.URL, "/v1/users/k/messages", req)
				if err != nil || status != 200 {
					return // the process died under us
				}
				var r struct {
					Offset uint64 `json:"offset"`
				}
				json.Unmarshal([]byte(body), &r)
				mu.Lock()
				acked = append(acked, ack{r.Offset, n})
				mu.Unlock()
			}
		})
	}
	// Kill it mid-stream, once a good number were acknowledged: the
	// writers keep going, so the kill lands among requests in flight.
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d messages acknowledged in %v", n, testTimeout)
		}
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 15*time.Second)
	wg.Wait()
	cancel()
	if len(acked) < 10 {
		t.Fatalf("only %d messages acknowledged before the kill", len(acked))
	}

	p2 := startProcess(t, env)
	var history []envelope
	for since := uint64(0); ; {
		_, body := p2.api(t, "GET", fmt.Sprintf("/v1/users/k/messages?since=%d&limit=1000", since), "")
		var r struct {
			Messages []envelope `json:"messages"`
			Next     uint64     `json:"next"`
		}
		json.Unmarshal([]byte(body), &r)
		if len(r.Messages) == 0 {
			break
		}
		history = append(history, r.Messages...)
		since = r.Next
	}
	byOffset := map[uint64]string{}
	for i, m := range history {
		if m.Offset != uint64(i+1) {
			t.Fatalf("history[%d] has offset %d: gap or duplicate", i, m.Offset)
		}
		byOffset[m.Offset] = string(m.Data)
	}
	for _, a := range acked {
		if got := byOffset[a.offset]; got != fmt.Sprintf(`{"n":%d}`, a.n) {
			t.Fatalf("acknowledged offset %d (n=%d) holds %q after the crash", a.offset, a.n, got)
		}
	}
	// The client resumes from the first message it saw and gets the rest.
	c2 := p2.dialURL(t, "k", fmt.Sprintf("&since=%d&epoch=%s", first.Offset, first.Epoch), "herald.v1")
	for want := first.Offset + 1; want <= uint64(len(history)); want++ {
		if e := readEnv(t, c2); e.Offset != want {
			t.Fatalf("resume after crash: got %+v, want offset %d", e, want)
		}
	}
	t.Logf("%d acknowledged, %d in history after kill -9", len(acked), len(history))
}

// readEnvAfter publishes one message and returns its envelope.
func readEnvAfter(t *testing.T, p *proc, c *websocket.Conn) envelope {
	t.Helper()
	p.publish(t, "k", -1)
	return readEnv(t, c)
}

func tryAPI(base, path, body string) (int, string, error) {
	req, err := newAPIRequest("POST", base+path, body)
	if err != nil {
		return 0, "", err
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// The drain as a load balancer sees it: after SIGTERM the listener keeps
// answering — /readyz and /ws with 503, not a refused connection — while
// connections are closed, and the process exits within the drain window
// plus one second even with a request that never finishes and a client
// that never answers its close frame. (The bound checked is generous, for
// a loaded machine; before the fix the exit came 5 s past the window.)
func TestDrainKeepsListening(t *testing.T) {
	const window = 2 * time.Second
	p := startProcess(t, testEnv(t, "HERALD_DRAIN_TIMEOUT", window.String()))
	addr := strings.TrimPrefix(p.URL, "http://")
	// A WebSocket client that never reads, so never answers the close.
	deaf, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	fmt.Fprintf(deaf, "GET /ws?token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", p.token(t, "deaf"), addr)
	p.waitConns(t, "deaf", 1)
	// A request whose body never arrives: in flight until cut off.
	hung, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	fmt.Fprintf(hung, "POST /v1/users/h/messages HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", addr, testAPIKey)

	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	saw503 := false
	for !saw503 {
		resp, err := http.Get(p.URL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain: %v (the listener must stay open)", err)
		}
		resp.Body.Close()
		saw503 = resp.StatusCode == http.StatusServiceUnavailable
		if !saw503 && time.Since(signalled) > testTimeout {
			t.Fatalf("/readyz still %d", resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, p.WSURL+"/ws?token="+p.token(t, "late"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/ws during the drain: %v, %+v", err, resp)
	}
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took := time.Since(signalled); took > window+3*time.Second {
		t.Fatalf("exited %v after SIGTERM; the window is %v (+1s)", took, window)
	}
}
