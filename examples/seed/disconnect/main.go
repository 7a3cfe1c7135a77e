// Command disconnect is the seed's $disconnect Lambda: API Gateway calls it
// after a connection has closed, whichever side closed it, and it deletes
// the connection's row so the notification function stops posting to it.
//
// $disconnect is best effort on API Gateway — it can be skipped, for
// instance when the function fails — which is why the notification function
// also deletes the ids API Gateway reports gone.
//
// Environment: DATABASE_URL or DATABASE_SECRET_ARN (see package registry).
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/herald-gw/herald/examples/seed/internal/registry"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := newHandler(context.Background(), os.Getenv, log)
	if err != nil {
		log.Error("disconnect: cold start failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.handle)
}

// handler holds the registry's database connection, made once per cold
// start and reused by every invocation.
type handler struct {
	reg *registry.Registry
	log *slog.Logger
}

func newHandler(ctx context.Context, getenv func(string) string, log *slog.Logger) (*handler, error) {
	reg, err := registry.OpenSource(ctx, registry.SourceFromEnv(getenv))
	if err != nil {
		return nil, err
	}
	return &handler{reg: reg, log: log}, nil
}

// handle deletes the closed connection's row. A row already gone (the
// notification function found the id stale first) is fine.
func (h *handler) handle(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rc := req.RequestContext
	had, err := h.reg.Remove(ctx, rc.ConnectionID)
	if err != nil {
		return events.APIGatewayProxyResponse{}, err
	}
	reason := ""
	if rc.DisconnectReason != nil {
		reason = *rc.DisconnectReason
	}
	h.log.Info("disconnect", "connection", rc.ConnectionID, "had_row", had,
		"disconnectStatusCode", rc.DisconnectStatusCode, "disconnectReason", reason)
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}
