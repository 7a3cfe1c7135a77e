// Command connect is the seed's $connect Lambda: API Gateway calls it when a
// browser opens the WebSocket, before the handshake is answered. It checks
// the token the browser put in the query string (?token=…, an HS256 JWT
// signed with TOKEN_SECRET whose "sub" is the numeric user id) and records
// the new connection id against that user in PostgreSQL. Answering 401
// makes API Gateway — or Herald with auth = "integration" — refuse the
// handshake with 401; answering 200 lets the connection open.
//
// Environment: TOKEN_SECRET, and DATABASE_URL or DATABASE_SECRET_ARN (see
// package registry). The table is created at cold start when missing.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-gw/herald/examples/seed/internal/registry"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := newHandler(context.Background(), os.Getenv, log)
	if err != nil {
		// Exiting before lambda.Start is how a Lambda fails its init; the
		// runtime reports it and the next event gets a new cold start.
		log.Error("connect: cold start failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.handle)
}

// handler holds what every invocation reuses: the registry's database
// connection and the token key, both made once per cold start.
type handler struct {
	reg    *registry.Registry
	secret []byte
	log    *slog.Logger
}

// newHandler reads the environment, connects to the database and creates
// the table when it is missing, so that a fresh database works.
func newHandler(ctx context.Context, getenv func(string) string, log *slog.Logger) (*handler, error) {
	secret := getenv("TOKEN_SECRET")
	if secret == "" {
		return nil, errors.New("TOKEN_SECRET is not set")
	}
	reg, err := registry.OpenSource(ctx, registry.SourceFromEnv(getenv))
	if err != nil {
		return nil, err
	}
	if err := reg.Migrate(ctx); err != nil {
		return nil, err
	}
	return &handler{reg: reg, secret: []byte(secret), log: log}, nil
}

// handle answers one $connect. A refused token is a 401 response, not an
// error: an error would make API Gateway answer 500 and log the attempt as
// a failure of the function rather than of the client.
func (h *handler) handle(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	id := req.RequestContext.ConnectionID
	user, err := h.verify(req.QueryStringParameters["token"])
	if err != nil {
		// The reason, never the token: a token in a log is a session
		// anyone who reads the log can take over.
		h.log.Info("connect: refused", "connection", id, "reason", err)
		return events.APIGatewayProxyResponse{StatusCode: http.StatusUnauthorized, Body: "Unauthorized"}, nil
	}
	if err := h.reg.Add(ctx, id, user); err != nil {
		return events.APIGatewayProxyResponse{}, err
	}
	h.log.Info("connect: connected", "connection", id, "user", user)
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// verify checks an HS256 token and returns its user id. The algorithm is
// pinned (an "alg": "none" or RS256 token is refused whatever its
// signature) and exp is required, so a token cannot be valid forever.
func (h *handler) verify(token string) (int64, error) {
	if token == "" {
		return 0, errors.New("no token in the query string")
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return h.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithJSONNumber())
	if err != nil {
		return 0, err
	}
	return userID(claims["sub"])
}

// userID reads "sub" as a positive user id. The original system's ids are
// numbers, and its tokens carry them either as a string ("42", as the JWT
// spec says sub should be) or as a JSON number (42); both are accepted.
func userID(sub any) (int64, error) {
	var (
		n   int64
		err error
	)
	switch v := sub.(type) {
	case string:
		n, err = strconv.ParseInt(v, 10, 64)
	case json.Number:
		n, err = v.Int64()
	case nil:
		return 0, errors.New("token has no sub")
	default:
		return 0, fmt.Errorf("token sub is a %T, want a numeric user id", sub)
	}
	if err != nil || n <= 0 {
		return 0, errors.New("token sub is not a positive integer user id")
	}
	return n, nil
}
