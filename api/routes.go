package api

import (
	"log/slog"
	"net/http"

	"github.com/herald-gw/herald"
)

// addRoutes lists Herald's whole HTTP surface. Every path registered here
// is documented in docs/api.md.
func addRoutes(mux *http.ServeMux, s *Server) {
	r := router{mux: mux, allowed: map[string][]string{}}

	// Health.
	r.handle("GET", "/healthz", handleHealth())
	r.handle("GET", "/readyz", handleReady(s))

	// Gateway: browsers connect here with a client token. A page from an
	// origin not allowed is refused first; then the connect rate; then
	// the token.
	ws := closeOnRefusal(s.browserOnly(false)(handleConnect(s, func() connector { return s.wsConnector() })))
	r.handle("GET", "/ws", ws)
	if s.routes != nil {
		// An API Gateway route set is also served where API Gateway
		// serves it, wss://host/{stage}, so a client's URL only changes
		// its host.
		r.handle("GET", "/"+s.routes.Stage(), ws)
	}
	r.handle("GET", "/sse", closeOnRefusal(s.browserOnly(true)(handleConnect(s, func() connector { return sseConnector{s.sse} }))))

	// Server API, for the application's API server (API key with a scope).
	publish := s.requireKey(ScopePublish)
	read := s.requireKey(ScopeRead)
	conns := s.requireKey(ScopeConnections)
	r.handle("POST", "/v1/notify", publish(handleNotify(s)))
	r.handle("POST", "/v1/users/{user}/messages", publish(handleUserMessage(s)))
	r.handle("POST", "/v1/messages", publish(handleMultiMessage(s)))
	r.handle("POST", "/v1/broadcast", publish(handleBroadcast(s)))
	r.handle("POST", "/v1/batch", publish(handleBatch(s)))
	r.handle("GET", "/v1/users/{user}/connections", s.requireKey(ScopeRead, ScopeConnections)(handleListConnections(s)))
	r.handle("DELETE", "/v1/users/{user}/connections", conns(handleDisconnectUser(s)))
	r.handle("GET", "/v1/users/{user}/messages", read(handleHistory(s)))
	r.handle("GET", "/v1/users/{user}/inbox", read(handleInbox(s, userFromPath)))
	r.handle("GET", "/v1/users/{user}/inbox/counts", read(handleInboxCounts(s, userFromPath)))
	r.handle("POST", "/v1/users/{user}/inbox/seen", publish(handleInboxMark(s, herald.MarkSeen, userFromPath)))
	r.handle("POST", "/v1/users/{user}/inbox/read", publish(handleInboxMark(s, herald.MarkRead, userFromPath)))
	r.handle("POST", "/v1/users/{user}/inbox/archive", publish(handleInboxMark(s, herald.MarkArchived, userFromPath)))

	// Inbox API for browsers, authenticated with the user's client token.
	// Cross-origin: the dashboard is usually served from another origin.
	byToken := userFromToken(s)
	cors := s.browserOnly(true)
	r.handle("GET", "/v1/inbox", cors(handleInbox(s, byToken)))
	r.handle("GET", "/v1/inbox/counts", cors(handleInboxCounts(s, byToken)))
	r.handle("POST", "/v1/inbox/seen", cors(handleInboxMark(s, herald.MarkSeen, byToken)))
	r.handle("POST", "/v1/inbox/read", cors(handleInboxMark(s, herald.MarkRead, byToken)))
	r.handle("POST", "/v1/inbox/archive", cors(handleInboxMark(s, herald.MarkArchived, byToken)))
	r.handle("POST", "/v1/ack", cors(handleAck(s, byToken)))
	for _, p := range []string{"/v1/inbox", "/v1/inbox/counts", "/v1/inbox/seen", "/v1/inbox/read", "/v1/inbox/archive", "/v1/ack", "/sse"} {
		r.handle("OPTIONS", p, cors(handlePreflight()))
	}

	// API Gateway Management API, so AWS SDK clients work unchanged. Served
	// at the root and under one stage segment, as API Gateway's endpoint
	// (https://{api}.execute-api.{region}.amazonaws.com/{stage}) has one.
	// It authenticates on its own (SigV4, or an API key with the
	// connections scope: awsapi.New takes the KeySet), answering in
	// AWS's error shape.
	if s.aws != nil {
		for _, p := range []string{"/@connections/{id}", "/{stage}/@connections/{id}"} {
			r.handle("POST", p, s.aws.PostToConnection())
			r.handle("GET", p, s.aws.GetConnection())
			r.handle("DELETE", p, s.aws.DeleteConnection())
		}
	}

	// Lambda Invoke API, so the API server's aws-sdk-go-v2 lambda client
	// reaches Herald's functions (and the built-in herald-notify).
	if s.invoke != nil {
		r.handle("POST", "/2015-03-31/functions/{name}/invocations", s.invoke)
	}

	// The dashboard: a page served by Herald that is a client of the
	// routes above. Its files are one path segment deep, so that its
	// patterns cannot overlap the management API's /{stage}/@connections.
	if s.dash != nil {
		r.handle("GET", "/dashboard", http.RedirectHandler("/dashboard/", http.StatusMovedPermanently))
		r.handle("GET", "/dashboard/{$}", s.dash)
		r.handle("GET", "/dashboard/{file}", s.dash)
		r.handle("POST", "/dashboard/dev/{action}", s.dash)
	}

	r.finish(s.log)
}

// router registers method-specific patterns and then, for every path, a
// method-less fallback answering 405 in Herald's JSON error shape (the
// standard mux would answer in plain text).
type router struct {
	mux     *http.ServeMux
	allowed map[string][]string
	order   []string
}

func (r *router) handle(method, path string, h http.Handler) {
	r.mux.Handle(method+" "+path, h)
	if _, ok := r.allowed[path]; !ok {
		r.order = append(r.order, path)
	}
	r.allowed[path] = append(r.allowed[path], method)
}

func (r *router) finish(log *slog.Logger) {
	for _, p := range r.order {
		r.mux.Handle(p, handleMethodNotAllowed(log, r.allowed[p]))
	}
	r.mux.Handle("/", handleNotFound(log))
}
