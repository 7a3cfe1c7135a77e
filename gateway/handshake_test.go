package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/session"
)

// rawUpgrade is an upgrade request written by hand, so that it can be
// wrong in every way a client can get it wrong.
type rawUpgrade struct {
	method, proto, query string
	headers              []string // "Name: value" lines after Host
}

// goodHeaders are a valid handshake's header lines; the key is RFC 6455's
// own example (§1.3), whose accept value is known.
var goodHeaders = []string{
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	"Sec-WebSocket-Version: 13",
}

const goodAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

// with returns goodHeaders with the lines of the names in drop left out
// and add appended.
func with(drop []string, add ...string) []string {
	var out []string
	for _, h := range goodHeaders {
		name, _, _ := strings.Cut(h, ":")
		keep := true
		for _, d := range drop {
			keep = keep && !strings.EqualFold(name, d)
		}
		if keep {
			out = append(out, h)
		}
	}
	return append(out, add...)
}

func (u rawUpgrade) bytes(tok string) []byte {
	method, proto := u.method, u.proto
	if method == "" {
		method = "GET"
	}
	if proto == "" {
		proto = "HTTP/1.1"
	}
	headers := u.headers
	if headers == nil {
		headers = goodHeaders
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s /ws?token=%s%s %s\r\nHost: herald.test\r\n", method, tok, u.query, proto)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// refusedUpgrades are handshakes Accept must refuse, each with the status
// and error code the client gets.
var refusedUpgrades = []struct {
	name   string
	req    rawUpgrade
	status int
	code   herald.ErrorCode
}{
	{"not an upgrade", rawUpgrade{headers: with([]string{"Upgrade", "Connection"})}, 400, herald.EInvalidRequest},
	{"upgrade to another protocol", rawUpgrade{headers: with([]string{"Upgrade"}, "Upgrade: h2c")}, 400, herald.EInvalidRequest},
	{"POST", rawUpgrade{method: "POST", headers: with(nil, "Content-Length: 0")}, 400, herald.EInvalidRequest},
	{"HTTP/1.0", rawUpgrade{proto: "HTTP/1.0"}, 400, herald.EInvalidRequest},
	{"no Connection", rawUpgrade{headers: with([]string{"Connection"})}, 400, herald.EInvalidRequest},
	{"Connection without upgrade", rawUpgrade{headers: with([]string{"Connection"}, "Connection: keep-alive")}, 400, herald.EInvalidRequest},
	{"no key", rawUpgrade{headers: with([]string{"Sec-WebSocket-Key"})}, 400, herald.EInvalidRequest},
	{"key not base64", rawUpgrade{headers: with([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: not*base64*at*all*!!!!!")}, 400, herald.EInvalidRequest},
	{"key of 24 characters but 18 bytes", rawUpgrade{headers: with([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA")}, 400, herald.EInvalidRequest},
	{"key of 15 bytes", rawUpgrade{headers: with([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA")}, 400, herald.EInvalidRequest},
	{"two keys", rawUpgrade{headers: with(nil, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==")}, 400, herald.EInvalidRequest},
	{"no version", rawUpgrade{headers: with([]string{"Sec-WebSocket-Version"})}, 400, herald.EInvalidRequest},
	{"empty version", rawUpgrade{headers: with([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: ")}, 400, herald.EInvalidRequest},
	{"version 8", rawUpgrade{headers: with([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 8")}, 426, herald.EUpgradeRequired},
	{"two versions", rawUpgrade{headers: with(nil, "Sec-WebSocket-Version: 8")}, 426, herald.EUpgradeRequired},
	{"subprotocol not a token", rawUpgrade{headers: with(nil, `Sec-WebSocket-Protocol: herald.v1, "quoted"`)}, 400, herald.EInvalidRequest},
	{"since not an offset", rawUpgrade{query: "&since=x"}, 400, herald.EInvalidRequest},
}

// readJSONError reads a refusal: its status, headers and error code.
func readJSONError(resp *http.Response) (herald.ErrorCode, error) {
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return "", fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error struct {
			Code herald.ErrorCode `json:"code"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("body: %w", err)
	}
	return body.Error.Code, nil
}

// closedByServer reads what is left on nc until the server closes it, and
// fails when it does not within the bound (generous: the server closes
// right after its answer).
func closedByServer(nc net.Conn, br *bufio.Reader) error {
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("the server did not close the connection after refusing the upgrade")
		}
		// A reset is a close too.
	}
	return nil
}

// Every malformed handshake is refused before anything is taken over:
// with the API's JSON error, the documented status and code (426 with
// Sec-WebSocket-Version: 13 for another version), no slot or session left
// behind, and the connection closed by the server. A valid one, in the
// forms real clients send, gets the RFC's accept value and its
// subprotocol.
func TestUpgradeHandshake(t *testing.T) {
	s := serveWith(t, Config{}, session.Config{})
	tok, err := s.iss.Mint("u", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(t *testing.T, u rawUpgrade) (net.Conn, *bufio.Reader, *http.Response) {
		t.Helper()
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second)) // a bound for a broken server
		if _, err := nc.Write(u.bytes(tok)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return nc, br, resp
	}
	for _, tc := range refusedUpgrades {
		t.Run(tc.name, func(t *testing.T) {
			nc, br, resp := exchange(t, tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			code, err := readJSONError(resp)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Fatalf("error code %q, want %q", code, tc.code)
			}
			wantVersion := ""
			if tc.status == http.StatusUpgradeRequired {
				wantVersion = "13"
			}
			if v := resp.Header.Get("Sec-WebSocket-Version"); v != wantVersion {
				t.Fatalf("Sec-WebSocket-Version %q, want %q", v, wantVersion)
			}
			if err := closedByServer(nc, br); err != nil {
				t.Fatal(err)
			}
			if s.sm.Open() != 0 || s.h.Len() != 0 {
				t.Fatalf("a refused upgrade holds %d slots and %d sessions", s.sm.Open(), s.h.Len())
			}
		})
	}

	for _, tc := range []struct {
		name, protocol string
		headers        []string
	}{
		{"as in RFC 6455", "", goodHeaders},
		{"Connection as Firefox sends it", "", with([]string{"Connection"}, "Connection: keep-alive, Upgrade")},
		{"Connection on two lines", "", with([]string{"Connection"}, "Connection: keep-alive", "Connection: upgrade")},
		{"any case", "", with([]string{"Upgrade", "Connection"}, "Upgrade: WebSocket", "Connection: UPGRADE")},
		{"herald.v1 preferred", "herald.v1", with(nil, "Sec-WebSocket-Protocol: herald.token.x, herald.v1")},
		{"token subprotocol echoed alone", "herald.token.x", with(nil, "Sec-WebSocket-Protocol: herald.token.x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, _, resp := exchange(t, rawUpgrade{headers: tc.headers})
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			if a := resp.Header.Get("Sec-WebSocket-Accept"); a != goodAccept {
				t.Fatalf("Sec-WebSocket-Accept %q, want %q", a, goodAccept)
			}
			if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != tc.protocol {
				t.Fatalf("Sec-WebSocket-Protocol %q, want %q", p, tc.protocol)
			}
			if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
				t.Fatalf("Upgrade %q, Connection %q", resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
			}
			waitFor(t, "the connection joined the hub", func() bool { return s.h.Len() == 1 })
			nc.Close()
			waitFor(t, "the connection was torn down", func() bool { return s.h.Len() == 0 && s.sm.Open() == 0 })
		})
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// A flood of malformed upgrades leaves no socket behind: the server closes
// every refused connection itself (each client reads EOF), and the
// process's descriptors come back to what they were. Refusing must not
// depend on a garbage collector finalizer closing what was taken over.
func TestRefusedUpgradesLeaveNoSocket(t *testing.T) {
	countFDs := runtime.GOOS == "linux"
	s := serveWith(t, Config{}, session.Config{})
	tok, err := s.iss.Mint("u", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	refuse := func(i int) error {
		tc := refusedUpgrades[i%len(refusedUpgrades)]
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second)) // a bound for a broken server
		if _, err := nc.Write(tc.req.bytes(tok)); err != nil {
			return err
		}
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
		// The whole answer is read before anything is judged, so that a
		// server that answers but keeps the socket fails on the socket.
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("%s: body: %w", tc.name, err)
		}
		if err := closedByServer(nc, br); err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" {
			return fmt.Errorf("%s: %d %q %q", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		return nil
	}
	// One round first, so that whatever the server creates once (its
	// accept loop's descriptors) exists before the baseline.
	if err := refuse(0); err != nil {
		t.Fatal(err)
	}
	var baseline int
	if countFDs {
		baseline = openFDs(t)
	}

	const n, parallel = 500, 50
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
		mu     sync.Mutex
		first  error
	)
	sem := make(chan struct{}, parallel)
	for i := 0; i < n && !failed.Load(); i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := refuse(i); err != nil && failed.CompareAndSwap(false, true) {
				mu.Lock()
				first = fmt.Errorf("upgrade %d: %w", i, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
	if s.sm.Open() != 0 || s.h.Len() != 0 {
		t.Fatalf("refused upgrades hold %d slots and %d sessions", s.sm.Open(), s.h.Len())
	}
	if !countFDs {
		return
	}
	// Both ends are closed; the descriptors must follow. Polled, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := openFDs(t)
		if fds <= baseline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open after %d refused upgrades, %d before", fds, n, baseline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
