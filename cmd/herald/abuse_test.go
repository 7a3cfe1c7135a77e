package main

// Bounded, loopback-only abuse tests against a real Herald process, so
// that the descriptors, goroutines and memory measured are the server's
// own and not shared with the test. Each test measures a baseline once
// three legitimate clients are connected and a small warm-up round of the
// same abuse has run (so lazily built pools and tables are in the
// baseline), runs the abuse while those clients keep receiving
// broadcasts, then polls, with a bound, until the server is back to its
// baseline. Linux only: descriptors, RSS and socket states come from
// /proc.

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-gw/herald/token"
)

// Bounds of the return to baseline. None is a timing assertion: settle
// polls until the condition holds and fails only past settleTimeout.
const (
	settleTimeout = 30 * time.Second
	// goroutineSlack covers what comes and goes on its own: the
	// connection of the scrape itself, a keep-alive API connection
	// opened or closed by a client pool, a timer or GC worker.
	goroutineSlack = 10
	// fdSlack covers the same connections as descriptors.
	fdSlack = 5
	// rssSlack is generous on purpose. Go returns freed heap to the OS
	// lazily (the background scavenger paces itself; nothing here can
	// call debug.FreeOSMemory in the server), so RSS after an attack
	// stays near its peak for a while even when nothing leaked: some
	// 15 MiB above the baseline after 1,000 slowloris connections were
	// observed. What this catches is runaway growth; a leak that grows
	// with the attack (retained connections, buffers, goroutines) is
	// caught sharply by the heap, goroutine and descriptor checks.
	rssSlack = 64 << 20
	// rssSlackRace replaces rssSlack when the server is race-enabled
	// (this test binary built with -race): the race runtime keeps state
	// per goroutine and shadow memory for every page it touched, and
	// gives neither back; +110 MiB after the 1,000 slowloris goroutines
	// were observed.
	rssSlackRace = 384 << 20
	// heapSlack bounds the live heap (heap_inuse after forced GCs) past
	// its baseline: about half of what 1,000 connections in flight hold
	// (12 to 16 MiB above the baseline at the slowloris peak; within
	// 1.5 MiB of it once they were gone).
	heapSlack = 8 << 20
)

// abuseTarget is a Herald process under attack, with its admin listener
// and three legitimate WebSocket clients that must be served throughout.
type abuseTarget struct {
	p      *proc
	admin  string // http://127.0.0.1:port/ of the admin listener
	port   int    // the public listener's port
	legit  []*websocket.Conn
	pub    *http.Client // the publisher's; keep-alive, one connection
	scrape *http.Client // no keep-alive: scrapes leave no connection behind
}

// startAbuseTarget starts Herald as a process with an admin listener.
func startAbuseTarget(t *testing.T, extra ...string) *abuseTarget {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the abuse tests read the server's descriptors, memory and sockets from /proc")
	}
	p := startProcess(t, testEnv(t, append([]string{"HERALD_ADMIN_ADDR", "127.0.0.1:0", "HERALD_LOG_LEVEL", "error"}, extra...)...))
	a := &abuseTarget{
		p:      p,
		admin:  p.adminURL(t),
		pub:    &http.Client{Timeout: testTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
		scrape: &http.Client{Timeout: testTimeout, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	t.Cleanup(a.pub.CloseIdleConnections)
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	if a.port, err = strconv.Atoi(u.Port()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		user := fmt.Sprint("legit", i)
		a.legit = append(a.legit, p.dial(t, user))
		p.waitConns(t, user, 1)
	}
	return a
}

// addr is the public listener's host:port.
func (a *abuseTarget) addr() string { return strings.TrimPrefix(a.p.URL, "http://") }

// procStats is what the server holds, as the kernel and its metrics say.
type procStats struct {
	goroutines int   // go_goroutines
	fds        int   // entries of /proc/<pid>/fd
	rss        int64 // VmRSS, bytes
	heap       int64 // heap_inuse of /debug/stats, after a GC when asked
	closeWait  int   // server-side sockets of the public port in CLOSE_WAIT
	conns      int   // herald_connections
}

func (s procStats) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, RSS %.1f MiB, heap %.1f MiB, CLOSE_WAIT %d, connections %d",
		s.goroutines, s.fds, float64(s.rss)/(1<<20), float64(s.heap)/(1<<20), s.closeWait, s.conns)
}

// get fetches path of the admin listener.
func (a *abuseTarget) get(path string) ([]byte, error) {
	resp, err := a.scrape.Get(a.admin + path)
	if err != nil {
		return nil, fmt.Errorf("admin %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil {
		return nil, fmt.Errorf("admin %s: %w", path, err)
	}
	return b, nil
}

// metrics scrapes /metrics.
func (a *abuseTarget) metrics(t *testing.T) string {
	t.Helper()
	b, err := a.get("metrics")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scrapeSeries is the value of one exact series (name and labels as
// printed) in a scrape.
func scrapeSeries(scrape, name string) (float64, error) {
	for line := range strings.SplitSeq(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("series %s: %q: %w", name, line, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

// mustScrapeSeries is scrapeSeries failing t.
func mustScrapeSeries(t *testing.T, scrape, name string) float64 {
	t.Helper()
	f, err := scrapeSeries(scrape, name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// stats measures the server; with gc, the heap figure is taken after
// forced collections.
func (a *abuseTarget) stats(t *testing.T, gc bool) procStats {
	t.Helper()
	s, err := a.measure(gc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (a *abuseTarget) measure(gc bool) (procStats, error) {
	var s procStats
	if gc {
		// pprof's heap profile runs a collection when asked. Two:
		// what the first frees from sync.Pools (net/http's bufio
		// readers and writers) it keeps as the pools' victims until
		// the second.
		for range 2 {
			if _, err := a.get("debug/pprof/heap?gc=1"); err != nil {
				return s, err
			}
		}
	}
	b, err := a.get("debug/stats")
	if err != nil {
		return s, err
	}
	var st struct {
		HeapInuse int64 `json:"heap_inuse"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return s, fmt.Errorf("debug/stats: %w", err)
	}
	s.heap = st.HeapInuse
	if b, err = a.get("metrics"); err != nil {
		return s, err
	}
	g, err := scrapeSeries(string(b), "go_goroutines")
	if err != nil {
		return s, err
	}
	c, err := scrapeSeries(string(b), "herald_connections")
	if err != nil {
		return s, err
	}
	s.goroutines, s.conns = int(g), int(c)
	pid := a.p.cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return s, fmt.Errorf("VmRSS %q: %w", line, err)
			}
			s.rss = kb << 10
		}
	}
	s.closeWait = a.closeWait(pid)
	return s, nil
}

// rssAllowance is rssSlack, or rssSlackRace for a race-enabled server:
// the server is this test binary, whose build settings say.
func rssAllowance() int64 {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return rssSlackRace
			}
		}
	}
	return rssSlack
}

// closeWait counts the sockets on the public port in CLOSE_WAIT: the
// client hung up and the server never closed its end, the leak refused
// upgrades caused before the handshake was checked before the take-over.
// The tables are the network namespace's, so the test's own client
// sockets are in them too; the server's are the ones whose local port
// is the listener's.
func (a *abuseTarget) closeWait(pid int) int {
	n := 0
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue // no IPv6
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			fields := strings.Fields(line) // sl local rem st …
			if len(fields) < 4 || fields[0] == "sl" {
				continue
			}
			_, port, ok := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(port, 16, 32); ok && err == nil && int(p) == a.port && fields[3] == "08" {
				n++
			}
		}
	}
	return n
}

// peaks samples the server while an attack runs; stop returns the
// highest figures seen.
func (a *abuseTarget) peaks(t *testing.T) (stop func() procStats) {
	quit, done := make(chan struct{}), make(chan procStats)
	go func() {
		var peak procStats
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			s, err := a.measure(false)
			if err != nil {
				t.Errorf("sampling: %v", err)
			}
			peak.goroutines = max(peak.goroutines, s.goroutines)
			peak.fds = max(peak.fds, s.fds)
			peak.rss = max(peak.rss, s.rss)
			peak.heap = max(peak.heap, s.heap)
			peak.closeWait = max(peak.closeWait, s.closeWait)
			peak.conns = max(peak.conns, s.conns)
			select {
			case <-quit:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	var peak procStats
	stop = func() procStats {
		once.Do(func() {
			close(quit)
			peak = <-done
		})
		return peak
	}
	t.Cleanup(func() { stop() }) // when the test fails before it stops sampling
	return stop
}

// settle polls until the server is back to base (within the slacks) and
// the legitimate clients are its only connections, and fails past
// settleTimeout with what it last saw.
func (a *abuseTarget) settle(t *testing.T, base procStats) procStats {
	t.Helper()
	var s procStats
	for deadline := time.Now().Add(settleTimeout); ; time.Sleep(200 * time.Millisecond) {
		// Descriptors first, without forcing a collection: a socket
		// nobody closed is closed by its finalizer when a GC runs, and
		// a forced one would hide exactly the leak looked for here.
		s = a.stats(t, false)
		if s.goroutines <= base.goroutines+goroutineSlack && s.fds <= base.fds+fdSlack &&
			s.closeWait == 0 && s.conns == len(a.legit) {
			s = a.stats(t, true)
			if s.rss <= base.rss+rssAllowance() && s.heap <= base.heap+heapSlack {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("not back to baseline within %v:\nbaseline %v\nnow      %v", settleTimeout, base, s)
			return s
		}
	}
}

// logFigures logs the figures the abuse tests are judged by.
func logFigures(t *testing.T, base, peak, final procStats) {
	t.Logf("baseline %v", base)
	t.Logf("peak     %v", peak)
	t.Logf("after    %v", final)
}

// traffic keeps the legitimate clients busy: a publisher broadcasts
// "<tag>-<n>" every few milliseconds and each client checks that it
// receives every one, in order, by content. stop ends the publisher,
// broadcasts "<tag>-end", waits for every client to have read up to it,
// and returns how many were sent.
func (a *abuseTarget) traffic(t *testing.T, tag string) (stop func() int) {
	t.Helper()
	errs := make(chan error, len(a.legit))
	for i, c := range a.legit {
		go func() {
			for n := 0; ; n++ {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				_, b, err := c.Read(ctx)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("legit client %d after %d %s messages: %w", i, n, tag, err)
					return
				}
				if string(b) == fmt.Sprintf(`"%s-end"`, tag) {
					errs <- nil
					return
				}
				if want := fmt.Sprintf(`"%s-%d"`, tag, n); string(b) != want {
					errs <- fmt.Errorf("legit client %d: got %s, want %s", i, b, want)
					return
				}
			}
		}()
	}
	var sent atomic.Int64
	quit, published := make(chan struct{}), make(chan error, 1)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond) // pacing, not synchronisation
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-quit:
				published <- nil
				return
			case <-tick.C:
			}
			if err := a.broadcast(fmt.Sprintf("%s-%d", tag, n)); err != nil {
				published <- err
				return
			}
			sent.Add(1)
		}
	}()
	var once sync.Once
	return func() int {
		once.Do(func() {
			close(quit)
			if err := <-published; err != nil {
				t.Fatalf("publisher: %v", err)
			}
			if err := a.broadcast(tag + "-end"); err != nil {
				t.Fatalf("publisher: %v", err)
			}
			for range a.legit {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		})
		return int(sent.Load())
	}
}

// broadcast sends data (a string) to every connection, through the API.
func (a *abuseTarget) broadcast(data string) error {
	req, err := newAPIRequest("POST", a.p.URL+"/v1/broadcast", fmt.Sprintf(`{"data":%q}`, data))
	if err != nil {
		return err
	}
	resp, err := a.pub.Do(req)
	if err != nil {
		return fmt.Errorf("broadcast %s: %w", data, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("broadcast %s: %d %s", data, resp.StatusCode, b)
	}
	return nil
}

// runJobs runs n jobs on workers goroutines and returns the first error.
func runJobs(n, workers int, job func(i int) error) error {
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := job(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// signHS256 signs claims as a JWT with secret, bypassing the issuer's checks
// (it refuses to mint an already expired token).
func signHS256(secret, claims string) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(s))
	return s + "." + enc.EncodeToString(mac.Sum(nil))
}

// checkErrorShape checks that resp is the API's one JSON error shape
// with status and code.
func checkErrorShape(resp *http.Response, status int, code string) error {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != status {
		return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("Content-Type %q: %s", ct, b)
	}
	var e map[string]struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &e); err != nil || len(e) != 1 || e["error"].Code != code || e["error"].Message == "" {
		return fmt.Errorf("body %s is not {\"error\":{\"code\":%q,\"message\":…}} (%v)", b, code, err)
	}
	return nil
}

// closedByServer reads c until the server ends the connection and
// reports an error if it does not (within testTimeout) or sends more.
func closedByServer(c net.Conn, br *bufio.Reader) error {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	n, err := io.Copy(io.Discard, br)
	switch {
	case isDeadline(err):
		return fmt.Errorf("server kept the connection open for %v after its answer", testTimeout)
	case n > 0:
		return fmt.Errorf("server sent %d more bytes after its answer", n)
	}
	return nil // EOF or reset: closed
}

func isDeadline(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rawUpgrade is a WebSocket opening handshake for /ws with token in the
// query string or, with header, in Authorization.
func rawUpgrade(host, tok string, header bool) string {
	target, auth := "/ws?token="+url.QueryEscape(tok), ""
	if header {
		target, auth = "/ws", "Authorization: Bearer "+tok+"\r\n"
	}
	return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + auth +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// 5,000 WebSocket handshakes with bad tokens (garbage, expired, wrong
// signature, alg none), from 8 raw-TCP clients reusing each connection
// for up to 5 handshakes, while 3 legitimate clients receive every
// broadcast in order: each is refused with 401 and the JSON error, each
// refusal is counted under its kind, and the server is back to its
// baseline afterwards.
func TestAbuseBadTokens(t *testing.T) {
	a := startAbuseTarget(t)
	now := time.Now().Unix()
	wrong := signHS256("another-secret-0123456789abcdef0123", fmt.Sprintf(`{"sub":"u","iat":%d,"exp":%d}`, now, now+3600))
	expired := signHS256(testSecret, fmt.Sprintf(`{"sub":"u","iat":%d,"exp":%d}`, now-7200, now-3600))
	const algNone = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwfQ."
	bad := []struct{ kind, token string }{
		{token.KindMalformed, "garbage"},
		{token.KindMalformed, "a.b.c"},
		{token.KindMalformed, strings.Repeat("x", 600)},
		{token.KindExpired, expired},
		{token.KindBadSignature, wrong},
		{token.KindBadAlgorithm, algNone},
	}
	sent := map[string]int{}
	var mu sync.Mutex
	// attack sends n bad handshakes from workers clients, each on a new
	// connection: every refusal must say Connection: close and the server
	// must then end the connection, so that refused clients hold no idle
	// sockets.
	attack := func(n, workers int) error {
		conns := make([]net.Conn, workers)
		readers := make([]*bufio.Reader, workers)
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		per := (n + workers - 1) / workers
		return runJobs(workers, workers, func(w int) error { // one job per worker
			for j := range per {
				i := w*per + j
				if i >= n {
					return nil
				}
				if conns[w] == nil {
					c, err := net.Dial("tcp", a.addr())
					if err != nil {
						return err
					}
					conns[w], readers[w] = c, bufio.NewReader(c)
				}
				c, br := conns[w], readers[w]
				b := bad[i%len(bad)]
				c.SetDeadline(time.Now().Add(testTimeout))
				if _, err := io.WriteString(c, rawUpgrade(a.addr(), b.token, i%3 == 0)); err != nil {
					return fmt.Errorf("handshake %d: %w", i, err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return fmt.Errorf("handshake %d (%s): %w", i, b.kind, err)
				}
				err = checkErrorShape(resp, 401, "unauthorized")
				resp.Body.Close()
				if err != nil {
					return fmt.Errorf("handshake %d (%s): %w", i, b.kind, err)
				}
				if !resp.Close {
					return fmt.Errorf("handshake %d (%s): the refusal did not say Connection: close", i, b.kind)
				}
				if err := closedByServer(c, br); err != nil {
					return fmt.Errorf("handshake %d (%s): %w", i, b.kind, err)
				}
				mu.Lock()
				sent[b.kind]++
				mu.Unlock()
				c.Close()
				conns[w] = nil
			}
			return nil
		})
	}

	stop := a.traffic(t, "warm")
	if err := attack(60, 4); err != nil {
		t.Fatal(err)
	}
	stop()
	base := a.stats(t, true)
	before := a.metrics(t)

	stop = a.traffic(t, "bt")
	peak := a.peaks(t)
	start := time.Now()
	const n = 5000
	mu.Lock()
	clear(sent)
	mu.Unlock()
	if err := attack(n, 8); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	msgs := stop()
	top := peak()
	t.Logf("%d bad handshakes in %v; %d broadcasts received in order by each legit client meanwhile", n, took.Round(time.Millisecond), msgs)

	after := a.metrics(t)
	total := 0
	for kind, want := range sent {
		s := fmt.Sprintf(`herald_auth_failures_total{kind=%q}`, kind)
		got := int(mustScrapeSeries(t, after, s) - mustScrapeSeries(t, before, s))
		if got != want {
			t.Errorf("%s grew by %d, want %d", s, got, want)
		}
		total += got
	}
	if total < n {
		t.Errorf("herald_auth_failures_total grew by %d over the kinds, want ≥ %d", total, n)
	}
	logFigures(t, base, top, a.settle(t, base))
}

// 1,000 slowloris connections with HERALD_HANDSHAKE_TIMEOUT=1s, each
// stalling its request in one of three places: within the request line,
// within a header line, or after a complete header line; the first two
// keep trickling a byte every 300 ms, which must not extend the timeout.
// The server closes every one of them (the client sees EOF or a reset,
// after net/http's plain-text 400 when it had half a line), a new
// legitimate client connects and receives while they are held, the 3
// legitimate clients receive every broadcast in order, and the server
// is back to its baseline afterwards.
func TestAbuseSlowloris(t *testing.T) {
	a := startAbuseTarget(t, "HERALD_HANDSHAKE_TIMEOUT", "1s")
	line := "GET /ws?token=" + a.p.token(t, "slowloris") + " HTTP/1.1\r\n"
	stalls := []struct {
		sent, trickle string
	}{
		{line[:12], line[12:]},
		{line + "Host: " + a.addr() + "\r\nX-Slow: ", strings.Repeat("a", 1<<10)},
		{line + "Host: " + a.addr() + "\r\n", ""},
	}
	var answered atomic.Int64 // closes that came after a 400
	// slow sends c a request that stalls as stalls[i%3] does and waits
	// until the server closes c.
	slow := func(c net.Conn, i int) error {
		st := stalls[i%len(stalls)]
		if _, err := io.WriteString(c, st.sent); err != nil {
			return nil // closed already
		}
		rest := st.trickle
		var got []byte
		buf := make([]byte, 512)
		for deadline := time.Now().Add(30 * time.Second); ; {
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			switch {
			case err == nil:
				continue // read on to the close
			case !isDeadline(err):
				// EOF or reset: closed by the server. What it may say
				// first is net/http's refusal of a half-read line.
				if len(got) > 0 {
					if !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
						return fmt.Errorf("server answered a request that never ended with %q", got)
					}
					answered.Add(1)
				}
				return nil
			case time.Now().After(deadline):
				return fmt.Errorf("server held a request that never ended for 30s (got %q)", got)
			}
			if rest == "" {
				continue
			}
			if _, err := io.WriteString(c, rest[:1]); err != nil {
				return nil // closed by the server: the write met its reset
			}
			rest = rest[1:]
		}
	}
	var open atomic.Int64 // slow connections established and not yet closed
	// attack holds n slow connections at once, dialled 100 at a time;
	// dialled is closed when all are established, done says how they
	// ended. (Go raises the soft RLIMIT_NOFILE to the hard limit at
	// start-up, in this process and the server's, so 1,000 sockets
	// need no Setrlimit here.)
	attack := func(n int) (dialled <-chan struct{}, done <-chan error) {
		dialledc, donec := make(chan struct{}), make(chan error, 1)
		var dials, ends sync.WaitGroup
		sem := make(chan struct{}, 100)
		errs := make(chan error, n)
		for i := range n {
			dials.Add(1)
			ends.Go(func() {
				sem <- struct{}{}
				c, err := net.Dial("tcp", a.addr())
				<-sem
				if err != nil {
					dials.Done()
					errs <- fmt.Errorf("dial: %w", err)
					return
				}
				defer c.Close()
				open.Add(1)
				dials.Done()
				err = slow(c, i)
				open.Add(-1)
				errs <- err
			})
		}
		go func() { dials.Wait(); close(dialledc) }()
		go func() {
			ends.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					donec <- err
					return
				}
			}
			donec <- nil
		}()
		return dialledc, donec
	}

	stop := a.traffic(t, "warm")
	_, done := attack(20)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stop()
	base := a.stats(t, true)

	stop = a.traffic(t, "sl")
	peak := a.peaks(t)
	start := time.Now()
	const n = 1000
	dialled, done := attack(n)
	// A newcomer connects and receives while the attack holds its
	// sockets: once half of them are open at once, or all are dialled.
wait:
	for open.Load() < n/2 {
		select {
		case <-dialled:
			break wait
		case <-time.After(10 * time.Millisecond):
		}
	}
	held := open.Load()
	late := a.p.dial(t, "late")
	if status, body := a.p.api(t, "POST", "/v1/users/late/messages", `"welcome"`); status != 200 {
		t.Fatalf("publish to the newcomer: %d %s", status, body)
	}
	for {
		_, b := read(t, late)
		if string(b) == `"welcome"` {
			break
		}
		if !strings.HasPrefix(string(b), `"sl-`) { // broadcasts reach it too
			t.Fatalf("newcomer got %s", b)
		}
	}
	t.Logf("a newcomer connected and received with %d slow connections open", held)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// The newcomer is not part of the baseline: it leaves (its close
	// handshake reads past the broadcasts still coming).
	late.Close(websocket.StatusNormalClosure, "")
	msgs := stop()
	top := peak()
	t.Logf("%d slowloris connections closed by the server in %v (%d after a 400); %d broadcasts received in order by each legit client meanwhile", n, took.Round(time.Millisecond), answered.Load(), msgs)
	logFigures(t, base, top, a.settle(t, base))
}

// 1,000 malformed WebSocket upgrades with a valid token, each on its own
// connection — a Sec-WebSocket-Key that is no nonce, a version other than
// 13, HTTP/1.0, Connection without upgrade, no Upgrade at all — while 3
// legitimate clients receive every broadcast in order: each gets the
// documented JSON error (400 invalid_request, or 426 upgrade_required
// with Sec-WebSocket-Version: 13), the server closes each connection
// after its answer, and its descriptors return to baseline with no
// socket left in CLOSE_WAIT. (Before the handshake was checked before
// the take-over, refused upgrades left their sockets in CLOSE_WAIT.)
func TestAbuseMalformedUpgrades(t *testing.T) {
	a := startAbuseTarget(t)
	tok := a.p.token(t, "malformed")
	host := a.addr()
	req := func(proto string, headers ...string) string {
		return "GET /ws?token=" + tok + " " + proto + "\r\nHost: " + host + "\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n"
	}
	const key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
	cases := []struct {
		name, request string
		status        int
		code          string
	}{
		{"key not base64", req("HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: not a nonce!", "Sec-WebSocket-Version: 13"), 400, "invalid_request"},
		{"key of 15 bytes", req("HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: "+base64.StdEncoding.EncodeToString(make([]byte, 15)), "Sec-WebSocket-Version: 13"), 400, "invalid_request"},
		{"no key", req("HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"), 400, "invalid_request"},
		{"version 8", req("HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", key, "Sec-WebSocket-Version: 8"), 426, "upgrade_required"},
		{"HTTP/1.0", req("HTTP/1.0", "Upgrade: websocket", "Connection: Upgrade", key, "Sec-WebSocket-Version: 13"), 400, "invalid_request"},
		{"Connection without upgrade", req("HTTP/1.1", "Upgrade: websocket", "Connection: keep-alive", key, "Sec-WebSocket-Version: 13"), 400, "invalid_request"},
		{"no Upgrade", req("HTTP/1.1", "Connection: Upgrade", key, "Sec-WebSocket-Version: 13"), 400, "invalid_request"},
	}
	// attack sends n malformed upgrades, cycling through cases, from
	// workers clients, one connection each.
	attack := func(n, workers int) error {
		return runJobs(n, workers, func(i int) error {
			tc := cases[i%len(cases)]
			c, err := net.Dial("tcp", host)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			if _, err := io.WriteString(c, tc.request); err != nil {
				return fmt.Errorf("%s: %w", tc.name, err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", tc.name, err)
			}
			err = checkErrorShape(resp, tc.status, tc.code)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", tc.name, err)
			}
			if tc.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				return fmt.Errorf("%s: 426 without Sec-WebSocket-Version: 13: %v", tc.name, resp.Header)
			}
			if err := closedByServer(c, br); err != nil {
				return fmt.Errorf("%s: %w", tc.name, err)
			}
			return nil
		})
	}

	stop := a.traffic(t, "warm")
	if err := attack(len(cases)*3, 4); err != nil {
		t.Fatal(err)
	}
	stop()
	base := a.stats(t, true)

	stop = a.traffic(t, "mu")
	peak := a.peaks(t)
	start := time.Now()
	const n = 1000
	if err := attack(n, 8); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	msgs := stop()
	top := peak()
	t.Logf("%d malformed upgrades refused and closed in %v; %d broadcasts received in order by each legit client meanwhile", n, took.Round(time.Millisecond), msgs)
	logFigures(t, base, top, a.settle(t, base))
}
