package routes

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// Event types of requestContext.eventType.
const (
	EventConnect    = "CONNECT"
	EventMessage    = "MESSAGE"
	EventDisconnect = "DISCONNECT"
)

// requestTimeLayout is requestContext.requestTime's, as API Gateway writes it.
const requestTimeLayout = "02/Jan/2006:15:04:05 -0700"

// connInfo is what every event of one connection repeats: who connected,
// where, when, as whom.
type connInfo struct {
	id          string
	connectedAt time.Time
	domain      string // the Host the client connected to
	sourceIP    string
	userAgent   string
	principal   string // the user Herald's token check found; "" without one
}

// newEvent returns the event of routeKey for c, in the shape of
// aws-lambda-go's events.APIGatewayWebsocketProxyRequest — the type the
// original Lambdas decode, so that what Herald sends is byte-compatible by
// construction rather than by care.
func (r *Router) newEvent(c *connInfo, routeKey, eventType string, now time.Time) events.APIGatewayWebsocketProxyRequest {
	reqID := newRequestID()
	ev := events.APIGatewayWebsocketProxyRequest{
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			RouteKey:          routeKey,
			EventType:         eventType,
			ConnectionID:      c.id,
			ConnectedAt:       c.connectedAt.UnixMilli(),
			DomainName:        c.domain,
			Stage:             r.cfg.Stage,
			APIID:             r.cfg.APIID,
			RequestID:         reqID,
			ExtendedRequestID: reqID,
			RequestTime:       now.UTC().Format(requestTimeLayout),
			RequestTimeEpoch:  now.UnixMilli(),
			MessageDirection:  "IN",
			Identity: events.APIGatewayRequestIdentity{
				SourceIP:  c.sourceIP,
				UserAgent: c.userAgent,
			},
		},
	}
	if c.principal != "" {
		ev.RequestContext.Authorizer = map[string]any{"principalId": c.principal}
	}
	return ev
}

// connectEvent adds what only $connect carries: the handshake's headers
// and query string, as API Gateway passes them (single values are the
// last one given; the multi-value maps keep them all).
func (r *Router) connectEvent(c *connInfo, req *http.Request, now time.Time) events.APIGatewayWebsocketProxyRequest {
	ev := r.newEvent(c, KeyConnect, EventConnect, now)
	headers := map[string]string{}
	multi := map[string][]string{}
	add := func(k, v string) {
		headers[k] = v
		multi[k] = append(multi[k], v)
	}
	add("Host", req.Host)
	for k, vs := range req.Header {
		for _, v := range vs {
			add(k, v)
		}
	}
	if c.sourceIP != "" {
		add("X-Forwarded-For", c.sourceIP)
	}
	if _, port, err := net.SplitHostPort(req.Host); err == nil {
		add("X-Forwarded-Port", port)
	}
	proto := "http"
	if req.TLS != nil {
		proto = "https"
	}
	add("X-Forwarded-Proto", proto)
	ev.Headers, ev.MultiValueHeaders = headers, multi
	if q := req.URL.Query(); len(q) > 0 {
		ev.QueryStringParameters = make(map[string]string, len(q))
		ev.MultiValueQueryStringParameters = q
		for k, vs := range q {
			ev.QueryStringParameters[k] = vs[len(vs)-1]
		}
	}
	return ev
}

// messageEvent carries one client message to routeKey's integration. A
// binary message travels base64-encoded, flagged by isBase64Encoded.
func (r *Router) messageEvent(c *connInfo, routeKey string, body []byte, binary bool, now time.Time) events.APIGatewayWebsocketProxyRequest {
	ev := r.newEvent(c, routeKey, EventMessage, now)
	ev.RequestContext.MessageID = newRequestID()
	if binary {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	} else {
		ev.Body = string(body)
	}
	return ev
}

// disconnectEvent says how the connection ended.
func (r *Router) disconnectEvent(c *connInfo, code int, reason string, now time.Time) events.APIGatewayWebsocketProxyRequest {
	ev := r.newEvent(c, KeyDisconnect, EventDisconnect, now)
	ev.RequestContext.DisconnectStatusCode = int64(code)
	ev.RequestContext.DisconnectReason = &reason
	ev.Headers = map[string]string{"Host": c.domain, "X-Forwarded-For": c.sourceIP}
	ev.MultiValueHeaders = map[string][]string{"Host": {c.domain}, "X-Forwarded-For": {c.sourceIP}}
	return ev
}

// newRequestID returns an id shaped like API Gateway's request and
// connection ids: 12 random bytes, base64 (16 characters).
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// gatewayReply is what API Gateway itself sends a client when a message
// has nowhere to go or its integration failed: {"message", "connectionId",
// "requestId"}, the exact shape clients written for AWS look for.
func gatewayReply(message, connID, requestID string) []byte {
	b, _ := json.Marshal(struct {
		Message      string `json:"message"`
		ConnectionID string `json:"connectionId"`
		RequestID    string `json:"requestId"`
	}{message, connID, requestID})
	return b
}

// hostOnly strips the port of a host:port remote address.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
