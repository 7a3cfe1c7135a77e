package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testKey = "test-key"

// reply is one canned answer of a fakeHerald.
type reply struct {
	status int
	body   string
	header map[string]string
	hangup bool // close the connection without answering
}

func ok(body string) reply { return reply{status: http.StatusOK, body: body} }

func apiError(status int, code, msg string) reply {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return reply{status: status, body: string(b)}
}

// request is what a fakeHerald saw.
type request struct {
	method string
	path   string // escaped, as sent
	user   string // the {user} path segment, unescaped, as Herald's router sees it
	header http.Header
	body   string
}

// fakeHerald is a real HTTP server that records requests and answers them
// with replies in order, repeating the last one.
type fakeHerald struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []request
	replies []reply
}

func newFake(t *testing.T, replies ...reply) *fakeHerald {
	t.Helper()
	f := &fakeHerald{replies: replies}
	mux := http.NewServeMux()
	mux.HandleFunc("/", f.serve)
	mux.HandleFunc("/v1/users/{user}/", f.serve)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHerald) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, request{
		method: r.Method,
		path:   r.URL.EscapedPath(),
		user:   r.PathValue("user"),
		header: r.Header.Clone(),
		body:   string(body),
	})
	rep := reply{status: http.StatusOK, body: "{}"}
	if len(f.replies) > 0 {
		rep = f.replies[min(len(f.reqs), len(f.replies))-1]
	}
	f.mu.Unlock()

	if rep.hangup {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (f *fakeHerald) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// newClient returns a Client for f with backoffs small enough for tests;
// opts come after them and may override them.
func newClient(t *testing.T, baseURL string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithBackoff(time.Millisecond, 2*time.Millisecond)}, opts...)
	c, err := New(baseURL, testKey, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", baseURL, err)
	}
	return c
}

// checkHeaders verifies the headers every request must carry.
func checkHeaders(t *testing.T, r request) {
	t.Helper()
	if got := r.header.Get("Authorization"); got != "Bearer "+testKey {
		t.Errorf("Authorization = %q, want %q", got, "Bearer "+testKey)
	}
	if got := r.header.Get("User-Agent"); !strings.HasPrefix(got, "herald-go/") {
		t.Errorf("User-Agent = %q, want herald-go/<version>", got)
	}
	wantCT := ""
	if r.body != "" {
		wantCT = "application/json"
	}
	if got := r.header.Get("Content-Type"); got != wantCT {
		t.Errorf("Content-Type = %q, want %q", got, wantCT)
	}
}

func TestMethods(t *testing.T) {
	connectedAt := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	lastActive := time.Date(2025, 3, 1, 12, 5, 30, 0, time.UTC)

	tests := []struct {
		name       string
		call       func(context.Context, *Client) (any, error)
		reply      reply
		wantMethod string
		wantPath   string
		wantUser   string // {user} as the server's router decodes it
		wantBody   string // exact bytes; "" for no body
		want       any
	}{
		{
			name: "Notify",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Notify(ctx, "42", map[string]string{"message": "hi"})
			},
			// Fields Herald may add later are ignored.
			reply:      ok(`{"user_id":"42","connections":2,"id":"m1","offset":17,"failed":[{"id":"c1","error":"gone"}]}`),
			wantMethod: "POST",
			wantPath:   "/v1/users/42/messages",
			wantUser:   "42",
			wantBody:   `{"message":"hi"}`,
			want:       &Delivery{UserID: "42", Connections: 2, ID: "m1", Offset: 17},
		},
		{
			name: "Notify user with space",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Notify(ctx, "a b", json.RawMessage(`1`))
			},
			reply:      ok(`{"user_id":"a b","connections":1}`),
			wantMethod: "POST",
			wantPath:   "/v1/users/a%20b/messages",
			wantUser:   "a b",
			wantBody:   `1`,
			want:       &Delivery{UserID: "a b", Connections: 1},
		},
		{
			name: "Notify user with slash",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Notify(ctx, "x/y", json.RawMessage(`true`))
			},
			reply:      ok(`{"user_id":"x/y","connections":0}`),
			wantMethod: "POST",
			wantPath:   "/v1/users/x%2Fy/messages",
			wantUser:   "x/y",
			wantBody:   `true`,
			want:       &Delivery{UserID: "x/y", Connections: 0},
		},
		{
			name: "NotifyJSON",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.NotifyJSON(ctx, "42", `{"message":"hi <3"}`)
			},
			reply:      ok(`{"user_id":"42","connections":3}`),
			wantMethod: "POST",
			wantPath:   "/v1/notify",
			wantBody:   `{"user_id":"42","json":"{\"message\":\"hi <3\"}"}`,
			want:       &Delivery{UserID: "42", Connections: 3},
		},
		{
			name: "NotifyJSON not JSON",
			call: func(ctx context.Context, c *Client) (any, error) {
				// Herald delivers the string as is, as the Lambda did.
				return c.NotifyJSON(ctx, "x/y", "plain text")
			},
			reply:      ok(`{"user_id":"x/y","connections":1}`),
			wantMethod: "POST",
			wantPath:   "/v1/notify",
			wantBody:   `{"user_id":"x/y","json":"plain text"}`,
			want:       &Delivery{UserID: "x/y", Connections: 1},
		},
		{
			name: "NotifyUsers",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.NotifyUsers(ctx, []string{"1", "a b"}, json.RawMessage(`{"k": [1, 2]}`))
			},
			reply:      ok(`{"users":[{"user_id":"1","connections":2},{"user_id":"a b","connections":0}],"connections":2}`),
			wantMethod: "POST",
			wantPath:   "/v1/messages",
			wantBody:   `{"users":["1","a b"],"data":{"k": [1, 2]}}`,
			want: &MultiDelivery{
				Users:       []Delivery{{UserID: "1", Connections: 2}, {UserID: "a b", Connections: 0}},
				Connections: 2,
			},
		},
		{
			name: "Broadcast",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Broadcast(ctx, map[string]string{"html": "<b>maintenance</b>"})
			},
			reply:      ok(`{"connections":5}`),
			wantMethod: "POST",
			wantPath:   "/v1/broadcast",
			wantBody:   `{"data":{"html":"<b>maintenance</b>"}}`,
			want:       &BroadcastResult{Connections: 5},
		},
		{
			name: "Connections",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Connections(ctx, "x/y")
			},
			reply: ok(`{"connections":[{"id":"c1","user_id":"x/y","protocol":"herald.v1",` +
				`"connected_at":"2025-03-01T12:00:00Z","last_active_at":"2025-03-01T12:05:30Z",` +
				`"source_ip":"203.0.113.7","user_agent":"Mozilla/5.0","region":"eu"}]}`),
			wantMethod: "GET",
			wantPath:   "/v1/users/x%2Fy/connections",
			wantUser:   "x/y",
			want: []Connection{{
				ID: "c1", UserID: "x/y", Protocol: "herald.v1",
				ConnectedAt: connectedAt, LastActiveAt: lastActive,
				SourceIP: "203.0.113.7", UserAgent: "Mozilla/5.0",
			}},
		},
		{
			name: "Connections none",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Connections(ctx, "42")
			},
			reply:      ok(`{"connections":[]}`),
			wantMethod: "GET",
			wantPath:   "/v1/users/42/connections",
			wantUser:   "42",
			want:       []Connection{},
		},
		{
			name: "Disconnect",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Disconnect(ctx, "a b")
			},
			reply:      ok(`{"user_id":"a b","closed":3}`),
			wantMethod: "DELETE",
			wantPath:   "/v1/users/a%20b/connections",
			wantUser:   "a b",
			want:       3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.reply)
			c := newClient(t, f.srv.URL)
			got, err := tt.call(t.Context(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("result = %#v, want %#v", got, tt.want)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.method != tt.wantMethod || r.path != tt.wantPath {
				t.Errorf("request = %s %s, want %s %s", r.method, r.path, tt.wantMethod, tt.wantPath)
			}
			if r.user != tt.wantUser {
				t.Errorf("router saw user %q, want %q", r.user, tt.wantUser)
			}
			if r.body != tt.wantBody {
				t.Errorf("body = %s, want %s", r.body, tt.wantBody)
			}
			checkHeaders(t, r)
		})
	}
}

func TestNotifyPayload(t *testing.T) {
	type note struct {
		Message string `json:"message"`
		Count   int    `json:"count,omitempty"`
	}
	tests := []struct {
		name     string
		payload  any
		wantBody string
	}{
		{"struct", note{Message: "hi", Count: 2}, `{"message":"hi","count":2}`},
		{"pointer to struct", &note{Message: "hi"}, `{"message":"hi"}`},
		{"map", map[string]any{"b": 1, "a": []int{1}}, `{"a":[1],"b":1}`},
		{"no HTML escaping", map[string]string{"m": "a<b & c>d"}, `{"m":"a<b & c>d"}`},
		{"json.RawMessage verbatim", json.RawMessage("{\"a\" : [1, 2],\n \"b\":\"<\"}"), "{\"a\" : [1, 2],\n \"b\":\"<\"}"},
		{"[]byte verbatim", []byte(`[1,2,3]`), `[1,2,3]`},
		{"string is a JSON string", `{"a":1}`, `"{\"a\":1}"`},
		{"number", 42, `42`},
		{"nil", nil, `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, ok(`{"user_id":"42","connections":1}`))
			c := newClient(t, f.srv.URL)
			if _, err := c.Notify(t.Context(), "42", tt.payload); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			if reqs[0].body != tt.wantBody {
				t.Errorf("body = %s, want %s", reqs[0].body, tt.wantBody)
			}
		})
	}
}

// Bad input is refused before anything is sent.
func TestInvalidInput(t *testing.T) {
	tests := []struct {
		name string
		call func(context.Context, *Client) (any, error)
	}{
		{"Notify []byte not JSON", func(ctx context.Context, c *Client) (any, error) {
			return c.Notify(ctx, "42", []byte(`{"message":`))
		}},
		{"Notify RawMessage not JSON", func(ctx context.Context, c *Client) (any, error) {
			return c.Notify(ctx, "42", json.RawMessage(`hello`))
		}},
		{"Notify empty RawMessage", func(ctx context.Context, c *Client) (any, error) {
			return c.Notify(ctx, "42", json.RawMessage(nil))
		}},
		{"Notify unmarshalable", func(ctx context.Context, c *Client) (any, error) {
			return c.Notify(ctx, "42", map[string]any{"f": func() {}})
		}},
		{"Notify empty user", func(ctx context.Context, c *Client) (any, error) {
			return c.Notify(ctx, "", 1)
		}},
		{"NotifyJSON invalid UTF-8", func(ctx context.Context, c *Client) (any, error) {
			return c.NotifyJSON(ctx, "42", "\xff\xfe")
		}},
		{"NotifyJSON empty user", func(ctx context.Context, c *Client) (any, error) {
			return c.NotifyJSON(ctx, "", `{}`)
		}},
		{"NotifyUsers []byte not JSON", func(ctx context.Context, c *Client) (any, error) {
			return c.NotifyUsers(ctx, []string{"1"}, []byte(`nope`))
		}},
		{"NotifyUsers empty user", func(ctx context.Context, c *Client) (any, error) {
			return c.NotifyUsers(ctx, []string{"1", ""}, 1)
		}},
		{"Broadcast RawMessage not JSON", func(ctx context.Context, c *Client) (any, error) {
			return c.Broadcast(ctx, json.RawMessage(`{`))
		}},
		{"Connections empty user", func(ctx context.Context, c *Client) (any, error) {
			return c.Connections(ctx, "")
		}},
		{"Disconnect empty user", func(ctx context.Context, c *Client) (any, error) {
			return c.Disconnect(ctx, "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			c := newClient(t, f.srv.URL)
			if _, err := tt.call(t.Context(), c); err == nil {
				t.Fatal("call succeeded, want an error")
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("server got %d requests, want none", n)
			}
		})
	}
}

func TestNotifyUsersNone(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.srv.URL)
	md, err := c.NotifyUsers(t.Context(), nil, map[string]int{"a": 1})
	if err != nil {
		t.Fatalf("NotifyUsers: %v", err)
	}
	if md.Connections != 0 || len(md.Users) != 0 {
		t.Errorf("result = %+v, want empty", md)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("server got %d requests, want none", n)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name           string
		reply          reply
		wantAttempts   int // with WithRetries(2)
		wantStatus     int
		wantCode       string
		wantRetryAfter time.Duration
		wantMessage    string // substring
	}{
		{"400 invalid_json", apiError(400, CodeInvalidJSON, "unexpected end of JSON input"), 1, 400, CodeInvalidJSON, 0, "unexpected end"},
		{"400 invalid_request", apiError(400, CodeInvalidRequest, "user_id is required"), 1, 400, CodeInvalidRequest, 0, "user_id"},
		{"401 unauthorized", apiError(401, CodeUnauthorized, "bad API key"), 1, 401, CodeUnauthorized, 0, "bad API key"},
		{"404 not_found", apiError(404, CodeNotFound, "no such route"), 1, 404, CodeNotFound, 0, "no such route"},
		{"413 payload_too_large", apiError(413, CodePayloadTooLarge, "payload exceeds 64 KiB"), 1, 413, CodePayloadTooLarge, 0, "64 KiB"},
		{"415 unsupported_media_type", apiError(415, CodeUnsupportedMediaType, "want application/json"), 1, 415, CodeUnsupportedMediaType, 0, "application/json"},
		{"501 is not retried", reply{status: 501, body: "not implemented"}, 1, 501, "", 0, "not implemented"},
		{"500 internal is retried", apiError(500, CodeInternal, "internal error"), 3, 500, CodeInternal, 0, "internal error"},
		{"503 unavailable is retried", apiError(503, CodeUnavailable, "shutting down"), 3, 503, CodeUnavailable, 0, "shutting down"},
		{
			"429 with Retry-After is retried",
			reply{status: 429, body: `{"error":{"code":"too_many_requests","message":"slow down"}}`, header: map[string]string{"Retry-After": "7"}},
			3, 429, CodeTooManyRequests, 7 * time.Second, "slow down",
		},
		{
			"502 from a proxy, HTML body",
			reply{status: 502, body: "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>", header: map[string]string{"Content-Type": "text/html"}},
			3, 502, "", 0, "502 Bad Gateway",
		},
		{"504 empty body", reply{status: 504}, 3, 504, "", 0, ""},
		{"JSON body without error object", reply{status: 400, body: `{"oops":1}`}, 1, 400, "", 0, `{"oops":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.reply)
			c := newClient(t, f.srv.URL, WithRetries(2))
			d, err := c.Notify(t.Context(), "42", map[string]string{"message": "hi"})
			if err == nil {
				t.Fatalf("Notify = %+v, want an error", d)
			}
			var herr *Error
			if !errors.As(err, &herr) {
				t.Fatalf("error %v (%T) does not wrap *Error", err, err)
			}
			if herr.Status != tt.wantStatus || herr.Code != tt.wantCode || herr.RetryAfter != tt.wantRetryAfter {
				t.Errorf("Error = %+v, want status %d, code %q, RetryAfter %v", herr, tt.wantStatus, tt.wantCode, tt.wantRetryAfter)
			}
			if !strings.Contains(herr.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", herr.Message, tt.wantMessage)
			}
			if !IsCode(err, tt.wantCode) {
				t.Errorf("IsCode(err, %q) = false", tt.wantCode)
			}
			if IsCode(err, "some_other_code") {
				t.Error("IsCode(err, some_other_code) = true")
			}
			if n := len(f.requests()); n != tt.wantAttempts {
				t.Errorf("server got %d requests, want %d", n, tt.wantAttempts)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Status: 404, Code: CodeNotFound, Message: "no such user"}, "404 not_found: no such user"},
		{&Error{Status: 502, Message: "upstream died"}, "502 Bad Gateway: upstream died"},
		{&Error{Status: 504}, "504 Gateway Timeout"},
		{&Error{Status: 599}, "599"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if IsCode(nil, "") || IsCode(errors.New("x"), "") {
		t.Error("IsCode matched an error that is not an *Error")
	}
}

func TestRetryThenSuccess(t *testing.T) {
	success := ok(`{"user_id":"42","connections":1}`)
	retryAfter := reply{
		status: 429,
		body:   `{"error":{"code":"too_many_requests","message":"slow down"}}`,
		// One second, capped at the 2ms backoff max by newClient.
		header: map[string]string{"Retry-After": "1"},
	}
	tests := []struct {
		name    string
		replies []reply
	}{
		{"503 then success", []reply{apiError(503, CodeUnavailable, "draining"), success}},
		{"429 with Retry-After then success", []reply{retryAfter, retryAfter, success}},
		{"429 with HTTP-date Retry-After then success", []reply{{
			status: 429,
			body:   `{"error":{"code":"too_many_requests","message":"slow down"}}`,
			header: map[string]string{"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
		}, success}},
		{"every retryable status then success", []reply{
			apiError(500, CodeInternal, "oops"),
			{status: 502, body: "bad gateway"},
			{status: 504, body: "gateway timeout"},
			success,
		}},
		{"connection dropped then success", []reply{{hangup: true}, success}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.replies...)
			c := newClient(t, f.srv.URL, WithRetries(3))
			payload := json.RawMessage(`{"message": "hi"}`)
			d, err := c.Notify(t.Context(), "42", payload)
			if err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if *d != (Delivery{UserID: "42", Connections: 1}) {
				t.Errorf("Delivery = %+v", *d)
			}
			reqs := f.requests()
			if len(reqs) != len(tt.replies) {
				t.Fatalf("server got %d requests, want %d", len(reqs), len(tt.replies))
			}
			for i, r := range reqs {
				if r.method != "POST" || r.path != "/v1/users/42/messages" || r.body != string(payload) {
					t.Errorf("attempt %d: %s %s %s, want the same request each time", i+1, r.method, r.path, r.body)
				}
				checkHeaders(t, r)
			}
		})
	}
}

func TestNoRetries(t *testing.T) {
	f := newFake(t, apiError(503, CodeUnavailable, "draining"))
	c := newClient(t, f.srv.URL, WithRetries(0))
	_, err := c.Broadcast(t.Context(), 1)
	if !IsCode(err, CodeUnavailable) {
		t.Fatalf("Broadcast error = %v, want unavailable", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("server got %d requests, want 1", n)
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more

	c := newClient(t, url, WithRetries(2))
	_, err := c.Notify(t.Context(), "42", 1)
	if err == nil {
		t.Fatal("Notify succeeded against a closed server")
	}
	var herr *Error
	if errors.As(err, &herr) {
		t.Errorf("error wraps *Error %+v, want a transport error", herr)
	}
	if !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("error %q does not report 3 attempts", err)
	}
}

func TestContextEndsRetries(t *testing.T) {
	// The server asks for an hour's wait; only the context can end it.
	slowDown := reply{
		status: 429,
		body:   `{"error":{"code":"too_many_requests","message":"slow down"}}`,
		header: map[string]string{"Retry-After": "3600"},
	}
	tests := []struct {
		name        string
		ctx         func(t *testing.T) context.Context
		wantErr     error
		maxAttempts int
	}{
		{
			name: "cancelled before the call",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			},
			wantErr:     context.Canceled,
			maxAttempts: 0,
		},
		{
			name: "cancelled while waiting to retry",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(20*time.Millisecond, cancel)
				return ctx
			},
			wantErr:     context.Canceled,
			maxAttempts: 1,
		},
		{
			name: "deadline while waiting to retry",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			wantErr:     context.DeadlineExceeded,
			maxAttempts: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, slowDown)
			c := newClient(t, f.srv.URL, WithRetries(100), WithBackoff(time.Hour, time.Hour))
			_, err := c.Notify(tt.ctx(t), "42", 1)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Notify error = %v, want %v", err, tt.wantErr)
			}
			if n := len(f.requests()); n > tt.maxAttempts {
				t.Errorf("server got %d requests, want at most %d", n, tt.maxAttempts)
			}
		})
	}
}

func TestContextEndsRequest(t *testing.T) {
	// The server never answers; the context's deadline ends the call.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Connections(ctx, "42")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connections error = %v, want context.DeadlineExceeded", err)
	}
}

func TestBadReply(t *testing.T) {
	f := newFake(t, ok(`<html>not json</html>`))
	c := newClient(t, f.srv.URL)
	if _, err := c.Disconnect(t.Context(), "42"); err == nil {
		t.Fatal("Disconnect succeeded on a non-JSON reply")
	}
	// A 200 means Herald accepted the request: sending it again could
	// deliver twice, so a bad reply is not retried.
	if n := len(f.requests()); n != 1 {
		t.Errorf("server got %d requests, want 1", n)
	}
}

func TestNew(t *testing.T) {
	bad := []struct {
		name    string
		baseURL string
		apiKey  string
		opts    []Option
	}{
		{"empty URL", "", testKey, nil},
		{"no scheme", "herald.local:8080", testKey, nil},
		{"relative", "/v1", testKey, nil},
		{"ftp scheme", "ftp://herald.local", testKey, nil},
		{"ws scheme", "ws://herald.local", testKey, nil},
		{"no host", "https://", testKey, nil},
		{"query", "https://herald.local/?region=eu", testKey, nil},
		{"empty query", "https://herald.local/?", testKey, nil},
		{"fragment", "https://herald.local/#top", testKey, nil},
		{"user info", "https://admin:secret@herald.local", testKey, nil},
		{"unparsable", "https://herald.local:port", testKey, nil},
		{"empty API key", "https://herald.local", "", nil},
		{"API key with newline", "https://herald.local", "key\nX-Evil: 1", nil},
		{"negative retries", "https://herald.local", testKey, []Option{WithRetries(-1)}},
		{"negative backoff", "https://herald.local", testKey, []Option{WithBackoff(-time.Second, time.Second)}},
		{"max below base", "https://herald.local", testKey, []Option{WithBackoff(time.Second, time.Millisecond)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := New(tt.baseURL, tt.apiKey, tt.opts...); err == nil {
				t.Errorf("New(%q) = %+v, want an error", tt.baseURL, c)
			}
		})
	}

	good := []string{
		"http://localhost:8080",
		"https://herald.internal",
		"HTTPS://herald.internal/",
		"https://example.com/herald",
		"https://example.com/herald/",
	}
	for _, u := range good {
		if _, err := New(u, testKey, WithHTTPClient(nil), WithRetries(0), WithBackoff(0, 0)); err != nil {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}

// A base URL with a path prefix (Herald behind a reverse proxy) keeps it.
func TestBaseURLPrefix(t *testing.T) {
	for _, suffix := range []string{"/herald", "/herald/"} {
		f := newFake(t, ok(`{"connections":0}`))
		c := newClient(t, f.srv.URL+suffix)
		if _, err := c.Broadcast(t.Context(), 1); err != nil {
			t.Fatalf("Broadcast: %v", err)
		}
		if reqs := f.requests(); len(reqs) != 1 || reqs[0].path != "/herald/v1/broadcast" {
			t.Errorf("base %q: requests %+v, want one to /herald/v1/broadcast", suffix, reqs)
		}
	}
}

func TestWithHTTPClient(t *testing.T) {
	f := newFake(t, ok(`{"connections":1}`))
	var used bool
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := newClient(t, f.srv.URL, WithHTTPClient(hc))
	if _, err := c.Broadcast(t.Context(), 1); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	if !used {
		t.Error("the Client did not use the given *http.Client")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"3", 3 * time.Second},
		{" 3 ", 3 * time.Second},
		{"soon", 0},
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0}, // in the past
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// The backoff stays within [0, min(base·2ⁿ, max)], and Retry-After is capped.
func TestDelayBounds(t *testing.T) {
	c := newClient(t, "http://localhost", WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	for attempt := 0; attempt < 70; attempt++ {
		ceil := min(10*time.Millisecond<<min(attempt, 10), 50*time.Millisecond)
		for range 20 {
			if d := c.delay(attempt, errors.New("reset")); d < 0 || d > ceil {
				t.Fatalf("delay(%d) = %v, want within [0, %v]", attempt, d, ceil)
			}
		}
	}
	if d := c.delay(0, &Error{Status: 429, RetryAfter: time.Hour}); d != 50*time.Millisecond {
		t.Errorf("delay with Retry-After 1h = %v, want the 50ms cap", d)
	}
	if d := c.delay(0, &Error{Status: 429, RetryAfter: 20 * time.Millisecond}); d != 20*time.Millisecond {
		t.Errorf("delay with Retry-After 20ms = %v, want 20ms", d)
	}
}
