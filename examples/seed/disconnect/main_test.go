package main

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/herald-gw/herald/examples/seed/internal/registry"
	"github.com/herald-gw/herald/servicetest"
)

// env is a fake environment.
type env map[string]string

func (e env) Get(k string) string { return e[k] }

// The handler deletes exactly the closed connection's row, logs the close
// code and reason, and takes a second $disconnect for the same id calmly.
func TestHandle(t *testing.T) {
	dsn := servicetest.Postgres(t)
	ctx := context.Background()
	reg, err := registry.OpenSource(ctx, registry.Source{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	if err := reg.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a=", "b="} {
		if err := reg.Add(ctx, id, 42); err != nil {
			t.Fatal(err)
		}
	}

	var logs bytes.Buffer
	h, err := newHandler(ctx, env{"DATABASE_URL": dsn}.Get, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.reg.Close(ctx)
	reason := "Client-side close frame status code 1001 (Going Away)"
	for _, c := range []struct {
		name    string
		had     string
		wantIDs []string
	}{
		{"first", "had_row=true", []string{"b="}},
		{"again", "had_row=false", []string{"b="}},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs.Reset()
			req := events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
				ConnectionID: "a=", RouteKey: "$disconnect", EventType: "DISCONNECT",
				DisconnectStatusCode: 1001, DisconnectReason: &reason,
			}}
			resp, err := h.handle(ctx, req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("got %+v, %v", resp, err)
			}
			ids, err := reg.List(ctx, 42)
			if err != nil || !slices.Equal(ids, c.wantIDs) {
				t.Fatalf("user 42's ids: %v %v, want %v", ids, err, c.wantIDs)
			}
			for _, want := range []string{`connection="a="`, c.had, "disconnectStatusCode=1001", "Going Away"} {
				if !strings.Contains(logs.String(), want) {
					t.Fatalf("the log lacks %q:\n%s", want, logs.String())
				}
			}
		})
	}
}
