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
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

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

// Config holds the API's settings. The zero value serves no API key, only
// same-origin browsers and no rate limits; call Validate before New.
type Config struct {
	// APIKey is the server API's single bearer key of old: it stays, as
	// the key named DefaultKeyName with every scope (admin). Optional
	// when APIKeys is given.
	APIKey string
	// APIKeys are named keys with scopes (see Scope).
	APIKeys []APIKey

	// AllowedOrigins are the web pages' origins that may use the browser
	// routes (/ws, /sse, /v1/inbox…, /v1/ack): "*" for any; an origin,
	// scheme://host[:port]; or https://*.example.com for any subdomain.
	// The request's own origin is always allowed, so an empty list means
	// same-origin only. A request without an Origin header is not a
	// browser's and is not checked.
	AllowedOrigins []string
	// CORSOrigins is AllowedOrigins' former name, kept as an alias: the
	// two lists are joined.
	CORSOrigins []string

	// ConnectRate is how many /ws and /sse connects a second one client
	// address may make, with bursts of ConnectBurst (0: one second's
	// worth). 0 is no limit. See DefaultConnectRate.
	ConnectRate  float64
	ConnectBurst int
	// KeyRate is how many server API requests a second one API key may
	// make, with bursts of KeyBurst (0: one second's worth). 0 is no
	// limit.
	KeyRate  float64
	KeyBurst int
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client the connect limit counts. Empty: the header is ignored.
	// (Connection listings' source_ip stays the TCP peer either way.)
	TrustedProxies []netip.Prefix

	// Observer is told of refusals, for metrics; nil tells no one.
	Observer Observer
}

// Defaults for the limits, for cmd/herald to start from. 100 connects a
// second with bursts of 1,000 per address never touch a legitimate
// client: an office of 500 people behind one NAT, two tabs each, all
// reconnecting after a network blip, is one burst of 1,000; a steady 100
// a second is 360,000 an hour, more than any one address needs. A client
// looping on reconnect, or one host flooding handshakes, is held to it.
// Server API keys are unlimited by default: a key's holder is the
// operator's own backend, whose legitimate rate Herald cannot guess, and
// any default cap would break some sender (a notification fan-out, the
// load tool) by surprise. Set KeyRate to contain a runaway sender or a
// leaked narrow key.
const (
	DefaultConnectRate  = 100
	DefaultConnectBurst = 1000
	DefaultKeyRate      = 0
	DefaultKeyBurst     = 0
)

// Validate checks the settings, so that cmd/herald can refuse a bad
// configuration at start with a message naming what is wrong. (New does
// not fail: it refuses what it cannot understand, fail-closed.)
func (c Config) Validate() error {
	if _, err := c.KeySet(); err != nil {
		return err
	}
	for _, k := range c.APIKeys {
		if err := checkSecret(k); err != nil {
			return err
		}
	}
	if _, err := newOriginPolicy(c.AllowedOrigins, c.CORSOrigins); err != nil {
		return err
	}
	switch {
	case c.ConnectRate < 0 || c.ConnectBurst < 0:
		return errors.New("connect rate and burst must not be negative (0 is no limit)")
	case c.KeyRate < 0 || c.KeyBurst < 0:
		return errors.New("API key rate and burst must not be negative (0 is no limit)")
	}
	return nil
}

// KeySet returns the server API's keys: APIKey as DefaultKeyName with the
// admin scope, and APIKeys. It is also what awsapi.New takes, so that the
// management API accepts the same keys (those with the connections
// scope).
func (c Config) KeySet() (*KeySet, error) {
	keys := slices.Clone(c.APIKeys)
	if c.APIKey != "" {
		keys = append([]APIKey{{Name: DefaultKeyName, Secret: c.APIKey, Scopes: []Scope{ScopeAdmin}}}, keys...)
	}
	return NewKeySet(keys...)
}

// Observer is told of every request the API refuses for its identity or
// its rate, with a kind from a small fixed set (the Auth… and Limit…
// constants), fit for a metric label. Its methods are called on the
// request's goroutine and must be quick.
type Observer interface {
	RateLimited(kind string)
	AuthFailed(kind string)
}

// Kinds an Observer is told.
const (
	LimitConnect = "connect" // a /ws or /sse connect over the per-address rate
	LimitAPIKey  = "api_key" // a server API request over its key's rate

	AuthAPIKey = "api_key" // a server API request without a known key
	AuthScope  = "scope"   // a known key without the scope the route needs
	AuthOrigin = "origin"  // a browser request from an origin not allowed
	AuthToken  = "token"   // a browser request with a bad client token
)

// nopObserver is the Observer of a nil Config.Observer.
type nopObserver struct{}

func (nopObserver) RateLimited(string) {}
func (nopObserver) AuthFailed(string)  {}

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
	// Broadcast sends data to every connection and returns once it is
	// accepted (the writes go on), with the count of connections it is
	// queued to; a nil message when ctx ended before it was accepted.
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
	// Health, when set, is asked by /readyz whether the node's
	// dependencies (the store) work; nil means they always do.
	Health Health
	// Dashboard, when set, serves everything under /dashboard/ (the page
	// and its own routes); nil leaves it out.
	Dashboard http.Handler
	// Routes, when set, is the API Gateway route set the WebSocket
	// transport runs (routes.Router): /ws is also served at /{stage}, and
	// without Herald's token check when the set's $connect authorises.
	Routes RouteSet
	// Invoke, when set, serves the Lambda Invoke API,
	// POST /2015-03-31/functions/{name}/invocations.
	Invoke http.Handler
	// Cluster, when set, lists a user's connections on every node
	// (cluster.Node); nil lists this node's hub.
	Cluster Cluster
}

// Cluster lists connections across the nodes of a cluster and reaches
// the ones other nodes hold.
type Cluster interface {
	// UserConns lists user's connections on every node, oldest first,
	// each with its Node.
	UserConns(ctx context.Context, user herald.UserID) ([]herald.ConnInfo, error)
	// Ack hands user's ack of offset on connection id to the node that
	// holds it. An ENotFound *herald.Error when no node holds id for
	// user; nil once the bus took the ack.
	Ack(ctx context.Context, user herald.UserID, id herald.ConnID, offset uint64) error
}

// RouteSet is what the API needs of an API Gateway route set.
type RouteSet interface {
	// HeraldAuth reports whether WebSocket clients pass Herald's token
	// check; false leaves authorisation to the $connect integration.
	HeraldAuth() bool
	// Stage is the stage name, under which the WebSocket API is served too.
	Stage() string
}

// Health reports whether what the node depends on works: nil, or why not.
type Health interface {
	Ready() error
}

// Unready is an error a Health may return to name the dependency that
// fails: /readyz's message then says "<What> failing" rather than
// "store failing", which is what it says of any other error.
type Unready struct {
	What string // "broker", say
	Err  error
}

func (u *Unready) Error() string { return u.What + ": " + u.Err.Error() }
func (u *Unready) Unwrap() error { return u.Err }

// Server holds the API's dependencies.
type Server struct {
	cfg      Config
	log      *slog.Logger
	hub      Registry
	gateway  WebSocket
	sse      EventStream
	stream   Streams
	aws      AWSHandlers
	health   Health
	dash     http.Handler
	routes   RouteSet
	invoke   http.Handler
	cluster  Cluster
	ready    atomic.Bool
	keys     *KeySet
	origins  *originPolicy
	connects *addrLimiter             // nil: no connect limit
	keyRates map[string]*rate.Limiter // by key name; nil: no key limit
	observer Observer
	now      func() time.Time // the limiters' clock; tests step it
}

// New returns Herald's HTTP API over d. A configuration Validate refuses
// is logged and served fail-closed: bad keys make the server API refuse
// every key, bad origins make the browser routes refuse every Origin.
func New(cfg Config, log *slog.Logger, d Deps) *Server {
	s := &Server{
		cfg: cfg, log: log, hub: d.Hub, gateway: d.Gateway, sse: d.SSE, stream: d.Stream, aws: d.AWS, health: d.Health, dash: d.Dashboard,
		routes: d.Routes, invoke: d.Invoke, cluster: d.Cluster,
		observer: cfg.Observer, now: time.Now,
	}
	if s.observer == nil {
		s.observer = nopObserver{}
	}
	var err error
	if s.keys, err = cfg.KeySet(); err != nil {
		log.Error("API keys refused; the server API accepts none", "err", err)
		s.keys = nil
	}
	if s.origins, err = newOriginPolicy(cfg.AllowedOrigins, cfg.CORSOrigins); err != nil {
		log.Error("allowed origins refused; browsers are allowed only their own origin", "err", err)
		s.origins = &originPolicy{}
	}
	s.connects = newAddrLimiter(cfg.ConnectRate, cfg.ConnectBurst, maxLimitedAddrs)
	s.keyRates = newKeyLimiters(s.keys, cfg.KeyRate, cfg.KeyBurst)
	s.ready.Store(true)
	return s
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, s)
	return securityHeaders(mux)
}

// SetReady marks the node ready or not (draining) for /readyz and /ws.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Ready reports what /readyz reports: nil, or why the node should get no
// new traffic (draining, or a dependency failing).
func (s *Server) Ready() error {
	if !s.ready.Load() {
		return herald.Errorf(herald.EUnavailable, "draining")
	}
	if s.health != nil {
		if err := s.health.Ready(); err != nil {
			what := "store"
			if u := (*Unready)(nil); errors.As(err, &u) {
				what = u.What
			}
			return &herald.Error{Code: herald.EUnavailable, Message: what + " failing; the server log says why", Err: err}
		}
	}
	return nil
}

// statusOf maps an error code to its HTTP status (docs/api.md lists both).
func statusOf(code herald.ErrorCode) int {
	switch code {
	case herald.EInvalidJSON, herald.EInvalidRequest:
		return http.StatusBadRequest
	case herald.EUnauthorized:
		return http.StatusUnauthorized
	case herald.EForbidden:
		return http.StatusForbidden
	case herald.ENotFound:
		return http.StatusNotFound
	case herald.EMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case herald.EPayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case herald.EUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case herald.EUpgradeRequired:
		return http.StatusUpgradeRequired
	case herald.ETooManyRequests:
		return http.StatusTooManyRequests
	case herald.EUnavailable:
		return http.StatusServiceUnavailable
	case herald.EConnectRefused:
		return http.StatusForbidden // unless the integration's own status is carried
	case herald.EIntegrationFailed:
		return http.StatusBadGateway
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
	if e := (*herald.Error)(nil); errors.As(err, &e) && e.Status >= 400 && e.Status <= 599 {
		status = e.Status
	}
	// A 503 is the node saying it is draining or its store is down: the
	// reason is logged once where it is decided, not once per request.
	if status >= 500 && status != http.StatusServiceUnavailable {
		args := []any{"method", r.Method, "path", r.URL.Path, "err", err}
		if key := KeyName(r.Context()); key != "" {
			args = append(args, "key", key)
		}
		log.Error("request failed", args...)
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
	// A body with a Content-Length within the limit is read into a buffer
	// of its size (one byte more, to see the end): io.ReadAll would grow
	// one from 512 bytes, copying as it goes. The length is only a hint;
	// the limit is what the read enforces.
	size := 512
	if n := r.ContentLength; n > 0 && n <= int64(limit) {
		size = int(n) + 1
	}
	b, err := readAll(io.LimitReader(r.Body, int64(limit)+1), size)
	if err != nil {
		return nil, &herald.Error{Code: herald.EInvalidRequest, Message: "could not read request body", Err: err}
	}
	if len(b) > limit {
		return nil, herald.Errorf(herald.EPayloadTooLarge, "request body exceeds %d bytes", limit)
	}
	return b, nil
}

// readAll is io.ReadAll starting from a buffer of size bytes.
func readAll(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, size)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // let append grow it
		}
	}
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

// requireKey wraps a server API handler with its key check: a known key
// (else 401), with one of the scopes anyOf (else 403), within its key's
// rate (else 429). The key's name goes into the request's context (see
// KeyName) for the handlers' logs and the caller's metrics.
func (s *Server) requireKey(anyOf ...Scope) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, err := s.keys.Authorize(r, anyOf...)
			if name != "" {
				r = withKeyName(r, name)
			}
			switch {
			case herald.ErrorCodeOf(err) == herald.EUnauthorized:
				s.observer.AuthFailed(AuthAPIKey)
			case err != nil:
				s.observer.AuthFailed(AuthScope)
				// Not an attacker's doing (the key is valid), so worth
				// an operator's attention: a key set up too narrow.
				s.log.Info("API key refused for its scope", "key", name, "method", r.Method, "path", r.URL.Path, "need", scopeList(anyOf))
			default:
				if lim := s.keyRates[name]; lim != nil {
					if wait := reserve(lim, s.now()); wait > 0 {
						s.observer.RateLimited(LimitAPIKey)
						err = tooMany(w, wait, "requests with this API key")
					}
				}
			}
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// browserOnly wraps a route browsers call: a request from a page whose
// origin is not allowed is refused (403) before anything else, the token
// included; one from an allowed page gets the CORS headers, so that its
// script may read the reply (errors too). A request without Origin is no
// browser's and passes untouched.
//
// A refused origin gets a 403 rather than a normal reply without CORS
// headers (which would leave the refusal to the browser): the request
// would otherwise still run — a POST marks an inbox, /sse opens a stream
// — and the 403 tells the operator, in the browser's network panel and
// the metrics, why the page fails, where a bare CORS failure says
// nothing. Tokens travel in the Authorization header or the URL, never in
// cookies, so an allowed origin, even "*", gains no ambient credential.
func (s *Server) browserOnly(cors bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			if cors {
				h.Add("Vary", "Origin")
			}
			if o := r.Header.Get("Origin"); o != "" {
				if !s.origins.allows(o, r) {
					s.observer.AuthFailed(AuthOrigin)
					s.log.Debug("origin refused", "origin", o, "method", r.Method, "path", r.URL.Path)
					writeError(w, r, s.log, herald.Errorf(herald.EForbidden, "origin %q is not allowed to call Herald (see HERALD_ALLOWED_ORIGINS)", o))
					return
				}
				if cors {
					h.Set("Access-Control-Allow-Origin", o)
					h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
					h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
					h.Set("Access-Control-Max-Age", "600")
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// admitConnect applies the per-address connect limit to a /ws or /sse
// request, reporting false after writing the 429.
func (s *Server) admitConnect(w http.ResponseWriter, r *http.Request) bool {
	if s.connects == nil {
		return true
	}
	key, ok := connectKey(r, s.cfg.TrustedProxies)
	if !ok {
		return true
	}
	if wait := s.connects.admit(key, s.now()); wait > 0 {
		s.observer.RateLimited(LimitConnect)
		s.log.Debug("connect refused for its rate", "client", key.String(), "path", r.URL.Path)
		writeError(w, r, s.log, tooMany(w, wait, "connects from this address"))
		return false
	}
	return true
}

func handlePreflight() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
}
