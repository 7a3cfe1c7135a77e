package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Centrifugo (github.com/centrifugal/centrifugo) is the peer -peer
// centrifugo measures: the strongest self-hosted server of the same kind,
// a Go module like Herald, so the same tool can build it, start it and load
// it on the same machine in the same run. Nothing of it is vendored: the
// tool installs the pinned version with the Go toolchain into a cache
// folder the first time, and runs the binary as a child process with a
// generated configuration that makes it do what Herald does by default:
//
//   - a token (HS256 JWT, "sub" the user) authenticates each connection;
//   - every connection is subscribed, server-side, to its user's personal
//     channel personal:#<user> (client.subscribe_to_user_personal_channel),
//     whose namespace keeps history (1,000 messages for 168h, as Herald's
//     HERALD_RETENTION_COUNT and HERALD_RETENTION_AGE) with recovery
//     forced: the in-memory counterpart of Herald's durable user stream;
//   - and to one shared channel, "broadcast", named in the token's
//     "channels" claim: Herald's POST /v1/broadcast is a publish to it (no
//     history, as Herald's broadcasts are not stored);
//   - notify is POST /api/publish to the personal channel, or POST
//     /api/batch with one publish command per message (-batch N).
//
// Clients speak its JSON protocol over WebSocket (/connection/websocket):
// a connect command carrying the token first, then pushes, several to a
// frame separated by newlines; the server's pings are "{}" and must be
// answered with "{}".

const (
	// dialectCentrifugo names the peer (-peer centrifugo) and the
	// protocol its runs speak (config.Dialect, workerSpec.Dialect).
	dialectCentrifugo = "centrifugo"
	centrifugoVersion = "v6.9.1"
	centrifugoModule  = "github.com/centrifugal/centrifugo/v6"
	// centrifugoBroadcast is the shared channel every connection is
	// subscribed to: the fanout scenario publishes to it.
	centrifugoBroadcast = "broadcast"
	// centrifugoPersonalNS is the namespace of the users' personal
	// channels, "personal:#<user>".
	centrifugoPersonalNS = "personal"
	// The personal channels' history: Herald's retention defaults
	// (HERALD_RETENTION_COUNT, HERALD_RETENTION_AGE).
	centrifugoHistorySize = 1000
	centrifugoHistoryTTL  = "168h"
	// centrifugoPath is its WebSocket endpoint.
	centrifugoPath = "/connection/websocket"
)

// centrifugoChannel is user's personal channel.
func centrifugoChannel(user string) string { return centrifugoPersonalNS + ":#" + user }

// defaultPeerBin is where the tool keeps the Centrifugo it builds:
// $XDG_CACHE_HOME/herald-load/centrifugo-v6.9.1/centrifugo (os.UserCacheDir).
func defaultPeerBin() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder to install Centrifugo into (give -peer-bin): %w", err)
	}
	return filepath.Join(dir, "herald-load", "centrifugo-"+centrifugoVersion, "centrifugo"), nil
}

// ensureCentrifugo returns the binary to run: bin if given (it must
// exist), else the cached one, installed first with "go install
// github.com/centrifugal/centrifugo/v6@v6.9.1" when missing. The install
// takes minutes on a small machine; its output goes to stderr, and a
// failure says why (no Go toolchain, no network, a build error).
func ensureCentrifugo(ctx context.Context, bin string, stderr io.Writer) (string, error) {
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("-peer-bin: %w", err)
		}
		return bin, nil
	}
	bin, err := defaultPeerBin()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("Centrifugo %s is not in %s and there is no Go toolchain to build it (give -peer-bin): %w", centrifugoVersion, filepath.Dir(bin), err)
	}
	dir := filepath.Dir(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("Centrifugo cache folder: %w", err)
	}
	fmt.Fprintf(stderr, "installing Centrifugo %s into %s with go install (a few minutes, once)\n", centrifugoVersion, dir)
	cmd := exec.CommandContext(ctx, goBin, "install", centrifugoModule+"@"+centrifugoVersion)
	// GOFLAGS=-mod=mod: not this module's go.mod; GOWORK=off: nor a
	// workspace around the current folder.
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	// What it says goes to stderr as it comes, and the end of it into the
	// error. One buffer for stderr only: go install writes nothing else.
	show := &prefixWriter{w: stderr, prefix: "go install: "}
	var said bytes.Buffer
	cmd.Stdout, cmd.Stderr = show, io.MultiWriter(&said, show)
	if err := cmd.Run(); err != nil {
		tail := said.Bytes()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return "", fmt.Errorf("Centrifugo %s did not build (go install %s@%s: %v): %s", centrifugoVersion, centrifugoModule, centrifugoVersion, err, bytes.TrimSpace(tail))
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("go install finished but %s is missing: %w", bin, err)
	}
	return bin, nil
}

// centrifugoBuildVersion is the module version a Go-built binary records
// ("go version -m"), e.g. "v6.9.1"; its own "version" command says v0.0.0
// when built by go install, which sets no ldflags.
func centrifugoBuildVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return "unknown version"
	}
	goVer := ""
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		switch {
		case goVer == "" && len(f) == 2 && strings.HasSuffix(f[0], ":"):
			goVer = f[1] // the first line: "PATH: go1.x"
		case len(f) >= 3 && f[0] == "mod" && f[1] == centrifugoModule:
			return f[2] + " (built with " + goVer + ")"
		}
	}
	return "unknown version"
}

// centrifugoSettings is what the generated configuration varies by.
type centrifugoSettings struct {
	Port        int
	Secret      string // HMAC key of the connection tokens
	APIKey      string // of the HTTP API
	HistorySize int
	HistoryTTL  string
}

// centrifugoConfig returns the configuration file (Centrifugo v6's JSON
// format) for s. Anything not set is Centrifugo's default: the memory
// engine, a 25s ping interval.
func centrifugoConfig(s centrifugoSettings) ([]byte, error) {
	if s.Port <= 0 || s.Secret == "" || s.APIKey == "" {
		return nil, errors.New("centrifugo config: port, secret and API key are required")
	}
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": s.Port},
		"log":         map[string]any{"level": "error"},
		"client": map[string]any{
			"token": map[string]any{"hmac_secret_key": s.Secret},
			// The load tool's handshake sends no Origin; a browser's would
			// be checked against this.
			"allowed_origins": []string{"*"},
			"subscribe_to_user_personal_channel": map[string]any{
				"enabled":                    true,
				"personal_channel_namespace": centrifugoPersonalNS,
			},
		},
		"channel": map[string]any{
			"namespaces": []any{map[string]any{
				"name":           centrifugoPersonalNS,
				"history_size":   s.HistorySize,
				"history_ttl":    s.HistoryTTL,
				"force_recovery": true,
			}},
		},
		"http_api":    map[string]any{"key": s.APIKey},
		"health":      map[string]any{"enabled": true},
		"usage_stats": map[string]any{"disabled": true}, // a benchmark phones nobody
		"shutdown":    map[string]any{"timeout": "5s"},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// centrifugoConfigSummary describes the configuration for run records,
// without its secrets.
func centrifugoConfigSummary(s centrifugoSettings) string {
	return fmt.Sprintf("memory engine; HS256 connection tokens (sub = user, channels = [%q]); "+
		"client.subscribe_to_user_personal_channel into namespace %q with history_size %d, history_ttl %s, force_recovery; "+
		"shared channel %q without history; HTTP API /api/publish and /api/batch with an API key; log level error; "+
		"GOMAXPROCS %d; other settings default (ping 25s, pong timeout 8s)",
		centrifugoBroadcast, centrifugoPersonalNS, s.HistorySize, s.HistoryTTL, centrifugoBroadcast, runtime.NumCPU())
}

// newCentrifugoSettings picks a free loopback port and fresh secrets.
func newCentrifugoSettings() (centrifugoSettings, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return centrifugoSettings{}, fmt.Errorf("find a free port for Centrifugo: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // Centrifugo binds it next; should another take it first, it exits and we say so
	return centrifugoSettings{
		Port: port, Secret: randomHex(32), APIKey: randomHex(24),
		HistorySize: centrifugoHistorySize, HistoryTTL: centrifugoHistoryTTL,
	}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startCentrifugo writes s's configuration into a new temporary folder
// and starts bin on it as a child: in its own process group (Ctrl-C
// reaches the coordinator, which stops it in order after reading its
// memory), killed by the kernel should the coordinator die (Linux), with
// GOMAXPROCS the machine's cores, as Herald's. It returns once
// Centrifugo's health endpoint answers.
func startCentrifugo(ctx context.Context, bin string, s centrifugoSettings, stderr io.Writer) (*childProc, error) {
	conf, err := centrifugoConfig(s)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herald-load-centrifugo-")
	if err != nil {
		return nil, fmt.Errorf("centrifugo config folder: %w", err)
	}
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("centrifugo config: %w", err)
	}
	cmd := exec.Command(bin, "--config", path)
	cmd.Dir = dir
	cmd.Env = append(peerEnv(os.Environ()), "GOMAXPROCS="+strconv.Itoa(runtime.NumCPU()))
	cmd.SysProcAttr = childSysProcAttr()
	p, err := startChild("centrifugo", cmd, stderr, func(c *exec.Cmd) { _ = c.Process.Signal(syscall.SIGTERM) }, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start Centrifugo: %w", err)
	}
	p.cleanup = func() { os.RemoveAll(dir) }
	p.url = fmt.Sprintf("http://127.0.0.1:%d", s.Port)
	if err := waitHealthy(ctx, p, p.url+"/health", 30*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("Centrifugo: %w", err)
	}
	return p, nil
}

// peerEnv is env without CENTRIFUGO_* variables, which would override
// the generated configuration.
func peerEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(strings.ToUpper(kv), "CENTRIFUGO_") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return out
}

// waitHealthy polls url until it answers 200, p exits, ctx ends or
// limit passes.
func waitHealthy(ctx context.Context, p *childProc, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return errors.New("exited before it was ready (its output is above)")
		case <-ctx.Done():
			return fmt.Errorf("not ready at %s within %v: %w", url, limit, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mintCentrifugoToken returns an HS256 JWT for user expiring at exp, with
// channels as its server-side subscriptions.
func mintCentrifugoToken(secret []byte, user string, exp time.Time, channels []string) (string, error) {
	if len(secret) == 0 || user == "" {
		return "", errors.New("centrifugo token: secret and user are required")
	}
	claims := struct {
		Sub      string   `json:"sub"`
		Exp      int64    `json:"exp"`
		Channels []string `json:"channels,omitempty"`
	}{user, exp.Unix(), channels}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("centrifugo token: %w", err)
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// centrifugoConnect is the first message a client sends: the connect
// command with its token.
func centrifugoConnect(tok string) []byte {
	q, _ := json.Marshal(tok) // a string always marshals
	return fmt.Appendf(nil, `{"id":1,"connect":{"token":%s}}`, q)
}

// cfKind is what a line of Centrifugo's JSON protocol is to the client.
type cfKind int

const (
	cfOther cfKind = iota // a push or reply the load tool does not use
	cfPing                // "{}": the server's ping, to be answered with "{}"
	cfReply               // a reply to a command of ours (id > 0)
	cfPub                 // a publication push carrying our payload
)

// cfMessage is one parsed line; its slices alias the input.
type cfMessage struct {
	kind   cfKind
	id     int64  // cfReply
	err    []byte // cfReply: the error object, nil on success
	t, seq int64  // cfPub: our payload's timestamp and sequence number
}

// parseCentrifugoLine parses one line of a server message (JSON protocol:
// a frame holds one or more, newline-separated). It is given untrusted
// bytes and never fails: what it does not recognise is cfOther. Like
// jsonInt it reads by searching rather than decoding, because it runs
// once per delivery on a client that holds tens of thousands of
// connections; the keys it searches for are Centrifugo's, and the payload
// (in pub.data) is the load tool's own {"t":…,"seq":…}.
func parseCentrifugoLine(line []byte) cfMessage {
	line = bytes.TrimSpace(line)
	if string(line) == "{}" {
		return cfMessage{kind: cfPing}
	}
	if len(line) < 2 || line[0] != '{' {
		return cfMessage{}
	}
	if i := bytes.Index(line, []byte(`"push":`)); i >= 0 {
		rest := line[i:]
		j := bytes.Index(rest, []byte(`"pub":`))
		if j < 0 {
			return cfMessage{} // join, leave, disconnect, …
		}
		rest = rest[j:]
		k := bytes.Index(rest, []byte(`"data":`))
		if k < 0 {
			return cfMessage{}
		}
		data := bytes.TrimLeft(rest[k+len(`"data":`):], " ")
		if len(data) == 0 || data[0] != '{' {
			return cfMessage{}
		}
		// Our payload is flat: its object ends at the first '}'.
		if end := bytes.IndexByte(data, '}'); end >= 0 {
			data = data[:end+1]
		}
		t, ok := jsonInt(data, `"t":`)
		if !ok {
			return cfMessage{}
		}
		seq, _ := jsonInt(data, `"seq":`)
		return cfMessage{kind: cfPub, t: t, seq: seq}
	}
	if !bytes.HasPrefix(line, []byte(`{"id":`)) {
		return cfMessage{}
	}
	id, ok := jsonInt(line, `{"id":`)
	if !ok || id <= 0 {
		return cfMessage{}
	}
	m := cfMessage{kind: cfReply, id: id}
	if i := bytes.Index(line, []byte(`"error":`)); i >= 0 {
		m.err = line[i+len(`"error":`):]
		if len(m.err) > 200 {
			m.err = m.err[:200]
		}
		if len(m.err) == 0 {
			m.err = []byte("{}")
		}
	}
	return m
}

// centrifugoAPI sends the scenarios' messages through Centrifugo's HTTP
// API. Its publish replies say nothing of how many connections a message
// went to, so the count a notify expects is the connections the run holds
// for the user (connsOf), and a broadcast's is unknown (-1).
type centrifugoAPI struct {
	api     *apiClient
	connsOf func(user string) int
}

func newCentrifugoAPI(base, key string, conns int, connsOf func(string) int) *centrifugoAPI {
	a := newAPIClient([]string{base}, key, conns)
	a.authHeader, a.authValue = "X-API-Key", key
	return &centrifugoAPI{api: a, connsOf: connsOf}
}

// centrifugoError is an error object in a Centrifugo API reply.
type centrifugoError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *centrifugoError) Error() string {
	return fmt.Sprintf("centrifugo error %d: %s", e.Code, e.Message)
}

// publish sends data to channel. A 200 may carry an error.
func (c *centrifugoAPI) publish(ctx context.Context, channel string, data []byte) error {
	body, err := json.Marshal(struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}{channel, data})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	var r struct {
		Error *centrifugoError `json:"error"`
	}
	if err := c.api.do(ctx, "POST", "/api/publish", body, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return fmt.Errorf("POST /api/publish to %s: %w", channel, r.Error)
	}
	return nil
}

func (c *centrifugoAPI) broadcast(ctx context.Context, data []byte) (int, error) {
	return -1, c.publish(ctx, centrifugoBroadcast, data)
}

func (c *centrifugoAPI) sendUser(ctx context.Context, user string, data []byte) (int, error) {
	if err := c.publish(ctx, centrifugoChannel(user), data); err != nil {
		return 0, err
	}
	return c.connsOf(user), nil
}

// sendMessages sends msgs as one POST /api/batch, a publish command per
// message to its user's personal channel, and returns a result per
// message in the shape of Herald's POST /v1/batch.
func (c *centrifugoAPI) sendMessages(ctx context.Context, msgs []notifyMsg, users []string) ([]batchItem, error) {
	body := centrifugoBatchBody(msgs, users)
	var r struct {
		Error   *centrifugoError `json:"error"`
		Replies []struct {
			Error *centrifugoError `json:"error"`
		} `json:"replies"`
	}
	if err := c.api.do(ctx, "POST", "/api/batch", body, &r); err != nil {
		return nil, err
	}
	if r.Error != nil {
		return nil, fmt.Errorf("POST /api/batch: %w", r.Error)
	}
	out := make([]batchItem, len(r.Replies))
	for i, rep := range r.Replies {
		if rep.Error != nil {
			out[i].Error = &batchError{Code: strconv.Itoa(rep.Error.Code), Message: rep.Error.Message}
			continue
		}
		if i < len(msgs) {
			out[i].Connections = c.connsOf(userOfSeq(users, msgs[i].seq))
		}
	}
	return out, nil
}

// centrifugoBatchBody is the POST /api/batch request for msgs:
// {"commands":[{"publish":{"channel":"personal:#…","data":{"t":…,"seq":…}}},…]}.
func centrifugoBatchBody(msgs []notifyMsg, users []string) []byte {
	b := make([]byte, 0, 16+len(msgs)*96)
	b = append(b, `{"commands":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		ch, _ := json.Marshal(centrifugoChannel(userOfSeq(users, m.seq))) // a string always marshals
		b = append(b, `{"publish":{"channel":`...)
		b = append(b, ch...)
		b = fmt.Appendf(b, `,"data":{"t":%d,"seq":%d}}}`, m.t, m.seq)
	}
	return append(b, "]}"...)
}

// userOfSeq is the user notification seq goes to: the users in turn.
func userOfSeq(users []string, seq int64) string { return users[int((seq-1)%int64(len(users)))] }
