package sse

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-gw/herald"
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

// serve runs the SSE handler behind a real HTTP server.
func serve(t *testing.T, cfg session.Config) (*httptest.Server, *hub.Hub, *token.Issuer) {
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
	sh := New(Config{}, sm, iss, log)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
// and ends with a close event when the session is closed.
func TestStream(t *testing.T) {
	srv, h, iss := serve(t, session.Config{})
	tok, _ := iss.Mint("u", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/sse?token="+tok, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
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
	if ev := readEvent(); !strings.HasPrefix(ev, "event: connected\ndata: {\"type\":\"connected\",\"connection_id\":") {
		t.Fatalf("second block %q", ev)
	}
	for h.Len() != 1 {
		time.Sleep(time.Millisecond)
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
