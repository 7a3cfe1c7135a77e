// Package api is Herald's HTTP surface: the WebSocket endpoint, the server
// API used by the application's API server, and (through awsapi) the API
// Gateway Management API. routes.go lists every route; each handler is a
// function returning an http.Handler, with its dependencies passed in.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
)

// AWSHandlers serves the API Gateway Management API routes.
type AWSHandlers interface {
	PostToConnection() http.Handler
	GetConnection() http.Handler
	DeleteConnection() http.Handler
}

// Config holds the API's settings.
type Config struct {
	APIKey      string   // server API bearer key; required
	CORSOrigins []string // origins allowed to call the browser inbox API; "*" = any
}

// The handlers' dependencies are interfaces declared here, where they are
// used, each listing only the methods the handlers call. The real parts
// (*stream.Service, *hub.Hub, *gateway.Gateway, *sse.Handler) satisfy them
// without knowing of them, as deps_test.go asserts; the package's own
// tests stand in small fakes, so every route's validation and error replies
// are tested without sockets, a store or a clock. cmd/herald tests the real
// parts together, end to end.

// Streams is the delivery path (stream.Service): it stores and delivers
// messages, and reads back what a user was sent.
type Streams interface {
	// Publish stores msgs as one durable batch, giving each its ID and
	// Offset, then delivers them; it returns one Result per message, in
	// order. An error means nothing was stored.
	Publish(ctx context.Context, msgs []*herald.Message) ([]hub.Result, error)
	// Broadcast sends data to every open connection, unstored, and
	// reports how many on this node it was queued to.
	Broadcast(ctx context.Context, data []byte) (*herald.Message, int)
	// DisconnectUser closes every connection of user and reports how many
	// were on this node.
	DisconnectUser(ctx context.Context, user herald.UserID) int
	// WaitAck waits until a connection of user acknowledged offset or ctx
	// is done, and reports the user's connections and how many acked.
	WaitAck(ctx context.Context, user herald.UserID, offset uint64) (conns, acked int)
	// History returns up to limit stored messages of user after since,
	// oldest first.
	History(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error)
	// Inbox lists one page of the user's inbox, newest first.
	Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error)
	// Counts returns the user's unread and unseen counts.
	Counts(ctx context.Context, user herald.UserID) (herald.InboxCounts, error)
	// Mark sets mark on the user's messages ids (or all of them) and
	// returns the ids that changed and the counts after the change.
	Mark(ctx context.Context, user herald.UserID, mark herald.Mark, ids []string, all bool) (changed []string, counts herald.InboxCounts, err error)
	// Epoch names the store's history, for the replies that carry offsets.
	Epoch() string
}

// Registry is this node's connection registry (hub.Hub), read-only: the
// API lists and looks up connections; the transports add and remove them.
type Registry interface {
	// Get returns the open connection with id, or nil.
	Get(id herald.ConnID) hub.Conn
	// UserConns returns the user's open connections, oldest first.
	UserConns(user herald.UserID) []hub.Conn
}

// Authenticator verifies the client token a request carries. Its errors
// are *herald.Error values with EUnauthorized.
type Authenticator interface {
	Authenticate(r *http.Request) (token.Claims, error)
}

// WebSocket is the /ws transport (gateway.Gateway). Its Authenticate also
// checks the client token of the browser routes (/v1/inbox…, /v1/ack), so
// that they accept a token wherever /ws does.
type WebSocket interface {
	Authenticator
	// Accept upgrades r to a WebSocket connection of claims.User. An error
	// is returned only before the upgrade, for the handler to report.
	Accept(w http.ResponseWriter, r *http.Request, claims token.Claims) error
}

// EventStream is the /sse transport (sse.Handler).
type EventStream interface {
	Authenticator
	// Serve streams events to claims.User until the client goes away. An
	// error is returned only before anything was written, for the
	// handler to report.
	Serve(w http.ResponseWriter, r *http.Request, claims token.Claims) error
}

// Deps are what the API serves: this node's hub, the two transports, the
// delivery path and, optionally, the AWS management API.
type Deps struct {
	Hub     Registry
	Gateway WebSocket   // /ws, and the browser routes' token check
	SSE     EventStream // Server-Sent Events
	Stream  Streams
	AWS     AWSHandlers // nil leaves the management API out
}

// Server holds the API's dependencies.
type Server struct {
	cfg     Config
	log     *slog.Logger
	hub     Registry
	gateway WebSocket
	sse     EventStream
	stream  Streams
	aws     AWSHandlers
	ready   atomic.Bool
}

// New returns Herald's HTTP API over d.
func New(cfg Config, log *slog.Logger, d Deps) *Server {
	s := &Server{cfg: cfg, log: log, hub: d.Hub, gateway: d.Gateway, sse: d.SSE, stream: d.Stream, aws: d.AWS}
	s.ready.Store(true)
	return s
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, s)
	return mux
}

// SetReady marks the node ready or not (draining) for /readyz and /ws.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// statusOf maps an error code to its HTTP status (docs/api.md lists both).
func statusOf(code herald.ErrorCode) int {
	switch code {
	case herald.EInvalidJSON, herald.EInvalidRequest:
		return http.StatusBadRequest
	case herald.EUnauthorized:
		return http.StatusUnauthorized
	case herald.ENotFound:
		return http.StatusNotFound
	case herald.EMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case herald.EPayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case herald.EUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case herald.ETooManyRequests:
		return http.StatusTooManyRequests
	case herald.EUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// errorBody is the one error shape of every non-AWS route.
type errorBody struct {
	Error struct {
		Code    herald.ErrorCode `json:"code"`
		Message string           `json:"message"`
	} `json:"error"`
}

// writeError reports err as {"error":{"code","message"}} with the code's
// status. Internal errors are logged and reported without detail.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var body errorBody
	body.Error.Code = herald.ErrorCodeOf(err)
	body.Error.Message = herald.ErrorMessageOf(err)
	status := statusOf(body.Error.Code)
	if status >= 500 {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readBody reads a JSON request body, enforcing the content type and size.
func readBody(r *http.Request) ([]byte, error) { return readBodyLimit(r, maxBody) }

// readBodyLimit is readBody with another size limit.
func readBodyLimit(r *http.Request, limit int) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, herald.Errorf(herald.EUnsupportedMedia, "Content-Type must be application/json, got %q", ct)
		}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, &herald.Error{Code: herald.EInvalidRequest, Message: "could not read request body", Err: err}
	}
	if len(b) > limit {
		return nil, herald.Errorf(herald.EPayloadTooLarge, "request body exceeds %d bytes", limit)
	}
	return b, nil
}

// readJSON reads a JSON request body (see readBody) and decodes it into v
// (see decodeJSON).
func readJSON(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes body into v, a pointer to a request struct, telling
// malformed JSON and wrong types apart from each other in the message (both
// are invalid_json).
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return herald.Errorf(herald.EInvalidJSON, "request body is empty")
	}
	err := json.Unmarshal(body, v)
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te) && te.Field == "":
		// Not a field but the whole value is wrong: a body (or a batch
		// message) that is not an object. The struct's Go name would mean
		// nothing to a client.
		return &herald.Error{Code: herald.EInvalidJSON, Message: "wrong type: got " + te.Value + ", want an object", Err: err}
	case errors.As(err, &te):
		return &herald.Error{Code: herald.EInvalidJSON, Message: "field " + strings.TrimPrefix(te.Field, ".") + " has the wrong type: got " + te.Value + ", want " + te.Type.String(), Err: err}
	case errors.As(err, &se):
		return &herald.Error{Code: herald.EInvalidJSON, Message: "malformed JSON: " + se.Error(), Err: err}
	default:
		return &herald.Error{Code: herald.EInvalidJSON, Message: "malformed JSON: " + err.Error(), Err: err}
	}
}

// checkPayload enforces the payload size limit.
func checkPayload(p []byte) error {
	if len(p) > MaxPayload {
		return herald.Errorf(herald.EPayloadTooLarge, "payload is %d bytes; the limit is %d", len(p), MaxPayload)
	}
	return nil
}

// requireAPIKey wraps a handler with the server API's bearer key check. The
// compare is constant-time so the key cannot be guessed byte by byte from
// response timings.
func requireAPIKey(log *slog.Logger, key string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !token.BearerIs(r, key) {
				writeError(w, r, log, herald.Errorf(herald.EUnauthorized, "missing or invalid API key"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// allowCORS lets browsers on the configured origins call a route. Tokens
// travel in the Authorization header, never in cookies, so "*" cannot be
// abused for ambient-credential attacks.
func allowCORS(origins []string) func(http.Handler) http.Handler {
	anyOrigin := slices.Contains(origins, "*")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if o := r.Header.Get("Origin"); o != "" && (anyOrigin || slices.Contains(origins, o)) {
				h := w.Header()
				h.Set("Access-Control-Allow-Origin", o)
				h.Add("Vary", "Origin")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Max-Age", "600")
			}
			next.ServeHTTP(w, r)
		})
	}
}

func handlePreflight() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
}
