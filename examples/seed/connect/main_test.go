package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/herald-gw/herald/servicetest"
)

const secret = "seed-test-secret-0123456789abcdef"

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(id, token string) events.APIGatewayWebsocketProxyRequest {
	req := events.APIGatewayWebsocketProxyRequest{
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{ConnectionID: id, RouteKey: "$connect", EventType: "CONNECT"},
	}
	if token != "" {
		req.QueryStringParameters = map[string]string{"token": token}
	}
	return req
}

// The handler on a fresh database: the cold start creates the table; a
// good token adds a row for its user whether sub is "42" or 42; every bad
// token is a 401 that adds nothing and is not logged.
func TestHandle(t *testing.T) {
	dsn := servicetest.Postgres(t)
	ctx := context.Background()
	var logs bytes.Buffer
	h, err := newHandler(ctx, env{"DATABASE_URL": dsn, "TOKEN_SECRET": secret}.Get, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.reg.Close(context.Background()) })
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	exp := time.Now().Add(time.Hour).Unix()
	key := []byte(secret)
	for _, c := range []struct {
		name   string
		token  string
		status int
		user   int64 // the row's user when status is 200
	}{
		{"sub as a string", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "42", "exp": exp}), 200, 42},
		{"sub as a number", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": 7, "exp": exp}), 200, 7},
		{"large id", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "9007199254740993", "exp": exp}), 200, 9007199254740993},
		// Beyond float64's integers: read as a JSON number, not a float.
		{"large id as a number", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": int64(9007199254740995), "exp": exp}), 200, 9007199254740995},
		{"no token", "", 401, 0},
		{"garbage", "not-a-jwt", 401, 0},
		{"wrong key", sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdefgh"), jwt.MapClaims{"sub": "42", "exp": exp}), 401, 0},
		{"expired", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "42", "exp": time.Now().Add(-time.Hour).Unix()}), 401, 0},
		{"no exp", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "42"}), 401, 0},
		{"HS384", sign(t, jwt.SigningMethodHS384, key, jwt.MapClaims{"sub": "42", "exp": exp}), 401, 0},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "42", "exp": exp}), 401, 0},
		{"no sub", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"exp": exp}), 401, 0},
		{"sub not numeric", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "alice", "exp": exp}), 401, 0},
		{"sub fractional", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": 4.5, "exp": exp}), 401, 0},
		{"sub zero", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "0", "exp": exp}), 401, 0},
		{"sub negative", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": -3, "exp": exp}), 401, 0},
		{"sub an object", sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": map[string]any{"id": 42}, "exp": exp}), 401, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "conn-" + strings.ReplaceAll(c.name, " ", "-") + "="
			logs.Reset()
			resp, err := h.handle(ctx, request(id, c.token))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			var user int64
			err = db.QueryRow(ctx, "SELECT user_id FROM connections WHERE connection_id = $1", id).Scan(&user)
			switch {
			case c.status == 200 && (err != nil || user != c.user):
				t.Fatalf("row: user %d, %v; want user %d", user, err, c.user)
			case c.status != 200 && err != pgx.ErrNoRows:
				t.Fatalf("a refused connection has a row: user %d, %v", user, err)
			}
			if c.token != "" && strings.Contains(logs.String(), c.token) {
				t.Fatalf("the token is in the log:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), id) {
				t.Fatalf("the log does not name the connection:\n%s", logs.String())
			}
		})
	}
}

// A database error is the function's error (API Gateway answers 500), not
// a 401 that would blame the client.
func TestHandleDatabaseDown(t *testing.T) {
	ctx := context.Background()
	h, err := newHandler(ctx, env{"DATABASE_URL": servicetest.Postgres(t), "TOKEN_SECRET": secret}.Get, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.reg.Close(ctx)
	cancelled, cancel := context.WithCancel(ctx)
	cancel() // the registry can neither use nor reopen its connection
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "42", "exp": time.Now().Add(time.Hour).Unix()})
	if resp, err := h.handle(cancelled, request("c1", tok)); err == nil {
		t.Fatalf("got %+v and no error", resp)
	}
}

func TestNewHandlerConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no secret", map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x"}, "TOKEN_SECRET"},
		{"no database", map[string]string{"TOKEN_SECRET": secret}, "DATABASE_URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := newHandler(context.Background(), env(c.env).Get, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %s", err, c.want)
			}
		})
	}
}

// env is a fake environment.
type env map[string]string

func (e env) Get(k string) string { return e[k] }
