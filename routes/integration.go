package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// Reply is an integration's answer, API Gateway's proxy response: a
// status (on $connect, anything outside 2xx refuses the handshake with
// it) and a body (sent back to the client by a route with a response).
type Reply struct {
	StatusCode      int    `json:"statusCode"`
	Body            string `json:"body"`
	IsBase64Encoded bool   `json:"isBase64Encoded"`
}

// InvokeFunc invokes a function of Herald's Lambda runtime host:
// functionError is "" on success and "Unhandled" when out is the error
// document of a failed invocation (an error returned, a timeout, a crash);
// err is for an invocation that could not be made.
type InvokeFunc func(ctx context.Context, function string, payload []byte) (out []byte, functionError string, err error)

// integration delivers an event and returns the reply.
type integration interface {
	invoke(ctx context.Context, event []byte) (Reply, error)
}

// maxReply bounds what Herald reads of an integration's reply: Lambda's
// synchronous response limit.
const maxReply = 6 << 20

// httpIntegration POSTs the event, as JSON, to a URL. The reply is the
// proxy response when the server sends one ({"statusCode":…,"body":…}
// as JSON), or else the HTTP status and body as they are — so a plain web
// handler answering 200 or 401 works without knowing API Gateway.
type httpIntegration struct {
	url     string
	timeout time.Duration
	client  *http.Client
}

func (h *httpIntegration) invoke(ctx context.Context, event []byte) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(event))
	if err != nil {
		return Reply{}, fmt.Errorf("http integration %s: %w", h.url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("http integration: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return Reply{}, fmt.Errorf("http integration %s: read reply: %w", h.url, err)
	}
	if len(body) > maxReply {
		return Reply{}, fmt.Errorf("http integration %s: reply over %d bytes", h.url, maxReply)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		if r, ok := proxyReply(body); ok {
			return r, nil
		}
	}
	return Reply{StatusCode: resp.StatusCode, Body: string(body)}, nil
}

// lambdaIntegration invokes a function of the runtime host with the event
// as its payload, as API Gateway's AWS_PROXY integration does.
type lambdaIntegration struct {
	function string
	invokeFn InvokeFunc
}

// errFunction is an invocation that ran and failed: the function
// returned an error, timed out or crashed.
var errFunction = errors.New("function failed")

func (l *lambdaIntegration) invoke(ctx context.Context, event []byte) (Reply, error) {
	out, fnErr, err := l.invokeFn(ctx, l.function, event)
	if err != nil {
		return Reply{}, fmt.Errorf("lambda integration %s: %w", l.function, err)
	}
	if fnErr != "" {
		return Reply{}, fmt.Errorf("lambda integration %s: %w: %s", l.function, errFunction, errorMessage(out))
	}
	if r, ok := proxyReply(out); ok {
		return r, nil
	}
	// A function that returns nothing, or something that is not a proxy
	// response, succeeded: API Gateway takes it as 200.
	return Reply{StatusCode: http.StatusOK}, nil
}

// proxyReply reads {"statusCode":…,"body":…}. It reports false when b is
// not such an object (no statusCode).
func proxyReply(b []byte) (Reply, bool) {
	var r struct {
		StatusCode      *int   `json:"statusCode"`
		Body            string `json:"body"`
		IsBase64Encoded bool   `json:"isBase64Encoded"`
	}
	if json.Unmarshal(b, &r) != nil || r.StatusCode == nil {
		return Reply{}, false
	}
	return Reply{StatusCode: *r.StatusCode, Body: r.Body, IsBase64Encoded: r.IsBase64Encoded}, true
}

// errorMessage pulls errorType and errorMessage out of a Lambda error
// document, for logs.
func errorMessage(doc []byte) string {
	var e struct {
		Type    string `json:"errorType"`
		Message string `json:"errorMessage"`
	}
	if json.Unmarshal(doc, &e) != nil {
		return "unreadable error document"
	}
	if len(e.Message) > 300 {
		e.Message = e.Message[:300] + "…"
	}
	return e.Type + ": " + e.Message
}
