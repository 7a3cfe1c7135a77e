// Package awsapi serves the API Gateway Management API — POST, GET and
// DELETE /@connections/{id} — so code written for AWS, using the unmodified
// aws-sdk-go-v2 apigatewaymanagementapi client, works against Herald — and
// Lambda's Invoke API (invoke.go), for the unmodified lambda client.
//
// Everything here speaks AWS's shapes, not Herald's: errors are
// {"message":…} with an X-Amzn-ErrorType header naming the exception,
// because that header is what the SDK turns into *types.GoneException and
// friends (a bare status would surface as an unknown error).
package awsapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// MaxPostSize is API Gateway's limit for one PostToConnection payload.
const MaxPostSize = 128 << 10

// Handlers serves the management API over a hub.
type Handlers struct {
	hub    *hub.Hub
	log    *slog.Logger
	creds  Credentials // SigV4 key pair; empty disables SigV4
	keys   APIKeys     // Herald's API keys, accepted as Bearer tokens too; nil: none
	remote Remote      // the other nodes' connections; nil: this node is alone
	now    func() time.Time

	events events // the Invoke API's Event invocations running (invoke.go)
}

// APIKeys checks the Bearer alternative to SigV4 against Herald's server
// API keys; api.KeySet is one. Declared here, where it is used, so that
// this package need not import the API that serves it.
type APIKeys interface {
	// AuthorizeConnections returns the name of the API key that r
	// carries as its bearer credential, when that key may manage
	// connections (the connections or admin scope). Otherwise it returns
	// a *herald.Error: EUnauthorized when r carries no key Herald knows,
	// EForbidden when the key lacks the scope.
	AuthorizeConnections(r *http.Request) (name string, err error)
}

// Remote reaches the connections other nodes of a cluster hold
// (cluster.Node), for a request that arrived at a node which does not
// hold the connection it names.
type Remote interface {
	// Conn describes a connection another node holds; an ENotFound
	// *herald.Error when no live node holds it.
	Conn(ctx context.Context, id herald.ConnID) (herald.ConnInfo, error)
	// Post sends data to the connection on its node.
	Post(ctx context.Context, id herald.ConnID, data []byte) error
	// Disconnect closes the connection on its node.
	Disconnect(ctx context.Context, id herald.ConnID, code uint16, reason string) error
}

// WithRemote has h answer for connections that other nodes hold, through
// r, and returns h. Without it only this node's connections exist.
func (h *Handlers) WithRemote(r Remote) *Handlers {
	h.remote = r
	return h
}

// NewWithKeys returns the management API handlers. Requests must carry a
// SigV4 signature made with creds, or "Authorization: Bearer <key>" with
// a key of keys that has the connections scope. keys may be nil: SigV4
// only.
func NewWithKeys(h *hub.Hub, log *slog.Logger, creds Credentials, keys APIKeys) *Handlers {
	return &Handlers{hub: h, log: log, creds: creds, keys: keys, now: time.Now}
}

// New is NewWithKeys with the single API key of old, allowed everything.
//
// Deprecated: use NewWithKeys with the server API's api.KeySet, so that
// named keys work here too. New stays only until cmd/herald is moved
// over.
func New(h *hub.Hub, log *slog.Logger, creds Credentials, apiKey string) *Handlers {
	return NewWithKeys(h, log, creds, singleKey(apiKey))
}

// singleKey is the APIKeys of New: one key, named "default", allowed
// everything; "" is no key.
type singleKey string

func (k singleKey) AuthorizeConnections(r *http.Request) (string, error) {
	if !token.BearerIs(r, string(k)) {
		return "", herald.Errorf(herald.EUnauthorized, "missing or invalid API key")
	}
	return "default", nil
}

// awsError writes an AWS-style error.
func awsError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", errType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func gone(w http.ResponseWriter, id string) {
	awsError(w, http.StatusGone, "GoneException", "connection "+id+" is gone")
}

// authorize checks the request and, on success, returns its body (SigV4
// covers the body's hash, so it must be read first).
func (h *Handlers) authorize(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		awsError(w, http.StatusBadRequest, "BadRequestException", "could not read request body")
		return nil, false
	}
	if int64(len(body)) > maxBody {
		awsError(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException", "payload exceeds 131072 bytes")
		return nil, false
	}
	if h.keys != nil && token.Bearer(r) != "" {
		name, err := h.keys.AuthorizeConnections(r)
		switch herald.ErrorCodeOf(err) {
		case "":
			h.log.Debug("management API request", "key", name, "method", r.Method, "path", r.URL.Path)
			return body, true
		case herald.EForbidden:
			h.log.Info("management API request refused for its API key's scope", "key", name, "path", r.URL.Path)
			awsError(w, http.StatusForbidden, "ForbiddenException", "forbidden: API key "+strconv.Quote(name)+" lacks the connections scope")
			return nil, false
		}
		// Not a key Herald knows: refused below, as a (malformed) SigV4
		// Authorization header.
	}
	if h.creds.AccessKeyID == "" {
		awsError(w, http.StatusForbidden, "ForbiddenException", "SigV4 is not configured on this Herald (set HERALD_AWS_ACCESS_KEY_ID and HERALD_AWS_SECRET_ACCESS_KEY) and no valid API key was given")
		return nil, false
	}
	if err := VerifySigV4(r, body, h.creds, h.now()); err != nil {
		h.log.Info("management API request rejected", "path", r.URL.Path, "reason", err)
		awsError(w, http.StatusForbidden, "ForbiddenException", "forbidden: "+err.Error())
		return nil, false
	}
	return body, true
}

// target is the connection a request names: held here (local), or by
// another node (remote, as the registry describes it).
type target struct {
	id     herald.ConnID
	local  hub.Conn
	remote herald.ConnInfo
}

// connection authorizes the request and finds the connection named in its
// path — on this node, else through the cluster — answering GoneException
// when no node holds it. ok is false when a reply was already written.
func (h *Handlers) connection(w http.ResponseWriter, r *http.Request) (t target, body []byte, ok bool) {
	body, ok = h.authorize(w, r, MaxPostSize)
	if !ok {
		return t, nil, false
	}
	t.id = herald.ConnID(r.PathValue("id"))
	if t.local = h.hub.Get(t.id); t.local != nil {
		return t, body, true
	}
	if h.remote == nil {
		gone(w, string(t.id))
		return t, nil, false
	}
	info, err := h.remote.Conn(r.Context(), t.id)
	if err != nil {
		h.remoteFailed(w, t.id, err)
		return t, nil, false
	}
	t.remote = info
	return t, body, true
}

// remoteFailed answers for a lookup or a command that could not reach
// another node's connection: GoneException when no node holds it, else
// 503 ServiceUnavailableException, which the SDK retries.
func (h *Handlers) remoteFailed(w http.ResponseWriter, id herald.ConnID, err error) {
	if herald.ErrorCodeOf(err) == herald.ENotFound {
		gone(w, string(id))
		return
	}
	h.log.Warn("management API: the cluster could not be reached", "conn", id, "err", err)
	awsError(w, http.StatusServiceUnavailable, "ServiceUnavailableException", "the connection's node cannot be reached now; retry")
}

// PostToConnection sends the raw body to one connection: exactly those
// bytes to a raw connection, wrapped in a (non-durable) envelope on
// herald.v1. For a connection on another node, 200 means the broker took
// the message for that node.
func (h *Handlers) PostToConnection() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, body, ok := h.connection(w, r)
		if !ok {
			return
		}
		if t.local == nil {
			if err := h.remote.Post(r.Context(), t.id, body); err != nil {
				h.remoteFailed(w, t.id, err)
				return
			}
		} else if !hub.Post(t.local, body, h.now()) {
			gone(w, string(t.id))
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// connectionInfo is GetConnection's reply, in API Gateway's field names.
type connectionInfo struct {
	ConnectedAt  string `json:"connectedAt"`
	LastActiveAt string `json:"lastActiveAt"`
	Identity     struct {
		SourceIP  string `json:"sourceIp"`
		UserAgent string `json:"userAgent"`
	} `json:"identity"`
}

// GetConnection describes one connection. For a connection on another
// node the registry answers, and lastActiveAt is its connect time: the
// registry does not follow each connection's traffic.
func (h *Handlers) GetConnection() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, _, ok := h.connection(w, r)
		if !ok {
			return
		}
		info := t.remote
		if t.local != nil {
			info = t.local.Info()
		}
		var out connectionInfo
		out.ConnectedAt = info.ConnectedAt.Format(time.RFC3339Nano)
		out.LastActiveAt = info.LastActiveAt.Format(time.RFC3339Nano)
		out.Identity.SourceIP = info.SourceIP
		out.Identity.UserAgent = info.UserAgent
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// DeleteConnection closes one connection (close code 4003).
func (h *Handlers) DeleteConnection() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, _, ok := h.connection(w, r)
		if !ok {
			return
		}
		const reason = "disconnected by the server"
		if t.local == nil {
			if err := h.remote.Disconnect(r.Context(), t.id, wire.CloseDisconnected, reason); err != nil {
				h.remoteFailed(w, t.id, err)
				return
			}
		} else {
			t.local.Close(wire.CloseDisconnected, reason)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
