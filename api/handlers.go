package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"regexp"
	"strings"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
)

func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReady answers 503 while draining so a load balancer stops sending
// new connections before they are refused.
func handleReady(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// connector is a transport as handleConnect drives it: WebSocket's
// Accept, or EventStream's Serve under that name.
type connector interface {
	Authenticator
	Accept(w http.ResponseWriter, r *http.Request, claims token.Claims) error
}

type sseConnector struct{ EventStream }

// wsConnector is /ws's transport: the gateway, whose token check is left
// out when an API Gateway route set's $connect authorises instead.
func (s *Server) wsConnector() connector {
	if s.routes != nil && !s.routes.HeraldAuth() {
		return openConnector{s.gateway}
	}
	return s.gateway
}

// openConnector admits every request to the transport with no claims: no
// user, no expiry. The route set's $connect decides.
type openConnector struct{ WebSocket }

func (openConnector) Authenticate(*http.Request) (token.Claims, error) { return token.Claims{}, nil }

func (c sseConnector) Accept(w http.ResponseWriter, r *http.Request, claims token.Claims) error {
	return c.Serve(w, r, claims)
}

// handleConnect serves GET /ws and GET /sse: a draining node refuses at
// once (the client is to go to another node, whoever it is), then the
// connect rate and the token are checked — the cheap refusals before the
// transport does any work — and the transport takes over. transport is
// called per request, so that a Server without one still builds its
// routes.
func handleConnect(s *Server, transport func() connector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			writeError(w, r, s.log, herald.Errorf(herald.EUnavailable, "draining; reconnect to another node"))
			return
		}
		if !s.admitConnect(w, r) {
			return
		}
		t := transport()
		claims, err := t.Authenticate(r)
		if err != nil {
			s.observer.AuthFailed(AuthToken)
			writeError(w, r, s.log, err)
			return
		}
		if err := t.Accept(w, r, claims); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

// closeOnRefusal makes every refusal of a connect route (/ws, /sse) end
// its HTTP/1.x connection: a client refused for its token, its origin,
// its rate or a draining node has nothing more to ask on that connection,
// and keeping it open would let a flood of refused handshakes hold idle
// sockets until IdleTimeout. (HTTP/2 has no Connection header; a stream
// ends by itself.)
func closeOnRefusal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 {
			w = &refusalCloser{ResponseWriter: w}
		}
		next.ServeHTTP(w, r)
	})
}

type refusalCloser struct{ http.ResponseWriter }

func (c *refusalCloser) WriteHeader(status int) {
	if status >= 400 {
		c.Header().Set("Connection", "close")
	}
	c.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (Hijack,
// Flush) through the wrapper.
func (c *refusalCloser) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// handleAck serves POST /v1/ack {"connection_id","offset"}: the ack of a
// client that cannot send one on its connection (SSE). It is the same ack
// as herald.v1's, counted for that connection.
func handleAck(s *Server, userOf func(*http.Request) (herald.UserID, error)) http.Handler {
	type request struct {
		Conn   *herald.ConnID `json:"connection_id"`
		Offset *uint64        `json:"offset"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := userOf(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		var req request
		if err := readJSON(r, &req); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		switch {
		case req.Conn == nil || *req.Conn == "":
			err = herald.Errorf(herald.EInvalidRequest, "connection_id is required")
		case req.Offset == nil:
			err = herald.Errorf(herald.EInvalidRequest, "offset is required")
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		c := s.hub.Get(*req.Conn)
		if c == nil && s.cluster != nil {
			// Another node may hold the stream: behind a load balancer
			// without sticky sessions an SSE client's ack reaches any node.
			if err := s.cluster.Ack(r.Context(), user, *req.Conn, *req.Offset); err != nil {
				writeError(w, r, s.log, err)
				return
			}
			writeJSON(w, http.StatusAccepted, map[string]any{"connection_id": *req.Conn, "forwarded": true})
			return
		}
		a, ok := c.(hub.Acker)
		if !ok || a.User() != user {
			// Another user's connection is reported as missing, not as
			// forbidden: ids are not to be probed.
			writeError(w, r, s.log, herald.Errorf(herald.ENotFound, "no open connection %q of this user", *req.Conn))
			return
		}
		if err := a.Ack(*req.Offset); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"connection_id": *req.Conn, "acked": a.Acked()})
	})
}

// deliveryReply is the reply to a message for one user.
type deliveryReply struct {
	User        herald.UserID `json:"user_id"`
	ID          string        `json:"id"`
	Offset      uint64        `json:"offset"`
	Connections int           `json:"connections"`
	Acked       *int          `json:"acked,omitempty"` // with ?wait=ack: connections that acknowledged it
	Failed      []hub.Failure `json:"failed,omitempty"`
}

func replyFor(m *herald.Message, r hub.Result) deliveryReply {
	return deliveryReply{User: m.User, ID: m.ID, Offset: m.Offset, Connections: r.Connections, Failed: r.Failed}
}

// integerID matches the numeric user ids of the original payload (42).
var integerID = regexp.MustCompile(`^-?[0-9]+$`)

// userID accepts a user id as a JSON string or integer: the original
// notification Lambda's payload has "user_id": 42.
type userID herald.UserID

func (u *userID) UnmarshalJSON(b []byte) error {
	// The decoder hands over only valid JSON values, so a quoted string
	// without escapes is its bytes between the quotes: no second decode.
	if len(b) >= 2 && b[0] == '"' && bytes.IndexByte(b, '\\') < 0 {
		*u = userID(b[1 : len(b)-1])
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*u = userID(s)
		return nil
	}
	if !integerID.Match(b) {
		// No Field: the decoder names the field this value was for
		// (user_id, or a batch message's user); one named here would be
		// appended to that.
		return &json.UnmarshalTypeError{Value: "non-integer", Type: reflect.TypeFor[string]()}
	}
	*u = userID(b)
	return nil
}

// handleNotify serves the original notification Lambda's payload verbatim:
// {"user_id": 42, "json": "<string>"}; the string's bytes are the payload.
func handleNotify(s *Server) http.Handler {
	type request struct {
		User *userID `json:"user_id"`
		JSON *string `json:"json"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		err := readJSON(r, &req)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		switch {
		case req.User == nil:
			err = herald.Errorf(herald.EInvalidRequest, "user_id is required")
		case req.JSON == nil:
			err = herald.Errorf(herald.EInvalidRequest, "json is required")
		default:
			if err = herald.CheckUserID(string(*req.User)); err != nil {
				err = fieldError("user_id", err)
			} else {
				err = checkPayload([]byte(*req.JSON))
			}
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		s.publishOne(w, r, herald.UserID(*req.User), []byte(*req.JSON))
	})
}

// handleUserMessage delivers the request body, any JSON value, as-is.
func handleUserMessage(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := pathUser(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		body, err := readBody(r)
		switch {
		case err != nil:
		case len(bytes.TrimSpace(body)) == 0:
			// The body is the payload: an empty one is an empty JSON
			// document, as docs/api.md's error table says.
			err = herald.Errorf(herald.EInvalidJSON, "request body is empty")
		default:
			err = validPayload(body)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		s.publishOne(w, r, user, body)
	})
}

// publishOne stores and delivers one message; with ?wait=ack it then waits
// for a client's acknowledgement and reports it (a delivery receipt).
func (s *Server) publishOne(w http.ResponseWriter, r *http.Request, user herald.UserID, payload []byte) {
	wait, waitAck, err := ackWait(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	m := &herald.Message{User: user, Data: payload}
	res, err := s.stream.Publish(r.Context(), []*herald.Message{m})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out := replyFor(m, res[0])
	if waitAck {
		conns, acked := s.waitForAck(r.Context(), user, m.Offset, wait)
		out.Connections, out.Acked = conns, &acked
	}
	writeJSON(w, http.StatusOK, out)
}

func handleMultiMessage(s *Server) http.Handler {
	type request struct {
		Users []string        `json:"users"`
		Data  json.RawMessage `json:"data"`
	}
	type reply struct {
		Users       []deliveryReply `json:"users"`
		Connections int             `json:"connections"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		err := readJSON(r, &req)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		switch {
		case len(req.Users) == 0:
			err = herald.Errorf(herald.EInvalidRequest, "users must list at least one user id")
		case len(req.Users) > MaxUsers:
			err = herald.Errorf(herald.EInvalidRequest, "users lists %d ids; the limit is %d", len(req.Users), MaxUsers)
		default:
			for i, u := range req.Users {
				if e := herald.CheckUserID(u); e != nil {
					err = fieldError(fmt.Sprintf("users[%d]", i), e)
					break
				}
			}
		}
		if err == nil {
			err = validPayload(req.Data)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		msgs := make([]*herald.Message, 0, len(req.Users))
		seen := make(map[string]bool, len(req.Users))
		for _, u := range req.Users {
			if !seen[u] { // a user listed twice gets the message once
				seen[u] = true
				msgs = append(msgs, &herald.Message{User: herald.UserID(u), Data: req.Data})
			}
		}
		res, err := s.stream.Publish(r.Context(), msgs)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		out := reply{Users: make([]deliveryReply, len(msgs))}
		for i, m := range msgs {
			out.Users[i] = replyFor(m, res[i])
			out.Connections += res[i].Connections
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func handleBroadcast(s *Server) http.Handler {
	type request struct {
		Data json.RawMessage `json:"data"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		err := readJSON(r, &req)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if err := validPayload(req.Data); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		m, n := s.stream.Broadcast(r.Context(), req.Data)
		if m == nil {
			// The request ended while the node was still writing earlier
			// broadcasts: nothing was sent.
			writeError(w, r, s.log, herald.Errorf(herald.EUnavailable, "broadcast not accepted: earlier broadcasts are still being written"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": m.ID, "connections": n})
	})
}

func handleListConnections(s *Server) http.Handler {
	type reply struct {
		Connections []herald.ConnInfo `json:"connections"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := pathUser(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if s.cluster != nil {
			infos, err := s.cluster.UserConns(r.Context(), user)
			if err != nil {
				writeError(w, r, s.log, unavailable(err))
				return
			}
			writeJSON(w, http.StatusOK, reply{Connections: orEmpty(infos)})
			return
		}
		conns := s.hub.UserConns(user)
		out := reply{Connections: make([]herald.ConnInfo, len(conns))}
		for i, c := range conns {
			out.Connections[i] = c.Info()
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// orEmpty makes a nil list an empty one, so JSON has [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// unavailable gives an error of a dependency without a code of its own
// (a registry query cut off, say) the code of an outage.
func unavailable(err error) error {
	if e := (*herald.Error)(nil); errors.As(err, &e) {
		return err
	}
	return &herald.Error{Code: herald.EUnavailable, Message: "the connection registry cannot be reached", Err: err}
}

func handleDisconnectUser(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := pathUser(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		n := s.stream.DisconnectUser(r.Context(), user)
		writeJSON(w, http.StatusOK, map[string]any{"user_id": user, "closed": n})
	})
}

func handleNotFound(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, log, herald.Errorf(herald.ENotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

func handleMethodNotAllowed(log *slog.Logger, allowed []string) http.Handler {
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, r, log, herald.Errorf(herald.EMethodNotAllowed, "%s is not allowed here; allowed: %s", r.Method, allow))
	})
}

// pathUser is the {user} of the path, checked by the one user-id rule.
func pathUser(r *http.Request) (herald.UserID, error) {
	u := r.PathValue("user")
	if err := herald.CheckUserID(u); err != nil {
		return "", err
	}
	return herald.UserID(u), nil
}

// fieldError is a user-id check's error naming the body field it is
// about: the message says which of many ids is wrong.
func fieldError(field string, err error) error {
	return &herald.Error{Code: herald.EInvalidRequest, Message: field + ": " + herald.ErrorMessageOf(err), Err: err}
}

// validPayload checks that p is present, valid JSON and within the limit.
func validPayload(p []byte) error {
	if len(bytes.TrimSpace(p)) == 0 {
		return herald.Errorf(herald.EInvalidRequest, "data is required")
	}
	if !json.Valid(p) {
		return herald.Errorf(herald.EInvalidJSON, "payload is not valid JSON")
	}
	return checkPayload(p)
}

// decodedPayload is validPayload for a json.RawMessage that a successful
// json.Unmarshal produced, which is valid JSON by construction.
func decodedPayload(p json.RawMessage) error {
	if len(p) == 0 {
		return herald.Errorf(herald.EInvalidRequest, "data is required")
	}
	return checkPayload(p)
}
