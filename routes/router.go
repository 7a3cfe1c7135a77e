// Package routes is API Gateway's WebSocket API in Herald: a route set
// ($connect, $disconnect, $default and custom route keys picked by a
// selection expression such as $request.body.action), each route backed by
// an integration — an HTTP endpoint, or a Lambda function run unmodified
// by Herald's runtime host — that receives API Gateway's WebSocket proxy
// event, byte for byte the events.APIGatewayWebsocketProxyRequest that
// aws-lambda-go decodes.
//
// The gateway asks the Router before it answers a handshake ($connect may
// refuse it with any status), sessions hand it their clients' messages,
// and every routed session tells it once how it ended, so $disconnect runs
// exactly once per connection whatever closed it. Message and disconnect
// integrations run on the Router's own goroutines, never on a connection's
// reader: a slow function must not hold up the epoll loop.
package routes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/wire"
)

// Close codes and reasons of the limits AWSCompatible enforces. API
// Gateway says 1001 "Going away" for both; Herald's reasons say which.
const (
	ReasonIdle     = "Going away: idle for 10 minutes (API Gateway's limit)"
	ReasonDuration = "Going away: connected for 2 hours (API Gateway's limit)"
)

// Messages API Gateway itself sends a client, in gatewayReply's shape.
const (
	replyForbidden = "Forbidden"             // no route and no $default
	replyInternal  = "Internal server error" // the integration failed
	replyThrottled = "Too Many Requests"     // MaxInFlight reached
)

// Router runs a route set. Create it with New; it implements
// session.Routes.
type Router struct {
	cfg    *Config
	sel    selection
	routes map[string]integration
	log    *slog.Logger
	now    func() time.Time

	inflight chan struct{} // one token per running message integration
	running  tracker       // every integration goroutine, for Wait

	mu    sync.Mutex
	conns map[herald.ConnID]*connState
}

// connState is what the Router keeps per connection: what its events
// repeat, the session once it opened, and when its client last spoke.
type connState struct {
	info connInfo
	s    *session.Session // nil until Opened
	last time.Time        // the client's last message (or the connect)
}

// New returns a Router for cfg (checked by Load or Parse). invoke runs
// the lambda integrations' functions; it may be nil when no route is of
// kind lambda.
func New(cfg *Config, invoke InvokeFunc, log *slog.Logger) (*Router, error) {
	sel, err := parseSelection(cfg.SelectionExpression)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	r := &Router{
		cfg: cfg, sel: sel, routes: map[string]integration{}, log: log, now: time.Now,
		inflight: make(chan struct{}, max(cfg.MaxInFlight, 1)),
		conns:    map[herald.ConnID]*connState{},
	}
	client := &http.Client{} // each request carries its route's timeout
	for key, rt := range cfg.Routes {
		switch rt.Kind {
		case KindHTTP:
			r.routes[key] = &httpIntegration{url: rt.URL, timeout: time.Duration(rt.Timeout), client: client}
		case KindLambda:
			if invoke == nil {
				return nil, fmt.Errorf("routes: route %q invokes function %q, but no runtime host was given", key, rt.Function)
			}
			r.routes[key] = &lambdaIntegration{function: rt.Function, invokeFn: invoke}
		}
	}
	return r, nil
}

// SetClock replaces the Router's clock (tests step it; see Sweep).
func (r *Router) SetClock(now func() time.Time) { r.now = now }

// Config returns the route set's configuration.
func (r *Router) Config() *Config { return r.cfg }

// HeraldAuth reports whether connections pass Herald's token check
// before $connect (auth = "herald") rather than being authorised by the
// $connect integration alone.
func (r *Router) HeraldAuth() bool { return r.cfg.Auth == AuthHerald }

// MaxMessage is the largest client message routed connections may send
// (API Gateway's 128 KB), and MaxFrame the largest frame (32 KB when
// AWSCompatible, else 0: no limit of its own).
func (r *Router) MaxMessage() int { return AWSMaxMessage }

// MaxFrame is the largest single frame when AWSCompatible, else 0.
func (r *Router) MaxFrame() int {
	if r.cfg.AWSCompatible {
		return AWSMaxFrame
	}
	return 0
}

// ConnectRequest is a handshake the gateway is about to answer.
type ConnectRequest struct {
	ID      herald.ConnID
	Request *http.Request
	User    herald.UserID // from Herald's token check; "" without one
}

// ConnectRefused is the $connect integration's refusal: the handshake is
// answered with Status, as API Gateway does.
type ConnectRefused struct {
	Status int
	Err    error // why, when the integration failed rather than answered
}

func (e *ConnectRefused) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("$connect integration failed: %v", e.Err)
	}
	return fmt.Sprintf("$connect integration refused the connection with status %d", e.Status)
}

func (e *ConnectRefused) Unwrap() error { return e.Err }

// Connect runs $connect for a new connection, before its handshake is
// answered. nil admits it: from then on the Router knows the connection
// and, whatever happens to it, runs $disconnect once — when its session
// ends, or at Abandon if it never gets one. A *ConnectRefused error says
// with what status to refuse the handshake: the integration's own status
// outside 2xx (a status that is not an HTTP error becomes 502), or 502
// when the integration failed (API Gateway's answer too). Without a
// $connect route every connection is admitted.
func (r *Router) Connect(ctx context.Context, req ConnectRequest) error {
	now := r.now()
	st := &connState{
		info: connInfo{
			id: string(req.ID), connectedAt: now, domain: req.Request.Host,
			sourceIP: hostOnly(req.Request.RemoteAddr), userAgent: req.Request.UserAgent(),
			principal: string(req.User),
		},
		last: now,
	}
	if in, ok := r.routes[KeyConnect]; ok {
		ev, _ := json.Marshal(r.connectEvent(&st.info, req.Request, now))
		// API Gateway's integration timeout bounds the handshake too: a
		// function queued behind busy ones must not hold it open forever.
		ctx, cancel := context.WithTimeout(ctx, IntegrationTimeout)
		reply, err := in.invoke(ctx, ev)
		cancel()
		switch {
		case err != nil:
			r.log.Warn("$connect integration failed; handshake refused with 502", "conn", req.ID, "err", err)
			return &ConnectRefused{Status: http.StatusBadGateway, Err: err}
		case reply.StatusCode < 200 || reply.StatusCode > 299:
			status := reply.StatusCode
			if status < 400 || status > 599 {
				status = http.StatusBadGateway
			}
			r.log.Info("$connect integration refused the connection", "conn", req.ID, "status", reply.StatusCode)
			return &ConnectRefused{Status: status}
		}
	}
	r.mu.Lock()
	r.conns[req.ID] = st
	r.mu.Unlock()
	return nil
}

// Abandon runs $disconnect for a connection Connect admitted that never
// got a session (its handshake answer could not be written, say).
func (r *Router) Abandon(id herald.ConnID, code int, reason string) {
	r.disconnect(id, code, reason)
}

// Opened implements session.Routes.
func (r *Router) Opened(s *session.Session) {
	r.mu.Lock()
	if st := r.conns[s.ID()]; st != nil {
		st.s = s
	}
	r.mu.Unlock()
}

// Ended implements session.Routes: $disconnect, once.
func (r *Router) Ended(s *session.Session, code int, reason string) {
	r.disconnect(s.ID(), code, reason)
}

func (r *Router) disconnect(id herald.ConnID, code int, reason string) {
	r.mu.Lock()
	st := r.conns[id]
	delete(r.conns, id)
	r.mu.Unlock()
	if st == nil {
		return // never admitted, or already disconnected
	}
	in, ok := r.routes[KeyDisconnect]
	if !ok {
		return
	}
	ev, _ := json.Marshal(r.disconnectEvent(&st.info, code, reason, r.now()))
	// $disconnect is not throttled: it must run for every connection, and
	// each connection causes one.
	r.running.add()
	go func() {
		defer r.running.done()
		ctx, cancel := context.WithTimeout(context.Background(), IntegrationTimeout)
		defer cancel()
		reply, err := in.invoke(ctx, ev)
		switch {
		case err != nil:
			r.log.Warn("$disconnect integration failed", "conn", id, "err", err)
		case reply.StatusCode < 200 || reply.StatusCode > 299:
			r.log.Info("$disconnect integration answered an error status", "conn", id, "status", reply.StatusCode)
		}
	}()
}

// Message implements session.Routes: it picks the message's route and
// runs its integration in the background. A message with no route and no
// $default is answered "Forbidden", as API Gateway answers it.
func (r *Router) Message(s *session.Session, p []byte, binary bool) {
	now := r.now()
	r.mu.Lock()
	st := r.conns[s.ID()]
	if st != nil {
		st.last = now
	}
	r.mu.Unlock()
	if st == nil {
		return // disconnected meanwhile
	}
	key := ""
	if !binary {
		key = r.sel.key(p)
	}
	in, ok := r.routes[key]
	if key == "" || !ok || key == KeyConnect || key == KeyDisconnect {
		key = KeyDefault
		in, ok = r.routes[KeyDefault]
	}
	ev := r.messageEvent(&st.info, key, p, binary, now)
	if !ok {
		r.reply(s, gatewayReply(replyForbidden, string(s.ID()), ev.RequestContext.RequestID))
		return
	}
	select {
	case r.inflight <- struct{}{}:
	default:
		r.log.Warn("message integrations at max_in_flight; message refused", "conn", s.ID(), "route", key)
		r.reply(s, gatewayReply(replyThrottled, string(s.ID()), ev.RequestContext.RequestID))
		return
	}
	b, _ := json.Marshal(ev) // copies p: the caller's buffer is borrowed
	withResponse := r.cfg.Routes[key].Response
	r.running.add()
	go func() {
		defer r.running.done()
		defer func() { <-r.inflight }()
		ctx, cancel := context.WithTimeout(context.Background(), IntegrationTimeout)
		defer cancel()
		reply, err := in.invoke(ctx, b)
		if err != nil {
			r.log.Warn("message integration failed", "conn", s.ID(), "route", key, "err", err)
			r.reply(s, gatewayReply(replyInternal, string(s.ID()), ev.RequestContext.RequestID))
			return
		}
		if !withResponse || reply.Body == "" {
			return
		}
		body := []byte(reply.Body)
		if reply.IsBase64Encoded {
			if body, err = base64.StdEncoding.DecodeString(reply.Body); err != nil {
				r.log.Warn("route response is not valid base64", "conn", s.ID(), "route", key)
				return
			}
		}
		r.reply(s, body)
	}()
}

// reply sends b to the session as an unstored message, as
// PostToConnection does.
func (r *Router) reply(s *session.Session, b []byte) {
	hub.Post(s, b, r.now())
}

// Run enforces API Gateway's idle and duration limits, when
// AWSCompatible, until ctx is done, checking every few seconds.
func (r *Router) Run(ctx context.Context) {
	if !r.cfg.AWSCompatible {
		return
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sweep()
		}
	}
}

// Sweep closes, with 1001, every connection over API Gateway's limits as
// of the Router's clock: idle (no client message) for AWSIdleTimeout, or
// connected for AWSMaxDuration. Run calls it; tests call it after
// stepping the clock.
func (r *Router) Sweep() {
	if !r.cfg.AWSCompatible {
		return
	}
	now := r.now()
	type closing struct {
		s      *session.Session
		reason string
	}
	var out []closing
	r.mu.Lock()
	for _, st := range r.conns {
		switch {
		case st.s == nil:
		case now.Sub(st.info.connectedAt) >= AWSMaxDuration:
			out = append(out, closing{st.s, ReasonDuration})
		case now.Sub(st.last) >= AWSIdleTimeout:
			out = append(out, closing{st.s, ReasonIdle})
		}
	}
	r.mu.Unlock()
	for _, c := range out {
		c.s.Close(wire.CloseGoingAway, c.reason)
	}
}

// Wait waits for the integrations still running ($disconnect above all,
// after a drain closed every connection) until ctx is done.
func (r *Router) Wait(ctx context.Context) error {
	idle := r.running.idle()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("routes: integrations still running: %w", ctx.Err())
	}
}

// tracker counts running goroutines. Unlike a sync.WaitGroup it may be
// added to while someone waits — a drain closes connections, so starts
// $disconnects, while shutdown already waits for them.
type tracker struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0; nil while n is 0
}

func (t *tracker) add() {
	t.mu.Lock()
	if t.n == 0 {
		t.zero = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		close(t.zero)
		t.zero = nil
	}
	t.mu.Unlock()
}

// idle returns a channel closed when nothing runs any more, or nil when
// nothing runs now.
func (t *tracker) idle() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.zero
}

// Len is the number of connections the Router knows.
func (r *Router) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Stage is the route set's stage name.
func (r *Router) Stage() string { return r.cfg.Stage }
