package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// apiClient calls Herald's server API, as the application's API server
// would.
type apiClient struct {
	bases []string // http://host:port of every node; requests go round them
	next  atomic.Uint64
	key   string
	hc    *http.Client

	// authHeader and authValue carry the key: Herald's "Authorization:
	// Bearer KEY", or another server's scheme (the peer's).
	authHeader, authValue string
}

// baseURLs turns the target's nodes into API bases.
func baseURLs(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

func newAPIClient(bases []string, key string, conns int) *apiClient {
	// Enough idle connections that the notify senders reuse theirs instead
	// of opening (and leaving in TIME_WAIT) one per request.
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &apiClient{bases: bases, key: key, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		authHeader: "Authorization", authValue: "Bearer " + key}
}

func (a *apiClient) close() { a.hc.CloseIdleConnections() }

func (a *apiClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	base := a.bases[0]
	if len(a.bases) > 1 {
		base = a.bases[(a.next.Add(1)-1)%uint64(len(a.bases))]
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set(a.authHeader, a.authValue)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read reply: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b[:min(len(b), 300)]))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: reply: %w", method, path, err)
	}
	return nil
}

// broadcast sends data to every connection and returns how many the
// server queued it to (every connection on the node, ours or not).
func (a *apiClient) broadcast(ctx context.Context, data []byte) (int, error) {
	body, err := json.Marshal(map[string]json.RawMessage{"data": data})
	if err != nil {
		return 0, fmt.Errorf("broadcast: %w", err)
	}
	var r struct {
		Connections int `json:"connections"`
	}
	err = a.do(ctx, "POST", "/v1/broadcast", body, &r)
	return r.Connections, err
}

// sendUser sends data to user and returns how many of the user's
// connections the server queued it to.
func (a *apiClient) sendUser(ctx context.Context, user string, data []byte) (int, error) {
	var r struct {
		Connections int `json:"connections"`
	}
	err := a.do(ctx, "POST", "/v1/users/"+url.PathEscape(user)+"/messages", data, &r)
	return r.Connections, err
}

// userConns returns how many connections the server lists for user.
func (a *apiClient) userConns(ctx context.Context, user string) (int, error) {
	var r struct {
		Connections []json.RawMessage `json:"connections"`
	}
	err := a.do(ctx, "GET", "/v1/users/"+url.PathEscape(user)+"/connections", nil, &r)
	return len(r.Connections), err
}

// batchItem is one message's result in a POST /v1/batch reply: its
// delivery, or its error.
type batchItem struct {
	Connections int         `json:"connections"`
	Offset      int64       `json:"offset"` // in the user's stream
	Error       *batchError `json:"error"`
}

// batchError is why one message of a batch failed.
type batchError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// messageAPI is how a run sends its messages: Herald's server API (which
// the raw baseline serves too), or the peer's.
type messageAPI interface {
	// broadcast sends data to every connection and returns how many the
	// server queued it to, -1 when the server does not say.
	broadcast(ctx context.Context, data []byte) (int, error)
	// sendUser sends data to user and returns how many of the user's
	// connections it went to.
	sendUser(ctx context.Context, user string, data []byte) (int, error)
	// sendMessages sends msgs, each to its user (users in turn by seq),
	// in one request, and returns a result per message in order.
	sendMessages(ctx context.Context, msgs []notifyMsg, users []string) ([]batchItem, error)
}

// heraldAPI is messageAPI on Herald's server API: POST /v1/broadcast,
// POST /v1/users/{user}/messages and POST /v1/batch.
type heraldAPI struct {
	*apiClient
	quoted [][]byte // the run's users JSON-quoted, for batch bodies
}

func newHeraldAPI(a *apiClient, users []string) heraldAPI {
	quoted := make([][]byte, len(users))
	for i, u := range users {
		quoted[i], _ = json.Marshal(u) // a string always marshals
	}
	return heraldAPI{apiClient: a, quoted: quoted}
}

func (h heraldAPI) sendMessages(ctx context.Context, msgs []notifyMsg, _ []string) ([]batchItem, error) {
	return h.sendBatch(ctx, batchBody(msgs, h.quoted))
}

// sendBatch posts body, a {"messages":[…]} request, to /v1/batch and
// returns the per-message results, in request order.
func (a *apiClient) sendBatch(ctx context.Context, body []byte) ([]batchItem, error) {
	var r struct {
		Results []batchItem `json:"results"`
	}
	err := a.do(ctx, "POST", "/v1/batch", body, &r)
	return r.Results, err
}
