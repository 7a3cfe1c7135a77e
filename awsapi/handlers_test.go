package awsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/api"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/wire"
)

// testConn is a raw connection in the hub: it records what it was sent
// and how it was closed.
type testConn struct {
	mu     sync.Mutex
	sent   [][]byte
	closed uint16
}

func (c *testConn) ID() herald.ConnID   { return "c1" }
func (c *testConn) User() herald.UserID { return "alice" }
func (c *testConn) Format() wire.Format { return wire.FormatRaw }
func (c *testConn) Acked() uint64       { return 0 }
func (c *testConn) Info() herald.ConnInfo {
	t := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	return herald.ConnInfo{ID: "c1", User: "alice", ConnectedAt: t, LastActiveAt: t, SourceIP: "203.0.113.7", UserAgent: "test"}
}

func (c *testConn) Send(b []byte, _ uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, b)
	return true
}

func (c *testConn) Close(code uint16, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = code
}

func (c *testConn) closedWith() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// The server API's keys as cmd/herald builds them: the legacy key (admin)
// and named keys.
const (
	legacyKey = "legacy-key"
	connsKey  = "connections-0123456789"
	sendKey   = "publish-0123456789ab"
)

func testKeys(t *testing.T) *api.KeySet {
	t.Helper()
	keys, err := api.Config{APIKey: legacyKey, APIKeys: []api.APIKey{
		{Name: "ops", Secret: connsKey, Scopes: []api.Scope{api.ScopeConnections}},
		{Name: "sender", Secret: sendKey, Scopes: []api.Scope{api.ScopePublish}},
	}}.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// serve runs the handlers on a real HTTP server, routed as the API
// routes them, over a hub holding one connection, c1.
func serve(t *testing.T, creds Credentials, keys APIKeys) (*httptest.Server, *testConn) {
	t.Helper()
	h := hub.New(0)
	c := &testConn{}
	h.Add(c)
	aws := NewWithKeys(h, slog.New(slog.DiscardHandler), creds, keys)
	mux := http.NewServeMux()
	for _, p := range []string{"/@connections/{id}", "/{stage}/@connections/{id}"} {
		mux.Handle("POST "+p, aws.PostToConnection())
		mux.Handle("GET "+p, aws.GetConnection())
		mux.Handle("DELETE "+p, aws.DeleteConnection())
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, c
}

// The Bearer alternative to SigV4 takes an API key with the connections
// scope (or admin); a key without it is refused in AWS's shape, naming
// the scope; an unknown one is refused like a bad signature.
func TestBearerKeys(t *testing.T) {
	for _, c := range []struct {
		name    string
		creds   Credentials
		keys    bool // whether New gets the key set
		auth    string
		status  int
		message string // part of the error message
	}{
		{"connections key", testCreds, true, "Bearer " + connsKey, 200, ""},
		{"legacy key (admin)", Credentials{}, true, "Bearer " + legacyKey, 200, ""},
		{"scheme in any case", Credentials{}, true, "bearer " + connsKey, 200, ""},
		{"key without the scope", testCreds, true, "Bearer " + sendKey, 403, `API key "sender" lacks the connections scope`},
		{"unknown key", testCreds, true, "Bearer nope", 403, "forbidden"},
		{"unknown key, no SigV4", Credentials{}, true, "Bearer nope", 403, "SigV4 is not configured"},
		{"no credentials", testCreds, true, "", 403, "forbidden"},
		{"no key set", testCreds, false, "Bearer " + connsKey, 403, "forbidden"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var keys APIKeys
			if c.keys {
				keys = testKeys(t)
			}
			srv, _ := serve(t, c.creds, keys)
			req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/@connections/c1", nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, c.status, body)
			}
			if c.status == 200 {
				return
			}
			var e struct{ Message string }
			if err := json.Unmarshal(body, &e); err != nil || res.Header.Get("X-Amzn-ErrorType") != "ForbiddenException" {
				t.Fatalf("not AWS's error shape (%v): %s %s", err, res.Header.Get("X-Amzn-ErrorType"), body)
			}
			if !strings.Contains(e.Message, c.message) {
				t.Errorf("message %q, want one containing %q", e.Message, c.message)
			}
		})
	}
}

// SigV4 works as before when keys are given too: the unmodified SDK
// client posts to, describes and deletes a connection.
func TestSigV4WithKeys(t *testing.T) {
	srv, conn := serve(t, testCreds, testKeys(t))
	client := newClient(srv.URL+"/prod", testCreds)
	ctx := context.Background()
	if _, err := client.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String("c1"), Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatalf("PostToConnection: %v", err)
	}
	conn.mu.Lock()
	sent := conn.sent
	conn.mu.Unlock()
	// A raw connection is handed the frame: a header, then the body.
	if len(sent) != 1 || !bytes.HasSuffix(sent[0], []byte(`{"n":1}`)) {
		t.Errorf("the connection got %q, want one frame of the body", sent)
	}
	out, err := client.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String("c1")})
	if err != nil || out.Identity == nil || aws.ToString(out.Identity.SourceIp) != "203.0.113.7" {
		t.Fatalf("GetConnection: %+v, %v", out, err)
	}
	if _, err := client.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String("c1")}); err != nil {
		t.Fatalf("DeleteConnection: %v", err)
	}
	if got := conn.closedWith(); got != wire.CloseDisconnected {
		t.Errorf("closed with %d, want %d", got, wire.CloseDisconnected)
	}
	// A wrong secret is still refused.
	bad := newClient(srv.URL, Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: "wrong"})
	if _, err := bad.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String("c1")}); err == nil {
		t.Error("a wrong SigV4 secret was accepted")
	}
}

// New, kept until cmd/herald moves to NewWithKeys, still takes the one
// key of old.
func TestNewWithTheSingleKey(t *testing.T) {
	h := hub.New(0)
	h.Add(&testConn{})
	aws := New(h, slog.New(slog.DiscardHandler), Credentials{}, legacyKey)
	for _, c := range []struct {
		auth   string
		status int
	}{
		{"Bearer " + legacyKey, 200},
		{"Bearer " + connsKey, 403},
		{"", 403},
	} {
		req := httptest.NewRequest("GET", "/@connections/c1", nil)
		req.SetPathValue("id", "c1")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		aws.GetConnection().ServeHTTP(w, req)
		if w.Code != c.status {
			t.Errorf("%q: status %d, want %d", c.auth, w.Code, c.status)
		}
	}
	empty := New(h, slog.New(slog.DiscardHandler), Credentials{}, "")
	req := httptest.NewRequest("GET", "/@connections/c1", nil)
	req.SetPathValue("id", "c1")
	req.Header.Set("Authorization", "Bearer ")
	w := httptest.NewRecorder()
	empty.GetConnection().ServeHTTP(w, req)
	if w.Code != 403 {
		t.Errorf("an empty key matched an empty bearer: %d", w.Code)
	}
}
