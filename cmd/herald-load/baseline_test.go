package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// startTestBaseline serves the baseline in-process and returns its base URL.
func startTestBaseline(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveBaseline(ctx, "127.0.0.1:0", pw) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveBaseline: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	_, addr, ok := strings.Cut(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	return addr
}

func baselineBroadcast(t *testing.T, base, body string) (int, int) {
	t.Helper()
	resp, err := http.Post(base+"/v1/broadcast", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Connections int `json:"connections"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, r.Connections
}

// The baseline accepts any token, writes the data bytes as one text frame
// to every connection, replies with the count, and forgets connections
// whose writes fail.
func TestBaselineServer(t *testing.T) {
	base := startTestBaseline(t)
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws?token=anything"
	const n = 7
	conns := make([]net.Conn, n)
	for i := range conns {
		c, _, _, err := ws.Dial(context.Background(), wsURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	// The upgrade handler appends after the handshake reply: wait until
	// every connection is in the slice (a count, polled, not a timing).
	for i := 0; ; i++ {
		if _, got := baselineBroadcast(t, base, `{"data":"warm-up"}`); got == n {
			break
		}
		if i == 100 {
			t.Fatal("connections never all registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	status, got := baselineBroadcast(t, base, `{"data":{"t":1,"seq":1}}`)
	if status != http.StatusOK || got != n {
		t.Fatalf("status %d connections %d, want 200 and %d", status, got, n)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			p, op, err := wsutil.ReadServerData(c)
			if err != nil {
				t.Fatalf("conn %d: %v", i, err)
			}
			if string(p) == `"warm-up"` {
				continue // a later warm-up broadcast
			}
			if op != ws.OpText || string(p) != `{"t":1,"seq":1}` {
				t.Fatalf("conn %d: op %v payload %q", i, op, p)
			}
			break
		}
	}

	// Clients that leave are dropped by the first write that fails (the
	// first write after a close may still succeed: TCP learns later).
	conns[0].Close()
	conns[1].Close()
	for i := 0; ; i++ {
		if _, got := baselineBroadcast(t, base, `{"data":1}`); got == n-2 {
			break
		}
		if i == 100 {
			t.Fatalf("closed connections still counted after %d broadcasts", i)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, body := range []string{`{}`, `not json`, `{"data":}`} {
		if status, _ := baselineBroadcast(t, base, body); status != http.StatusBadRequest {
			t.Errorf("body %q: status %d, want 400", body, status)
		}
	}
}

// A worker's SSE connections against the baseline server: dialed,
// read, and given a broadcast, over both client I/O modes.
func TestSSEWorkerAgainstBaseline(t *testing.T) {
	for _, mode := range []string{"goroutine", "epoll"} {
		if mode == "epoll" && !pollSupported {
			continue
		}
		t.Run(mode, func(t *testing.T) {
			// A baseline per mode: one shared would still count the first
			// mode's closed streams until a write to them failed, and
			// the warm-up below would stop too early.
			base := startTestBaseline(t)
			const n = 5
			w, err := newWorker(workerSpec{
				Count: n, Rate: 1000, DialConcurrency: n, DialTimeout: 10 * time.Second, IO: mode,
				Transport: "sse", URL: base + "/sse", Secret: e2eSecret, Users: n, UserPrefix: "u", TokenTTL: time.Hour,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if w.poll != nil {
				done := make(chan struct{})
				go func() { w.poll.run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
			}
			defer w.closeAll()
			for i := range n {
				if !w.connectOne(ctx, i, connFirst) {
					t.Fatalf("connect %d: %v", i, w.errs)
				}
			}
			// The baseline registers a stream after writing its head: poll
			// the count it reports (a count, not a timing).
			for i := 0; ; i++ {
				if _, got := baselineBroadcast(t, base, `{"data":"warm-up"}`); got >= n {
					break
				}
				if i == 100 {
					t.Fatal("streams never all registered")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if status, got := baselineBroadcast(t, base, `{"data":{"t":5,"seq":1}}`); status != 200 || got < n {
				t.Fatalf("status %d connections %d", status, got)
			}
			for i := 0; w.delivered.Load() < n; i++ {
				if i == 1000 {
					t.Fatalf("delivered %d of %d; errors %v", w.delivered.Load(), n, w.errs)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if w.dropped.Load() != 0 || w.badFrames.Load() != 0 || w.open.Load() != n {
				t.Fatalf("dropped %d bad %d open %d %v", w.dropped.Load(), w.badFrames.Load(), w.open.Load(), w.errs)
			}
			// Closed from our side: no drop.
			if w.closeAll() != n || w.open.Load() != 0 || w.dropped.Load() != 0 {
				t.Fatalf("open %d dropped %d", w.open.Load(), w.dropped.Load())
			}
		})
	}
}

// The baseline's SSE event splits data at line breaks, and the client's
// parser joins the lines again.
func TestSSEDataEvent(t *testing.T) {
	for in, want := range map[string]string{
		`{"t":1,"seq":2}`: "data: {\"t\":1,\"seq\":2}\n\n",
		"a\nb\r\nc\rd":    "data: a\ndata: b\ndata: c\ndata: d\n\n",
		"":                "data: \n\n",
	} {
		got := sseDataEvent([]byte(in))
		if string(got) != want {
			t.Errorf("sseDataEvent(%q) = %q, want %q", in, got, want)
		}
		ev, size, ok := parseEvent(got)
		if !ok || size != len(got) || !ev.hasData || string(ev.data) != strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(in) {
			t.Errorf("%q parsed back as %q (ok %v size %d)", got, ev.data, ok, size)
		}
	}
}
