package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// The baseline is the least a WebSocket server can do for the same load:
// accept any connection (no token check, no store, no hub), keep it in a
// slice, and on POST /v1/broadcast write one prebuilt frame to every
// connection from GOMAXPROCS goroutines. It also serves GET /sse the
// same way, as the least a Server-Sent Events server can do: the
// connection is taken from net/http (hijacked) once the response head is
// written by hand, unchunked, so a stream costs a socket and nothing
// more — no goroutine, no buffers — and every message is one prebuilt
// "data:" event written to it. For the notify scenario it also
// remembers each connection's user (the token's "sub", read without
// checking the signature) and on POST /v1/users/{user}/messages or POST
// /v1/batch writes each payload, as one text frame, to that user's
// connections: the HTTP request, the JSON and the socket writes that any
// server must do, and nothing else. Whatever Herald costs beyond
// it — in memory per connection, in time to reach the last connection — is
// Herald's own; what both cost is the machine's. Running it in the same run
// as Herald, with the same client fleet, makes the ratio meaningful on any
// machine, where an absolute number from another machine is not.
//
// It runs as "herald-load -serve-baseline ADDR": a separate process, so its
// RSS is its own and it competes for the CPU exactly as Herald does.

// baselineEnv marks a baseline started by a coordinator: such a child also
// stops when its stdin closes, so a coordinator that dies (even by SIGKILL)
// leaves no server behind. One started by hand runs until SIGINT/SIGTERM.
const baselineEnv = "HERALD_LOAD_BASELINE"

// isBaseline reports whether args ask for the baseline server.
func isBaseline(args []string) bool {
	return len(args) > 1 && args[1] == "-serve-baseline"
}

// baselineMain is the process entry of "-serve-baseline ADDR".
func baselineMain(args []string, getenv func(string) string) int {
	child := getenv(baselineEnv) == "1"
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if child {
		// The coordinator stops its child in order, after reading its memory;
		// Ctrl-C reaches the whole process group and must not beat it.
		signal.Ignore(os.Interrupt)
		sigs = sigs[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	if child {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin) // EOF: the coordinator is gone or done
			cancel()
		}()
	}
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: herald-load -serve-baseline ADDR   (e.g. 127.0.0.1:0 for a free port)")
		return 2
	}
	if err := serveBaseline(ctx, args[2], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "herald-load baseline:", err)
		return 1
	}
	return 0
}

// serveBaseline listens on addr, prints "listening on http://HOST:PORT" to
// stdout and serves until ctx ends.
func serveBaseline(ctx context.Context, addr string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	b := newBaselineServer(10 * time.Second)
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	if _, err := fmt.Fprintf(stdout, "herald-load baseline (raw WebSocket and SSE server, GOMAXPROCS %d) listening on http://%s\n", runtime.GOMAXPROCS(0), ln.Addr()); err != nil {
		ln.Close()
		return fmt.Errorf("announce address: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		b.closeAll()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Close does not touch hijacked connections: they are ours to close.
	_ = srv.Close()
	b.closeAll()
	return nil
}

// baselineServer holds the connections. It never reads them: the clients
// send nothing but pongs (never asked for here) and close frames, so a
// client that left is noticed by the next write to it failing.
type baselineServer struct {
	writeTimeout time.Duration

	bmu sync.Mutex // one broadcast at a time, as frames must not interleave

	mu     sync.Mutex
	conns  []baseConn
	byUser map[string][]baseConn // notify: connections by their token's user
}

// baseConn is a connection the baseline holds: a WebSocket, or an SSE
// stream.
type baseConn struct {
	nc  net.Conn
	sse bool
}

// payload is one message as each transport carries it, built once for
// all connections.
type payload struct {
	frame []byte // a WebSocket text frame
	event []byte // an SSE event: "data: …\n\n"
}

func newPayload(data []byte) (payload, error) {
	frame, err := ws.CompileFrame(ws.NewTextFrame(data))
	if err != nil {
		return payload{}, err
	}
	return payload{frame: frame, event: sseDataEvent(data)}, nil
}

// to returns the bytes that carry p to c.
func (p payload) to(c baseConn) []byte {
	if c.sse {
		return p.event
	}
	return p.frame
}

// sseDataEvent returns an unnamed event carrying data: one "data:" line
// per line of it (a field cannot hold a line break), then the blank line.
func sseDataEvent(data []byte) []byte {
	b := make([]byte, 0, len(data)+16)
	for {
		b = append(b, "data: "...)
		i := indexLineEnd(data)
		if i < 0 {
			b = append(b, data...)
			break
		}
		b = append(append(b, data[:i]...), '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, "\n\n"...)
}

// sseHead is the baseline's response to GET /sse: no chunking (the body
// ends when the connection does), nothing a client does not need.
const sseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"

func newBaselineServer(writeTimeout time.Duration) *baselineServer {
	return &baselineServer{writeTimeout: writeTimeout, byUser: make(map[string][]baseConn)}
}

func (b *baselineServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/broadcast":
		b.handleBroadcast(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/batch":
		b.handleBatch(w, r)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/users/") && strings.HasSuffix(r.URL.Path, "/messages"):
		b.handleUserMessage(w, r)
	case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		// Any path, any token (or none): authentication is not what the
		// baseline measures.
		nc, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return // the upgrader has answered the client
		}
		b.add(r, baseConn{nc: nc})
	case r.Method == http.MethodGet && r.URL.Path == "/sse":
		b.acceptSSE(w, r)
	case r.URL.Path == "/healthz":
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	default:
		http.Error(w, `{"error":{"code":"not_found","message":"the baseline serves /ws (any path), GET /sse, POST /v1/broadcast, POST /v1/users/{user}/messages and POST /v1/batch"}}`, http.StatusNotFound)
	}
}

// add holds c, under its token's user, read unverified (tokens.go): a
// connection with no readable token is still served broadcasts.
func (b *baselineServer) add(r *http.Request, c baseConn) {
	user, _ := tokenSubject(r.URL.Query().Get("token"))
	b.mu.Lock()
	b.conns = append(b.conns, c)
	if user != "" {
		b.byUser[user] = append(b.byUser[user], c)
	}
	b.mu.Unlock()
}

// acceptSSE takes the connection from net/http and writes the response
// head itself: from then on the stream is a socket like a WebSocket's.
func (b *baselineServer) acceptSSE(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		baselineError(w, http.StatusInternalServerError, "internal", "cannot take the connection over")
		return
	}
	nc, _, err := hj.Hijack()
	if err != nil {
		baselineError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	_ = nc.SetWriteDeadline(time.Now().Add(b.writeTimeout))
	if _, err := io.WriteString(nc, sseHead); err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetWriteDeadline(time.Time{})
	b.add(r, baseConn{nc: nc, sse: true})
}

func (b *baselineServer) handleBroadcast(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Data json.RawMessage `json:"data"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err == nil && len(req.Data) == 0 {
		err = errors.New("data is required")
	}
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":{"code":"invalid_request","message":%q}}`, err.Error()), http.StatusBadRequest)
		return
	}
	p, err := newPayload(req.Data)
	if err != nil {
		http.Error(w, fmt.Sprintf(`{"error":{"code":"internal","message":%q}}`, err.Error()), http.StatusInternalServerError)
		return
	}
	n := b.broadcast(p)
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"connections":%d}`+"\n", n)
}

// handleUserMessage serves POST /v1/users/{user}/messages: the body, as
// is, to the user's connections; the reply says to how many.
func (b *baselineServer) handleUserMessage(w http.ResponseWriter, r *http.Request) {
	user, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/users/"), "/messages"))
	if err != nil {
		baselineError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		baselineError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	n := b.sendUser(user, body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"connections":%d}`+"\n", n)
}

// handleBatch serves POST /v1/batch {"messages":[{"user":…,"data":…},…]}:
// each data to its user's connections, one result per message.
func (b *baselineServer) handleBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []struct {
			User string          `json:"user"`
			Data json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		baselineError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	out := make([]byte, 0, 16+20*len(req.Messages))
	out = append(out, `{"results":[`...)
	for i, m := range req.Messages {
		if i > 0 {
			out = append(out, ',')
		}
		out = fmt.Appendf(out, `{"connections":%d}`, b.sendUser(m.User, m.Data))
	}
	out = append(out, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// sendUser writes data as one text frame (or SSE event) to user's
// connections and returns how many writes succeeded. Connections whose
// write failed are dropped.
func (b *baselineServer) sendUser(user string, data []byte) int {
	p, err := newPayload(data)
	if err != nil {
		return 0
	}
	b.mu.Lock()
	conns := slices.Clone(b.byUser[user])
	b.mu.Unlock()
	n := 0
	var dead []baseConn
	deadline := time.Now().Add(b.writeTimeout)
	for _, c := range conns {
		_ = c.nc.SetWriteDeadline(deadline)
		if _, err := c.nc.Write(p.to(c)); err != nil {
			dead = append(dead, c)
			continue
		}
		n++
	}
	if len(dead) > 0 {
		b.drop(dead)
	}
	return n
}

func baselineError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`+"\n", code, msg)
}

// broadcast writes p to every connection, the connections split into
// GOMAXPROCS contiguous parts written concurrently, and returns how many
// writes succeeded. Connections whose write failed are dropped.
func (b *baselineServer) broadcast(p payload) int {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	b.mu.Lock()
	conns := slices.Clone(b.conns) // connects go on while we write
	b.mu.Unlock()

	parts := max(1, min(runtime.GOMAXPROCS(0), len(conns)))
	deadline := time.Now().Add(b.writeTimeout)
	ok := make([]int, parts)
	dead := make([][]baseConn, parts)
	var wg sync.WaitGroup
	for k := range parts {
		lo, hi := k*len(conns)/parts, (k+1)*len(conns)/parts
		wg.Go(func() {
			for _, c := range conns[lo:hi] {
				// A deadline, so one client that stopped reading costs at most
				// writeTimeout instead of stalling its part forever.
				_ = c.nc.SetWriteDeadline(deadline)
				if _, err := c.nc.Write(p.to(c)); err != nil {
					dead[k] = append(dead[k], c)
					continue
				}
				ok[k]++
			}
		})
	}
	wg.Wait()
	n := 0
	for _, k := range ok {
		n += k
	}
	if gone := slices.Concat(dead...); len(gone) > 0 {
		b.drop(gone)
	}
	return n
}

// drop forgets and closes conns.
func (b *baselineServer) drop(conns []baseConn) {
	gone := make(map[net.Conn]bool, len(conns))
	for _, c := range conns {
		gone[c.nc] = true
		_ = c.nc.Close()
	}
	b.mu.Lock()
	b.conns = slices.DeleteFunc(b.conns, func(c baseConn) bool { return gone[c.nc] })
	for u, cs := range b.byUser {
		if cs = slices.DeleteFunc(cs, func(c baseConn) bool { return gone[c.nc] }); len(cs) == 0 {
			delete(b.byUser, u)
		} else {
			b.byUser[u] = cs
		}
	}
	b.mu.Unlock()
}

func (b *baselineServer) closeAll() {
	b.mu.Lock()
	conns := b.conns
	b.conns = nil
	clear(b.byUser)
	b.mu.Unlock()
	for _, c := range conns {
		_ = c.nc.Close()
	}
}

// childProc is a server the coordinator started, measured next to the
// target: the raw baseline or the peer. It is stopped in order (asked
// first, killed after 10s) on every path.
type childProc struct {
	name    string
	url     string
	pid     int
	cmd     *exec.Cmd
	gentle  func(*exec.Cmd) // asks it to exit
	cleanup func()          // after it has exited; nil for none
	done    chan struct{}   // closed once the process is reaped

	stopOnce sync.Once
}

// startChild starts cmd and copies its output, line by line, to stderr
// prefixed with its name; a stdout line for which onLine returns true is
// not copied (the baseline's address). The caller must call stop.
func startChild(name string, cmd *exec.Cmd, stderr io.Writer, gentle func(*exec.Cmd), onLine func(string) bool) (*childProc, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &childProc{name: name, pid: cmd.Process.Pid, cmd: cmd, gentle: gentle, done: make(chan struct{})}
	copyLines := func(r io.Reader, filter func(string) bool) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if filter != nil && filter(sc.Text()) {
				continue
			}
			fmt.Fprintf(stderr, "%s: %s\n", name, sc.Text())
		}
	}
	var pipes sync.WaitGroup
	pipes.Go(func() { copyLines(out, onLine) })
	pipes.Go(func() { copyLines(errPipe, nil) })
	go func() {
		pipes.Wait() // exec wants the pipes drained before Wait
		_ = cmd.Wait()
		if p.cleanup != nil {
			p.cleanup()
		}
		close(p.done)
	}()
	return p, nil
}

// startBaseline starts "this binary -serve-baseline 127.0.0.1:0" and waits
// for the address it listens on. Its stderr, and stdout after the address
// line, are copied to stderr. The caller must call stop.
func startBaseline(ctx context.Context, stderr io.Writer) (*childProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable to start the baseline: %w", err)
	}
	cmd := exec.Command(exe, "-serve-baseline", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), baselineEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	urls := make(chan string, 1)
	p, err := startChild("baseline", cmd, stderr, func(*exec.Cmd) { _ = in.Close() }, func(line string) bool {
		if _, rest, ok := strings.Cut(line, "listening on "); ok && strings.HasPrefix(rest, "http://") {
			select {
			case urls <- strings.Fields(rest)[0]:
			default:
			}
			return true
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case p.url = <-urls:
		return p, nil
	case <-p.done:
		return nil, errors.New("baseline server exited before listening")
	case <-ctx.Done():
		p.stop()
		return nil, fmt.Errorf("start baseline: %w", context.Cause(ctx))
	case <-timer.C:
		p.stop()
		return nil, errors.New("baseline server did not report its address within 30s")
	}
}

// stop ends the child: asked first (the baseline's stdin closes, the
// peer gets SIGTERM; each closes its connections and exits), SIGKILL if
// it has not exited within 10s. It returns once the process is reaped,
// and may be called any number of times.
func (p *childProc) stop() {
	p.stopOnce.Do(func() {
		p.gentle(p.cmd)
		select {
		case <-p.done:
			return
		case <-time.After(10 * time.Second):
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// prefixWriter prefixes every write (each is one line here) with prefix,
// so the baseline run's progress is told apart from the target's.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := p.w.Write(append([]byte(p.prefix), b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}
