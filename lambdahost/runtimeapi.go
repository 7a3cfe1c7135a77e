package lambdahost

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// The Runtime API's headers, as aws-lambda-go's runtime_api_client.go
// reads and writes them.
const (
	headerRequestID     = "Lambda-Runtime-Aws-Request-Id"
	headerDeadlineMS    = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN   = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID       = "Lambda-Runtime-Trace-Id"
	headerErrorType     = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody    = "Lambda-Runtime-Function-Error-Body"
	headerExtensionID   = "Lambda-Extension-Identifier"
	headerExtensionName = "Lambda-Extension-Name"
)

// routes is one process's Runtime API (2018-06-01), plus the two calls of
// the Extensions API (2020-01-01) that aws-lambda-go makes for
// lambda.WithEnableSIGTERM, so such a function starts without a warning.
func (p *process) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", p.handleNext)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", p.handleResponse)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", p.handleError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", p.handleInitError)
	mux.HandleFunc("POST /2020-01-01/extension/register", p.handleExtensionRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", p.handleExtensionNext)
	return mux
}

// handleNext is the runtime's long poll for work. The first call also ends
// the process's init phase.
func (p *process) handleNext(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	first := !p.asked
	p.asked = true
	p.mu.Unlock()
	if first {
		p.f.initSucceeded()
		p.f.h.log.Debug("function process ready", "function", p.f.name, "process", p.n, "pid", p.pid)
	}
	var inv *invocation
	select {
	case inv = <-p.next:
	case <-r.Context().Done():
		return // the runtime went away; an invocation stays queued
	case <-p.exited:
		return
	}
	if r.Context().Err() != nil {
		// The runtime is gone (its process died, most likely) though the
		// select above found the invocation first. Put it back: the
		// invoker then sees an undelivered invocation when the process's
		// exit is noticed, and hands it to another process.
		p.next <- inv // never blocks: it was just taken from there
		return
	}
	p.mu.Lock()
	if inv.finished {
		// The invoker gave up on it in the meantime and is killing us.
		p.mu.Unlock()
		runtimeError(w, http.StatusInternalServerError, "Runtime.Killed", "the invocation was cancelled")
		return
	}
	// The deadline runs from delivery: a cold start's init is bounded by
	// the init timeout, not by the function's.
	inv.deadline = time.Now().Add(p.f.timeout)
	inv.isDelivered = true
	close(inv.delivered)
	p.mu.Unlock()

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(headerRequestID, inv.id)
	h.Set(headerDeadlineMS, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
	h.Set(headerFunctionARN, p.f.arn)
	h.Set(headerTraceID, inv.traceID)
	h.Set("Content-Length", strconv.Itoa(len(inv.payload)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.payload) // a broken runtime shows up as its exit
}

// handleResponse takes an invocation's successful response.
func (p *process) handleResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, tooBig, err := readBody(r)
	if err != nil {
		return // the connection broke; the process's exit tells the rest
	}
	var res Result
	switch {
	case tooBig:
		res = tooLargeDoc().result()
	case r.Trailer.Get(headerErrorType) != "":
		// aws-lambda-go streams a handler's io.Reader; when the reader
		// fails half-way it ends the body and sends the error in trailers.
		typ := r.Trailer.Get(headerErrorType)
		doc, err := base64.StdEncoding.DecodeString(r.Trailer.Get(trailerErrorBody))
		if err != nil || len(doc) == 0 {
			doc = nil
		}
		res = postedDoc(doc, typ).result()
	default:
		res = Result{Payload: body}
	}
	if !p.complete(id, res) {
		runtimeError(w, http.StatusBadRequest, "InvalidRequestID", "no such invocation in progress: "+id)
		return
	}
	if tooBig {
		runtimeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
			"Exceeded maximum allowed payload size ("+strconv.Itoa(maxResponseSize)+" bytes).")
		return
	}
	accepted(w)
}

// handleError takes the error document of an invocation that failed.
func (p *process) handleError(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, tooBig, err := readBody(r)
	if err != nil {
		return
	}
	doc := tooLargeDoc()
	if !tooBig {
		doc = postedDoc(body, r.Header.Get(headerErrorType))
	}
	if !p.complete(id, doc.result()) {
		runtimeError(w, http.StatusBadRequest, "InvalidRequestID", "no such invocation in progress: "+id)
		return
	}
	// The type only: the message is the function's and may hold data.
	p.f.h.log.Info("function returned an error", "function", p.f.name, "request_id", id, "error_type", doc.Type)
	accepted(w)
}

// handleInitError takes a runtime's report that it cannot start. Lambda
// accepts it only before the first /next.
func (p *process) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, tooBig, err := readBody(r)
	if err != nil {
		return
	}
	doc := tooLargeDoc()
	if !tooBig {
		doc = postedDoc(body, r.Header.Get(headerErrorType))
	}
	if doc.raw == nil {
		doc.raw = doc.payload() // marks it as posted for the invoker
	}
	p.mu.Lock()
	if p.asked || p.initDoc.raw != nil {
		p.mu.Unlock()
		runtimeError(w, http.StatusForbidden, "InvalidStateTransition", "init is over")
		return
	}
	p.initDoc = doc
	close(p.initFailed)
	p.mu.Unlock()
	accepted(w)
}

// handleExtensionRegister registers an extension that wants no events, the
// only kind aws-lambda-go registers.
func (p *process) handleExtensionRegister(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
	w.Header().Set(headerExtensionID, newRequestID())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"functionName":    p.f.name,
		"functionVersion": "$LATEST",
		"handler":         p.f.baseEnv["_HANDLER"],
	})
	p.f.h.log.Debug("function extension registered", "function", p.f.name, "pid", p.pid,
		"extension", r.Header.Get(headerExtensionName))
}

// handleExtensionNext never has an event for an extension registered for
// none: it holds the call until the process goes, as Lambda does.
func (p *process) handleExtensionNext(_ http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-p.exited:
	}
}

// readBody reads a posted body up to Lambda's response limit.
func readBody(r *http.Request) (body []byte, tooBig bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r.Body, maxResponseSize+1))
	if err != nil {
		return nil, false, err
	}
	if len(body) > maxResponseSize {
		return nil, true, nil
	}
	return body, false, nil
}

// accepted is the Runtime API's answer to a post it took.
func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// runtimeError is the Runtime API's answer to a post it refused.
func runtimeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorDoc{Type: typ, Message: msg}.payload())
}
