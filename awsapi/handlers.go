// Package awsapi serves the API Gateway Management API — POST, GET and
// DELETE /@connections/{id} — so code written for AWS, using the unmodified
// aws-sdk-go-v2 apigatewaymanagementapi client, works against Herald.
//
// Everything here speaks AWS's shapes, not Herald's: errors are
// {"message":…} with an X-Amzn-ErrorType header naming the exception,
// because that header is what the SDK turns into *types.GoneException and
// friends (a bare status would surface as an unknown error).
package awsapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
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
	apiKey string      // Herald's API key, accepted as a Bearer token too
	now    func() time.Time
}

// New returns the management API handlers. Requests must carry a SigV4
// signature made with creds, or "Authorization: Bearer <apiKey>".
func New(h *hub.Hub, log *slog.Logger, creds Credentials, apiKey string) *Handlers {
	return &Handlers{hub: h, log: log, creds: creds, apiKey: apiKey, now: time.Now}
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
	if token.BearerIs(r, h.apiKey) {
		return body, true
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

// connection authorizes the request and finds the connection named in its
// path, answering GoneException when there is none. ok is false when a
// reply was already written.
func (h *Handlers) connection(w http.ResponseWriter, r *http.Request) (c hub.Conn, body []byte, ok bool) {
	body, ok = h.authorize(w, r, MaxPostSize)
	if !ok {
		return nil, nil, false
	}
	id := r.PathValue("id")
	if c = h.hub.Get(herald.ConnID(id)); c == nil {
		gone(w, id)
		return nil, nil, false
	}
	return c, body, true
}

// PostToConnection sends the raw body to one connection: exactly those
// bytes to a raw connection, wrapped in a (non-durable) envelope on
// herald.v1.
func (h *Handlers) PostToConnection() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, body, ok := h.connection(w, r)
		if !ok {
			return
		}
		if !hub.Post(c, body, h.now()) {
			gone(w, string(c.ID()))
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

// GetConnection describes one connection.
func (h *Handlers) GetConnection() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, ok := h.connection(w, r)
		if !ok {
			return
		}
		info := c.Info()
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
		c, _, ok := h.connection(w, r)
		if !ok {
			return
		}
		c.Close(wire.CloseDisconnected, "disconnected by the server")
		w.WriteHeader(http.StatusNoContent)
	})
}
