// Package client is Herald's Go SDK: what an API server uses to push
// notifications to its users' browsers through a Herald gateway.
//
// It replaces the original system's call to the "notification" AWS Lambda.
// Where the API server used to write
//
//	payload, _ := json.Marshal(map[string]any{"user_id": 42, "json": `{"message":"hi"}`})
//	lambdaClient.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("notification"), Payload: payload})
//
// it now writes
//
//	c.Notify(ctx, "42", map[string]string{"message": "hi"})
//
// and every open WebSocket connection of user 42 receives {"message":"hi"}.
//
// A Client is created once with New and is safe for concurrent use. Every
// method that talks to Herald takes a context.Context: its deadline bounds the
// whole call, retries included, and cancelling it stops the call at once.
//
// # Errors
//
// When Herald answers with an error, the returned error wraps an *Error that
// carries the HTTP status and Herald's stable error code. Inspect it with
// errors.As, or test the code with IsCode:
//
//	if client.IsCode(err, client.CodeNotFound) { … }
//
// # Retries and delivery guarantees
//
// Failed calls are retried when a retry can help: on 429 Too Many Requests,
// on 500, 502, 503 and 504, and when the request never got a reply (the
// connection was refused or reset). Each retry waits an exponentially growing,
// randomly jittered delay (see WithBackoff), or what the server asked for in
// Retry-After. Other errors, such as 400 or 401, are returned at once: sending
// the same request again would fail the same way.
//
// Retries make delivery at-least-once, not exactly-once. If Herald queued a
// message but its reply was lost on the way back (a reset connection, a
// proxy's 502), the retry queues the message a second time and the user's
// connections receive it twice. Payloads that must not be applied twice should
// carry an id the browser can deduplicate on. Use WithRetries(0) to get
// at-most-once delivery instead.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// version is reported in the User-Agent header of every request.
const version = "0.1.0"

const userAgent = "herald-go/" + version

const (
	defaultRetries = 3
	defaultBase    = 100 * time.Millisecond
	defaultMax     = 2 * time.Second

	// maxReply bounds the size of a successful reply read into memory; a
	// user's connection list is the largest reply Herald sends.
	maxReply = 32 << 20
	// maxErrorBody bounds how much of an error reply is read.
	maxErrorBody = 64 << 10
)

// Client sends notifications to a Herald gateway. Create it with New. It holds
// no per-call state, so one Client can be shared by all goroutines of a
// server.
type Client struct {
	base    string // scheme://host[/path], without a trailing slash
	apiKey  string
	hc      *http.Client
	retries int
	minWait time.Duration // backoff base
	maxWait time.Duration // backoff cap, and cap on Retry-After
}

// Option configures a Client in New.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc instead of
// http.DefaultClient: use it to set a proxy, TLS settings or connection
// limits. A nil hc means http.DefaultClient.
//
// A timeout set on hc applies to each attempt separately; to bound a whole
// call, retries included, give the call a context with a deadline.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithRetries sets how many times a failed call is retried after its first
// attempt, so a call sends at most max+1 requests. The default is 3. Zero
// disables retries, which makes delivery at-most-once. New rejects a negative
// max.
func WithRetries(max int) Option {
	return func(c *Client) { c.retries = max }
}

// WithBackoff sets the delays between retries. Before retry n (counting from
// 0) the Client waits a random duration between 0 and base·2ⁿ, capped at max
// ("full jitter", which spreads the retries of many clients over time instead
// of having them hit a recovering server together). When the server sends
// Retry-After, the Client waits that long instead, but never longer than max.
// The defaults are 100ms and 2s. New rejects a negative base or a max below
// base.
func WithBackoff(base, max time.Duration) Option {
	return func(c *Client) { c.minWait, c.maxWait = base, max }
}

// New returns a Client for the Herald gateway at baseURL, authenticating with
// apiKey (sent as "Authorization: Bearer <apiKey>").
//
// baseURL is the gateway's root, such as "https://herald.internal:8443"; it
// may include a path prefix when Herald sits behind a reverse proxy
// ("https://example.com/herald"). It must be an http or https URL without
// user info, query or fragment.
func New(baseURL, apiKey string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("herald: invalid base URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("herald: invalid base URL %q: scheme must be http or https", baseURL)
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("herald: invalid base URL %q: no host", baseURL)
	case u.User != nil:
		return nil, fmt.Errorf("herald: invalid base URL %q: must not contain user info; pass the API key to New", baseURL)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("herald: invalid base URL %q: must not contain a query", baseURL)
	case u.Fragment != "":
		return nil, fmt.Errorf("herald: invalid base URL %q: must not contain a fragment", baseURL)
	}
	if apiKey == "" {
		return nil, errors.New("herald: empty API key")
	}
	for i := 0; i < len(apiKey); i++ {
		if b := apiKey[i]; b < 0x20 && b != '\t' || b == 0x7f {
			return nil, errors.New("herald: API key contains control characters")
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")

	c := &Client{
		base:    u.String(),
		apiKey:  apiKey,
		retries: defaultRetries,
		minWait: defaultBase,
		maxWait: defaultMax,
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	if c.retries < 0 {
		return nil, fmt.Errorf("herald: negative retry count %d", c.retries)
	}
	if c.minWait < 0 || c.maxWait < c.minWait {
		return nil, fmt.Errorf("herald: invalid backoff: base %v, max %v", c.minWait, c.maxWait)
	}
	return c, nil
}

// Delivery reports where Herald queued a notification for one user.
type Delivery struct {
	// UserID is the user the notification was addressed to.
	UserID string `json:"user_id"`
	// Connections is the number of the user's connections the notification
	// was queued to. Zero means the user had no open connection: the
	// notification was stored in the user's stream (for resume and the
	// inbox), but nobody was there to receive it live.
	Connections int `json:"connections"`
	// ID is the message's id and Offset its position in the user's stream.
	ID     string `json:"id"`
	Offset uint64 `json:"offset"`
}

// MultiDelivery reports where Herald queued a notification sent to several
// users.
type MultiDelivery struct {
	// Users holds one Delivery per addressed user.
	Users []Delivery `json:"users"`
	// Connections is the number of connections queued to, over all users.
	Connections int `json:"connections"`
}

// BroadcastResult reports where Herald queued a broadcast.
type BroadcastResult struct {
	// Connections is the number of connections the broadcast was queued to.
	Connections int `json:"connections"`
}

// Connection describes one open WebSocket connection of a user.
type Connection struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	// Protocol is the wire format the connection speaks: "raw" (each
	// notification is one text frame holding exactly the payload) or
	// "herald.v1" (notifications wrapped in a JSON envelope).
	Protocol     string    `json:"protocol"`
	ConnectedAt  time.Time `json:"connected_at"`
	LastActiveAt time.Time `json:"last_active_at"`
	SourceIP     string    `json:"source_ip"`
	UserAgent    string    `json:"user_agent"`
}

// Notify sends payload to every open connection of user and reports how many
// connections it was queued to.
//
// payload is encoded as JSON:
//   - a json.RawMessage or a []byte is taken to be JSON text already and is
//     sent byte for byte; it must be valid JSON, or Notify fails without
//     sending anything;
//   - any other value is encoded with json.Marshal (without escaping <, >
//     and &). Note that a Go string is therefore sent as a JSON string:
//     Notify(ctx, u, `{"a":1}`) delivers "{\"a\":1}". To send JSON text you
//     hold in a string, pass json.RawMessage(s), or use NotifyJSON.
//
// Connections using the raw protocol receive the encoded payload as is.
//
// A retried Notify may deliver the payload twice; see the package
// documentation.
func (c *Client) Notify(ctx context.Context, user string, payload any) (*Delivery, error) {
	body, err := encodePayload(payload)
	if err != nil {
		return nil, err
	}
	if err := checkUser(user); err != nil {
		return nil, err
	}
	var d Delivery
	if err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(user)+"/messages", body, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// NotifyJSON sends the bytes of jsonString, verbatim, to every open
// connection of user. It speaks the original Lambda's request shape
// ({"user_id":…,"json":"<string>"}), which helps when porting code that
// already builds that string; new code should prefer Notify.
//
// Herald does not parse the string: whatever it holds is what raw
// connections receive. It must be valid UTF-8, since a JSON string cannot
// carry other bytes unchanged.
func (c *Client) NotifyJSON(ctx context.Context, user, jsonString string) (*Delivery, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	if !utf8.ValidString(jsonString) {
		return nil, errors.New("herald: NotifyJSON: payload is not valid UTF-8")
	}
	body, err := marshal(struct {
		User string `json:"user_id"`
		JSON string `json:"json"`
	}{user, jsonString})
	if err != nil {
		return nil, err
	}
	var d Delivery
	if err := c.do(ctx, http.MethodPost, "/v1/notify", body, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// NotifyUsers sends payload to every open connection of each of users in one
// request. payload is encoded as for Notify. When users is empty, NotifyUsers
// sends nothing and returns an empty MultiDelivery.
//
// A retried NotifyUsers may deliver the payload twice; see the package
// documentation.
func (c *Client) NotifyUsers(ctx context.Context, users []string, payload any) (*MultiDelivery, error) {
	data, err := encodePayload(payload)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if err := checkUser(u); err != nil {
			return nil, err
		}
	}
	if len(users) == 0 {
		return &MultiDelivery{Users: []Delivery{}}, nil
	}
	list, err := marshal(users)
	if err != nil {
		return nil, err
	}
	// Assembled by hand so that data reaches Herald byte for byte:
	// json.Marshal would compact and HTML-escape a json.RawMessage.
	body := make([]byte, 0, len(list)+len(data)+20)
	body = append(body, `{"users":`...)
	body = append(body, list...)
	body = append(body, `,"data":`...)
	body = append(body, data...)
	body = append(body, '}')

	var md MultiDelivery
	if err := c.do(ctx, http.MethodPost, "/v1/messages", body, &md); err != nil {
		return nil, err
	}
	return &md, nil
}

// Broadcast sends payload to every open connection of every user. payload is
// encoded as for Notify.
//
// A retried Broadcast may deliver the payload twice; see the package
// documentation.
func (c *Client) Broadcast(ctx context.Context, payload any) (*BroadcastResult, error) {
	data, err := encodePayload(payload)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, len(data)+10)
	body = append(body, `{"data":`...)
	body = append(body, data...)
	body = append(body, '}')

	var r BroadcastResult
	if err := c.do(ctx, http.MethodPost, "/v1/broadcast", body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Connections lists the open connections of user. A user without
// connections yields an empty list, not an error.
func (c *Client) Connections(ctx context.Context, user string) ([]Connection, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	var r struct {
		Connections []Connection `json:"connections"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(user)+"/connections", nil, &r); err != nil {
		return nil, err
	}
	return r.Connections, nil
}

// Disconnect closes every open connection of user, for instance when the
// user logs out or is banned, and returns how many it closed. Browsers
// usually reconnect, so revoke the user's token first.
func (c *Client) Disconnect(ctx context.Context, user string) (int, error) {
	if err := checkUser(user); err != nil {
		return 0, err
	}
	var r struct {
		Closed int `json:"closed"`
	}
	if err := c.do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(user)+"/connections", nil, &r); err != nil {
		return 0, err
	}
	return r.Closed, nil
}

func checkUser(user string) error {
	if user == "" {
		return errors.New("herald: empty user id")
	}
	return nil
}

// encodePayload returns the JSON text of a notification payload.
func encodePayload(payload any) ([]byte, error) {
	var raw []byte
	switch p := payload.(type) {
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		return marshal(payload)
	}
	if !json.Valid(raw) {
		return nil, errors.New("herald: payload is not valid JSON")
	}
	return raw, nil
}

// marshal is json.Marshal without HTML escaping, so that a payload like
// {"html":"<b>"} reaches browsers as written.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("herald: encode payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// do sends a request to path, retrying as the package documentation
// describes, and decodes a successful reply into out. body, when not nil, is
// sent with each attempt.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	u := c.base + path
	for attempt := 0; ; attempt++ {
		retry, err := c.attempt(ctx, method, u, body, out)
		if err == nil {
			return nil
		}
		if !retry || attempt >= c.retries {
			if attempt > 0 {
				return fmt.Errorf("herald: %s %s (after %d attempts): %w", method, path, attempt+1, err)
			}
			return fmt.Errorf("herald: %s %s: %w", method, path, err)
		}
		if ctx.Err() != nil {
			return c.ctxError(ctx, method, path, err)
		}
		t := time.NewTimer(c.delay(attempt, err))
		select {
		case <-ctx.Done():
			t.Stop()
			return c.ctxError(ctx, method, path, err)
		case <-t.C:
		}
	}
}

// ctxError reports that ctx ended a call whose last attempt failed with last.
func (c *Client) ctxError(ctx context.Context, method, path string, last error) error {
	if errors.Is(last, ctx.Err()) {
		// The attempt itself was cut short; last says nothing more.
		return fmt.Errorf("herald: %s %s: %w", method, path, ctx.Err())
	}
	return fmt.Errorf("herald: %s %s: %w (last attempt: %v)", method, path, ctx.Err(), last)
}

// delay returns how long to wait before retry number attempt (from 0).
func (c *Client) delay(attempt int, err error) time.Duration {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return min(e.RetryAfter, c.maxWait)
	}
	ceil := c.minWait
	for i := 0; i < attempt && ceil < c.maxWait; i++ {
		ceil *= 2
	}
	ceil = min(ceil, c.maxWait)
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// attempt sends one request and decodes its reply into out. It reports
// whether a failure may be retried.
func (c *Client) attempt(ctx context.Context, method, u string, body []byte, out any) (retry bool, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The request may not have reached Herald; trying again can help,
		// unless the server's certificate was refused.
		var cert *tls.CertificateVerificationError
		return !errors.As(err, &cert), err
	}
	defer func() {
		// Drain a little so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return retryableStatus(resp.StatusCode), readError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return true, fmt.Errorf("read reply: %w", err)
	}
	if len(b) > maxReply {
		return false, fmt.Errorf("reply larger than %d bytes", maxReply)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return false, fmt.Errorf("decode reply (status %d): %w", resp.StatusCode, err)
	}
	return false, nil
}

func retryableStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests,
		http.StatusInternalServerError,
		http.StatusBadGateway,
		http.StatusServiceUnavailable,
		http.StatusGatewayTimeout:
		return true
	}
	return false
}

// readError turns an error reply into an *Error. A body that is not Herald's
// JSON error (a proxy's HTML page, say) still yields one, with an empty Code.
func readError(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var r struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &r) == nil && r.Error != nil {
		e.Code, e.Message = r.Error.Code, r.Error.Message
		return e
	}
	e.Message = snippet(b)
	return e
}

// snippet returns the start of a non-JSON error body, for humans.
func snippet(b []byte) string {
	const n = 200
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.Join(strings.Fields(s), " ")
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// BatchMessage is one message of a Batch.
type BatchMessage struct {
	User    string
	Payload any // encoded as for Notify
}

// BatchResult is the outcome of one message of a Batch: its Delivery, or
// the Error that kept it out (the others are not affected).
type BatchResult struct {
	Delivery *Delivery
	Err      *Error
}

// Batch sends many messages, each to its user, in one request and one
// durable commit: for senders of many small notifications, this is far
// cheaper than one Notify per message. Each message is stored and
// delivered as if sent alone; results are in the order of msgs. A message
// Herald refused (empty user, invalid JSON, too large) has Err set. At most
// 1,000 messages per call.
//
// A retried Batch may deliver messages twice; see the package
// documentation.
func (c *Client) Batch(ctx context.Context, msgs []BatchMessage) ([]BatchResult, error) {
	type item struct {
		User string          `json:"user"`
		Data json.RawMessage `json:"data"`
	}
	items := make([]item, len(msgs))
	for i, m := range msgs {
		data, err := encodePayload(m.Payload)
		if err != nil {
			return nil, fmt.Errorf("herald: batch message %d: %w", i, err)
		}
		if err := checkUser(m.User); err != nil {
			return nil, fmt.Errorf("herald: batch message %d: %w", i, err)
		}
		items[i] = item{m.User, data}
	}
	body, err := marshal(map[string]any{"messages": items})
	if err != nil {
		return nil, err
	}
	var reply struct {
		Results []struct {
			Delivery
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/batch", body, &reply); err != nil {
		return nil, err
	}
	out := make([]BatchResult, len(reply.Results))
	for i, r := range reply.Results {
		if r.Error != nil {
			out[i].Err = &Error{Status: http.StatusBadRequest, Code: r.Error.Code, Message: r.Error.Message}
			continue
		}
		d := r.Delivery
		out[i].Delivery = &d
	}
	return out, nil
}
