package sse

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/gateway"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

func TestResumePoint(t *testing.T) {
	cases := []struct {
		name, query, lastEventID string
		want                     *session.Resume
		wantErr                  bool
	}{
		{"none", "", "", nil, false},
		{"query", "since=7&epoch=e", "", &session.Resume{Since: 7, Epoch: "e"}, false},
		{"query without epoch", "since=0", "", &session.Resume{Since: 0}, false},
		{"header wins", "since=1&epoch=old", "new:9", &session.Resume{Since: 9, Epoch: "new"}, false},
		{"bad since", "since=x", "", nil, true},
		{"header without colon", "", "9", nil, true},
		{"header with bad offset", "", "e:-1", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/sse?"+tc.query, nil)
			if tc.lastEventID != "" {
				r.Header.Set("Last-Event-ID", tc.lastEventID)
			}
			got, err := resumePoint(r)
			switch {
			case tc.wantErr:
				if herald.ErrorCodeOf(err) != herald.EInvalidRequest {
					t.Fatalf("err %v, want invalid_request", err)
				}
			case err != nil:
				t.Fatal(err)
			case (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want:
				t.Fatalf("resume %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Ways a stream is carried, for the tests that run over each.
const (
	viaEpoll     = "hijack/epoll"     // taken over, the gateway's epoll loop reads it
	viaGoroutine = "hijack/goroutine" // taken over, a gateway goroutine reads it
	viaHTTP      = "net/http"         // the ResponseWriter cannot hijack (as on HTTP/2)
)

func ways() []string {
	if runtime.GOOS != "linux" {
		return []string{viaGoroutine, viaHTTP}
	}
	return []string{viaEpoll, viaGoroutine, viaHTTP}
}

// noHijack is a ResponseWriter that streams but cannot be taken over, as
// net/http's HTTP/2 one: what http.ResponseController finds on it is
// flushing and deadlines, no Hijack.
type noHijack struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (w noHijack) FlushError() error                  { return w.rc.Flush() }
func (w noHijack) SetReadDeadline(t time.Time) error  { return w.rc.SetReadDeadline(t) }
func (w noHijack) SetWriteDeadline(t time.Time) error { return w.rc.SetWriteDeadline(t) }

// serve runs the SSE handler behind a real HTTP server, carrying streams
// the given way. Like api's CORS middleware, the server sets a header
// before the handler runs: it must reach the client whichever way.
func serve(t *testing.T, cfg session.Config, way string) (*httptest.Server, *hub.Hub, *token.Issuer) {
	t.Helper()
	iss, err := token.NewIssuer([]byte("test-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	h := hub.New(0)
	log := slog.New(slog.DiscardHandler)
	sm := session.NewManager(cfg, h, store, iss, log)
	// A gateway in every case: the net/http way is the fallback of a
	// handler that has one but meets a ResponseWriter it cannot take over.
	io := gateway.IOEpoll
	if way != viaEpoll {
		io = gateway.IOGoroutine
	}
	g, err := gateway.New(gateway.Config{IO: io}, sm, iss, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go g.Run(ctx)
	sh := New(Config{Gateway: g}, sm, iss, log)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "https://app.example")
		if way == viaHTTP {
			w = noHijack{w, http.NewResponseController(w)}
		}
		claims, err := sh.Authenticate(r)
		if err == nil {
			err = sh.Serve(w, r, claims)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, h, iss
}

// A stream opens with retry and connected, carries what the hub sends,
// and ends with a close event when the session is closed. Taken over, it
// is close-delimited; through net/http, chunked as net/http does.
func TestStream(t *testing.T) {
	for _, way := range ways() {
		t.Run(way, func(t *testing.T) { testStream(t, way) })
	}
}

func testStream(t *testing.T, way string) {
	srv, h, iss := serve(t, session.Config{}, way)
	tok, _ := iss.Mint("u", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/sse?token="+tok, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type":                "text/event-stream",
		"Cache-Control":               "no-store",
		"X-Accel-Buffering":           "no",
		"Access-Control-Allow-Origin": "https://app.example",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Fatalf("%s: %q, want %q", k, got, want)
		}
	}
	if way == viaHTTP {
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("through net/http: Transfer-Encoding %v, want chunked", resp.TransferEncoding)
		}
	} else if len(resp.TransferEncoding) != 0 || resp.ContentLength != -1 || !resp.Close || resp.Header.Get("Date") == "" {
		t.Fatalf("taken over: Transfer-Encoding %v, Content-Length %d, Close %v, Date %q; want a close-delimited response with a date",
			resp.TransferEncoding, resp.ContentLength, resp.Close, resp.Header.Get("Date"))
	}
	br := bufio.NewReader(resp.Body)
	readEvent := func() string {
		t.Helper()
		var b strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, b.String())
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	if ev := readEvent(); ev != "retry: 2000\n" {
		t.Fatalf("first block %q", ev)
	}
	for i := 0; h.Len() != 1; i++ {
		if i == 20000 {
			t.Fatal("the session never joined the hub")
		}
		time.Sleep(time.Millisecond)
	}
	id := h.UserConns("u")[0].ID()
	if ev := readEvent(); !strings.HasPrefix(ev, "event: connected\ndata: {\"type\":\"connected\",\"connection_id\":\""+string(id)+"\"") {
		t.Fatalf("second block %q, want connected for %s", ev, id)
	}
	h.SendUser(&herald.Message{ID: "m", User: "u", Offset: 1, Epoch: "e", Data: []byte(`{"a":1}`)})
	if ev := readEvent(); !strings.HasPrefix(ev, "id: e:1\ndata: {\"type\":\"message\"") {
		t.Fatalf("message block %q", ev)
	}
	h.CloseUser("u", wire.CloseDisconnected, "disconnected by the server")
	if ev := readEvent(); ev != "event: close\ndata: {\"type\":\"close\",\"code\":4003,\"reason\":\"disconnected by the server\"}\n" {
		t.Fatalf("close block %q", ev)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the stream went on after the close event")
	}
}

// Refusals come before anything is streamed, as JSON errors the caller
// writes, whichever way the stream would have been carried; a refused
// stream holds no connection slot.
func TestRefusedBeforeStreaming(t *testing.T) {
	for _, way := range ways() {
		t.Run(way, func(t *testing.T) {
			srv, h, iss := serve(t, session.Config{}, way)
			tok, _ := iss.Mint("u", time.Hour)
			resp, err := http.Get(srv.URL + "/sse?since=x&token=" + tok)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || h.Len() != 0 {
				t.Fatalf("bad since: %d, %d in the hub", resp.StatusCode, h.Len())
			}
		})
	}
}

// A stream whose queue overflows is closed with 4008, and the close event
// goes out past the bound: it is the last thing the client gets.
func TestSlowConsumer(t *testing.T) {
	sm := session.NewManager(session.Config{MaxQueueFrames: 3}, hub.New(0), memory.New(), nil, slog.New(slog.DiscardHandler))
	c := &conn{h: &Handler{sessions: sm}, wake: make(chan struct{}, 1)}
	for i := range 3 {
		if !c.Write([]byte("data: x\n\n")) {
			t.Fatalf("write %d refused below the bound", i)
		}
	}
	if c.Write([]byte("data: x\n\n")) {
		t.Fatal("write past the bound accepted")
	}
	last := string(c.queue[len(c.queue)-1])
	if !strings.Contains(last, `"code":4008`) || !strings.HasPrefix(last, "event: close\n") {
		t.Fatalf("last queued %q", last)
	}
	if c.Write([]byte("data: y\n\n")) {
		t.Fatal("write after the close accepted")
	}
}
