package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"

	"github.com/herald-gw/herald/examples/seed/internal/registry"
	"github.com/herald-gw/herald/servicetest"
)

// env is a fake environment.
type env map[string]string

func (e env) Get(k string) string { return e[k] }

// management is API Gateway's /@connections API as far as PostToConnection
// goes: what each connection id answers, and what each one received.
type management struct {
	t *testing.T

	mu       sync.Mutex
	answer   map[string]int // connection id → status; 200 delivers
	received map[string][]string
	posts    map[string]int
}

// errorTypes are the X-Amzn-ErrorType values API Gateway sends with each
// status; the SDK turns the header into the typed exception.
var errorTypes = map[int]string{
	http.StatusForbidden:             "ForbiddenException",
	http.StatusGone:                  "GoneException",
	http.StatusRequestEntityTooLarge: "PayloadTooLargeException",
}

func (m *management) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Signed by the SDK for execute-api with the configured key.
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDSEED/") || !strings.Contains(auth, "/execute-api/aws4_request") {
		m.t.Errorf("request not signed for execute-api: %q", auth)
	}
	id := r.PathValue("id")
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.posts[id]++
	status, ok := m.answer[id]
	if !ok {
		status = http.StatusGone // an id API Gateway never heard of is gone too
	}
	if status != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", errorTypes[status])
		w.WriteHeader(status)
		io.WriteString(w, `{"message":"`+errorTypes[status]+`"}`)
		return
	}
	m.received[id] = append(m.received[id], string(body))
	w.WriteHeader(http.StatusOK)
}

// The handler against a fake management API and a real registry: each live
// tab gets the text byte for byte; a gone id is deleted and is no error;
// every other failure is returned, all of them, joined; the payload is never
// logged.
func TestHandle(t *testing.T) {
	ctx := context.Background()
	dsn := servicetest.Postgres(t)
	m := &management{t: t, answer: map[string]int{
		"a42=": 200, "b42=": 200,
		"ok5=": 200, "stale5=": http.StatusGone,
		"deny9=": http.StatusForbidden, "ok9=": 200, "big9=": http.StatusRequestEntityTooLarge, "stale9=": http.StatusGone,
	}, received: map[string][]string{}, posts: map[string]int{}}
	mux := http.NewServeMux()
	mux.Handle("POST /@connections/{id}", m)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	reg, err := registry.OpenSource(ctx, registry.Source{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	if err := reg.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rows := map[string]int64{"a42=": 42, "b42=": 42, "ok5=": 5, "stale5=": 5, "deny9=": 9, "ok9=": 9, "big9=": 9, "stale9=": 9, "c7=": 7}
	for id, user := range rows {
		if err := reg.Add(ctx, id, user); err != nil {
			t.Fatal(err)
		}
	}

	var logs bytes.Buffer
	h, err := newHandler(ctx, env{"DATABASE_URL": dsn, "APIGW_ENDPOINT": srv.URL}.Get, slog.New(slog.NewTextHandler(&logs, nil)),
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDSEED", SecretAccessKey: "seed-secret"}, nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	defer h.reg.Close(ctx)

	const payload = `{"type":"notification","text":"secret-ish payload 🔔"}`
	for _, c := range []struct {
		name      string
		user      int64
		want      Result
		wantErrs  []string // ids the error names; nil: no error
		wantLeft  []string // the user's rows afterwards
		delivered []string
	}{
		{"two tabs", 42, Result{Sent: 2}, nil, []string{"a42=", "b42="}, []string{"a42=", "b42="}},
		{"a stale tab", 5, Result{Sent: 1, Gone: 1}, nil, []string{"ok5="}, []string{"ok5="}},
		{"every error joined", 9, Result{Sent: 1, Gone: 1}, []string{"deny9=", "big9="}, []string{"big9=", "deny9=", "ok9="}, []string{"ok9="}},
		{"no tabs", 1, Result{}, nil, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs.Reset()
			got, err := h.handle(ctx, Payload{UserID: c.user, JSON: payload})
			if got != c.want {
				t.Errorf("result %+v, want %+v", got, c.want)
			}
			if c.wantErrs == nil && err != nil {
				t.Fatalf("error: %v", err)
			}
			if c.wantErrs != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, id := range c.wantErrs {
					if !strings.Contains(err.Error(), id) {
						t.Errorf("the error does not name %s: %v", id, err)
					}
				}
				// Joined, not flattened: each failure keeps its type.
				var forbidden *types.ForbiddenException
				var tooLarge *types.PayloadTooLargeException
				var gone *types.GoneException
				if !errors.As(err, &forbidden) || !errors.As(err, &tooLarge) || errors.As(err, &gone) {
					t.Errorf("error types: forbidden %v, too large %v, gone %v (want true, true, false): %v",
						forbidden != nil, tooLarge != nil, gone != nil, err)
				}
			}
			left, err := reg.List(ctx, c.user)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(left)
			if !slices.Equal(left, c.wantLeft) {
				t.Errorf("rows left %v, want %v", left, c.wantLeft)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, id := range c.delivered {
				if r := m.received[id]; len(r) != 1 || r[0] != payload {
					t.Errorf("%s received %q, want the payload once", id, r)
				}
			}
			if strings.Contains(logs.String(), "secret-ish") {
				t.Errorf("the payload is in the log:\n%s", logs.String())
			}
		})
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.posts["c7="] != 0 {
		t.Errorf("user 7's tab was posted to %d times", m.posts["c7="])
	}
	for id, n := range m.posts {
		if n != 1 {
			t.Errorf("%s was posted to %d times, want once", id, n)
		}
	}
}

// Payloads the API Gateway would refuse, or that name nobody, fail before
// any database or network call.
func TestHandleInvalid(t *testing.T) {
	h := &handler{log: slog.New(slog.DiscardHandler)} // no registry, no client: neither may be used
	for _, c := range []struct {
		name string
		p    Payload
		want string
	}{
		{"no user", Payload{JSON: "x"}, "user_id 0"},
		{"negative user", Payload{UserID: -1, JSON: "x"}, "user_id -1"},
		{"empty json", Payload{UserID: 42}, "json is 0 bytes"},
		{"too large", Payload{UserID: 42, JSON: strings.Repeat("x", maxData+1)}, "json is 131073 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := h.handle(context.Background(), c.p); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestNewHandlerNeedsEndpoint(t *testing.T) {
	_, err := newHandler(context.Background(), env{"DATABASE_URL": "postgres://127.0.0.1:1/x"}.Get, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "APIGW_ENDPOINT") {
		t.Fatalf("got %v", err)
	}
}
