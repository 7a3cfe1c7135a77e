package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/herald-gw/herald"
)

// Notify runs payload, the original notification Lambda's input
// ({"user_id": 42, "json": "..."}), through exactly what POST /v1/notify
// does, and returns that endpoint's reply. It is Herald's built-in
// herald-notify function, which the original API server's lambda.Invoke
// reaches through the Invoke API when no notification Lambda is
// configured: one code path, one set of checks, whoever calls.
//
// A refusal is returned as the *herald.Error the endpoint would answer
// with; the caller is trusted (the Invoke API authenticated it).
func (s *Server) Notify(ctx context.Context, payload []byte) ([]byte, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/notify", bytes.NewReader(payload))
	if err != nil {
		return nil, &herald.Error{Code: herald.EInternal, Message: "cannot build the request", Err: err}
	}
	r.Header.Set("Content-Type", "application/json")
	w := &bufferWriter{header: http.Header{}}
	handleNotify(s).ServeHTTP(w, r)
	if w.status == http.StatusOK {
		return w.body.Bytes(), nil
	}
	var e errorBody
	if json.Unmarshal(w.body.Bytes(), &e) != nil || e.Error.Code == "" {
		return nil, herald.Errorf(herald.EInternal, "notify answered %d", w.status)
	}
	return nil, &herald.Error{Code: e.Error.Code, Message: e.Error.Message, Status: w.status}
}

// bufferWriter is an http.ResponseWriter that keeps what a handler
// writes, for handlers called in-process.
type bufferWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferWriter) Header() http.Header { return w.header }

func (w *bufferWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}
