// Command notification is the seed's notification Lambda: the API server
// invokes it with {"user_id": 42, "json": "..."} and it posts the json text,
// as it is, to every connection the user has open, through API Gateway's
// management API (PostToConnection on APIGW_ENDPOINT: on AWS
// https://{api-id}.execute-api.{region}.amazonaws.com/{stage}; under Herald,
// Herald's own address).
//
// It fixes three defects of the original:
//
//   - The original kept only the last PostToConnection error, so a failure
//     to one tab was hidden by a success to the next. Here every failure is
//     kept (errors.Join) and the invocation fails when any tab was missed.
//   - The original treated a GoneException — the connection closed without
//     its $disconnect having run — as an error, and kept posting to the dead
//     id forever. Here it is the expected answer for a stale id: the row is
//     deleted and the id counted as gone, not as a failure.
//   - The original loaded the AWS configuration and built a client for every
//     message. Here both are made once per cold start and reused.
//
// Environment: APIGW_ENDPOINT; DATABASE_URL or DATABASE_SECRET_ARN (see
// package registry); the usual AWS variables (the role's on Lambda).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	apigw "github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/herald-gw/herald/examples/seed/internal/registry"
)

// maxData is API Gateway's limit for one PostToConnection.
const maxData = 128 << 10

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := newHandler(context.Background(), os.Getenv, log)
	if err != nil {
		log.Error("notification: cold start failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.handle)
}

// Payload is what the API server sends — the original's shape, unchanged.
type Payload struct {
	UserID int64  `json:"user_id"`
	JSON   string `json:"json"` // the text each connection receives, byte for byte
}

// Result is the invocation's answer: how many connections got the message,
// and how many were found gone (and deleted).
type Result struct {
	Sent int `json:"sent"`
	Gone int `json:"gone"`
}

// poster is the management API call the handler makes;
// *apigatewaymanagementapi.Client is one.
type poster interface {
	PostToConnection(ctx context.Context, in *apigw.PostToConnectionInput, opts ...func(*apigw.Options)) (*apigw.PostToConnectionOutput, error)
}

// handler holds what every invocation reuses: the database connection and
// the management API client, both made once per cold start.
type handler struct {
	reg *registry.Registry
	api poster
	log *slog.Logger
}

// newHandler loads the AWS configuration once — optFns adjust it, for
// tests — and builds the management API client and the registry from it.
func newHandler(ctx context.Context, getenv func(string) string, log *slog.Logger, optFns ...func(*config.LoadOptions) error) (*handler, error) {
	endpoint := getenv("APIGW_ENDPOINT")
	if endpoint == "" {
		return nil, errors.New("APIGW_ENDPOINT is not set (https://{api-id}.execute-api.{region}.amazonaws.com/{stage}, or Herald's address)")
	}
	cfg, err := config.LoadDefaultConfig(ctx, optFns...)
	if err != nil {
		return nil, fmt.Errorf("AWS config: %w", err)
	}
	src := registry.SourceFromEnv(getenv)
	src.Secrets = secretsmanager.NewFromConfig(cfg)
	reg, err := registry.OpenSource(ctx, src)
	if err != nil {
		return nil, err
	}
	api := apigw.NewFromConfig(cfg, func(o *apigw.Options) { o.BaseEndpoint = aws.String(endpoint) })
	return &handler{reg: reg, api: api, log: log}, nil
}

// handle posts p.JSON to each of the user's connections. It returns an
// error when any connection that is still there was not reached, joining
// every such failure; the ids API Gateway reports gone are deleted and are
// no failure.
func (h *handler) handle(ctx context.Context, p Payload) (Result, error) {
	var res Result
	if p.UserID <= 0 {
		return res, fmt.Errorf("notification: user_id %d is not a positive user id", p.UserID)
	}
	if p.JSON == "" || len(p.JSON) > maxData {
		return res, fmt.Errorf("notification: json is %d bytes, want 1 to %d", len(p.JSON), maxData)
	}
	ids, err := h.reg.List(ctx, p.UserID)
	if err != nil {
		return res, err
	}
	data := []byte(p.JSON)
	var errs []error
	for i, id := range ids {
		if ctx.Err() != nil { // the invocation's deadline: say what was left, once
			errs = append(errs, fmt.Errorf("%d connections not tried: %w", len(ids)-i, ctx.Err()))
			break
		}
		_, err := h.api.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(id), Data: data})
		var gone *types.GoneException
		switch {
		case err == nil:
			res.Sent++
		case errors.As(err, &gone):
			res.Gone++
			if _, err := h.reg.Remove(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("remove gone connection %s: %w", id, err))
			}
		default:
			errs = append(errs, fmt.Errorf("post to %s: %w", id, err))
		}
	}
	h.log.Info("notification", "user", p.UserID, "connections", len(ids), "sent", res.Sent, "gone", res.Gone, "failed", len(errs))
	if len(errs) > 0 {
		return res, fmt.Errorf("notification: user %d: sent %d, gone %d, failed %d: %w", p.UserID, res.Sent, res.Gone, len(errs), errors.Join(errs...))
	}
	return res, nil
}
