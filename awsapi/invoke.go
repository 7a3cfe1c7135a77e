package awsapi

// This file serves Lambda's Invoke API, POST
// /2015-03-31/functions/{name}/invocations, so that code written for AWS —
// an unmodified aws-sdk-go-v2 lambda client with BaseEndpoint set to
// Herald — invokes Herald's functions. Like the management API it speaks
// AWS's shapes: errors carry X-Amzn-ErrorType, which the SDK's restjson1
// protocol turns into *types.ResourceNotFoundException and friends, and a
// body with "Message" (and Lambda's "Type": User or Service).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/token"
)

// Lambda's limits on one Invoke request's payload (AWS's quotas; the SDK's
// own doc of Invoke, service/lambda v1.114.4, states both).
const (
	// MaxInvokePayload is the limit for RequestResponse and DryRun
	// invocations: 6 MB (6 MiB: AWS refuses a larger one saying "Request
	// must be smaller than 6291456 bytes").
	MaxInvokePayload = 6 << 20
	// MaxEventPayload is the limit for Event invocations: 1 MB since
	// October 2025, 256 KB before (AWS Compute Blog, "More room to build:
	// serverless services now support payloads up to 1 MB"). Herald
	// follows AWS today.
	MaxEventPayload = 1 << 20
)

// MaxEventDuration bounds one Event invocation running in the background:
// Lambda's longest function timeout. The function's own timeout, which
// Functions applies, is normally far shorter; this bound only guarantees
// that no background invocation outlives it whatever Functions does.
const MaxEventDuration = 15 * time.Minute

// MaxPendingEvents bounds the Event invocations running at once. Lambda
// queues asynchronous events; Herald runs each in a goroutine, so past
// this many it refuses new ones (429 TooManyRequestsException) rather than
// grow without limit.
const MaxPendingEvents = 1000

// accountID stands for the AWS account in the ARNs Herald writes, which
// has none.
const accountID = "000000000000"

// Functions is what the Invoke API calls: Herald's Lambda runtime host plus
// its built-in functions.
type Functions interface {
	// Invoke runs the function called name (a plain name, already
	// validated by ValidFunctionName) on payload, a JSON document, and
	// returns what it answered. A function that fails is not an error
	// here: it is an Invocation with Error set. An error means the
	// function could not run: a *herald.Error with ENotFound when there is
	// no such function, ETooManyRequests when it is at its concurrency
	// limit, EUnavailable when Herald cannot run it now (stopping); any
	// other is a 500.
	Invoke(ctx context.Context, name string, payload []byte) (Invocation, error)
}

// Invocation is what a function answered.
type Invocation struct {
	Payload []byte // the function's response, or its error document
	Error   string // "" or "Unhandled" (sent as X-Amz-Function-Error)
}

// FunctionChecker may be implemented by a Functions as well. With it,
// Event and DryRun invocations of a function that does not exist get 404
// ResourceNotFoundException as on AWS; without it Herald cannot tell
// before running one, so an Event for an unknown function gets 202 and a
// log line, and a DryRun 204.
type FunctionChecker interface {
	Has(name string) bool
}

// PublishKeys is the Bearer alternative to SigV4 on the Invoke API.
// Invoking a function sends on Herald's behalf (the built-in herald-notify
// is the publish route by another door), so it takes the publish scope.
// The Handlers' APIKeys value is asked for it: api.KeySet implements both.
// When it does not, Bearer keys are refused on the Invoke API.
type PublishKeys interface {
	// AuthorizePublish returns the name of the API key that r carries as
	// its bearer credential, when that key may publish (the publish or
	// admin scope). Otherwise it returns a *herald.Error: EUnauthorized
	// when r carries no key Herald knows, EForbidden (with the name) when
	// the key lacks the scope.
	AuthorizePublish(r *http.Request) (name string, err error)
}

// AuthorizePublish makes the single key of the deprecated New a
// PublishKeys too: it is allowed everything.
func (k singleKey) AuthorizePublish(r *http.Request) (string, error) {
	return k.AuthorizeConnections(r)
}

// Lambda's "Type" in error bodies: whose fault the error is.
const (
	faultUser    = "User"
	faultService = "Service"
)

// lambdaErrorBody is Lambda's error document. The SDK reads the message
// from "Message" or "message" alike.
type lambdaErrorBody struct {
	Type    string `json:"Type,omitempty"`
	Message string `json:"Message"`
	Reason  string `json:"Reason,omitempty"` // TooManyRequestsException's
}

// lambdaError writes a Lambda error. fault is "" for the refusals of
// AWS's front door (authentication), whose bodies carry no Type.
func lambdaError(w http.ResponseWriter, status int, errType, fault, msg string) {
	writeLambdaError(w, status, errType, lambdaErrorBody{Type: fault, Message: msg})
}

func writeLambdaError(w http.ResponseWriter, status int, errType string, body lambdaErrorBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", errType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func tooManyRequests(w http.ResponseWriter, reason, msg string) {
	// Retry-After is the SDK's hint (TooManyRequestsException's
	// RetryAfterSeconds); it retries throttling errors on its own.
	w.Header().Set("Retry-After", "1")
	writeLambdaError(w, http.StatusTooManyRequests, "TooManyRequestsException",
		lambdaErrorBody{Type: faultUser, Message: msg, Reason: reason})
}

// Invoke serves POST /2015-03-31/functions/{name}/invocations over fns,
// which must not be nil.
//
// The request is authenticated first: a SigV4 signature for service
// "lambda" with the Handlers' Credentials, or "Authorization: Bearer
// <key>" with an API key that has the publish scope (see PublishKeys).
// X-Amz-Invocation-Type then says what to do:
//
//   - RequestResponse (the default) runs the function and answers 200
//     with its payload byte for byte, X-Amz-Executed-Version: $LATEST and,
//     when the function failed, X-Amz-Function-Error.
//   - Event answers 202 at once and runs the function in the background.
//     This is best effort: Herald neither retries nor keeps the event
//     anywhere, so an event still running when Herald stops is cut short
//     (Shutdown), and a failure only reaches Herald's log.
//   - DryRun checks the request and answers 204.
//
// The function may be named as Lambda allows (see parseFunctionName);
// only $LATEST is served, as Herald has no versions or aliases. An empty
// payload is sent to the function as {}, as Lambda does; any other
// payload must be JSON. X-Amz-Log-Type: Tail is not supported and ignored
// (there is no X-Amz-Log-Result), as are X-Amz-Client-Context and
// X-Amz-Tenant-Id.
func (h *Handlers) Invoke(fns Functions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.invoke(w, r, fns)
	})
}

// Invocation types (X-Amz-Invocation-Type).
const (
	invokeSync   = "RequestResponse"
	invokeEvent  = "Event"
	invokeDryRun = "DryRun"
)

func (h *Handlers) invoke(w http.ResponseWriter, r *http.Request, fns Functions) {
	// Every reply carries a request id, as AWS's do: the SDK keeps it in
	// the output's metadata and its errors, and Herald's log lines about
	// the invocation carry it too.
	rid := newRequestID()
	w.Header().Set("X-Amzn-RequestId", rid)
	log := h.log.With("request_id", rid)

	// The whole body first: SigV4 covers its hash.
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxInvokePayload+1))
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidRequestContentException", faultUser, "could not read the request body")
		return
	}
	if len(body) > MaxInvokePayload {
		lambdaError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", faultUser,
			"Request must be smaller than "+strconv.Itoa(MaxInvokePayload)+" bytes for the InvokeFunction operation")
		return
	}
	caller, ok := h.authorizeInvoke(w, r, log, body)
	if !ok {
		return
	}

	typ := r.Header.Get("X-Amz-Invocation-Type")
	switch typ {
	case "":
		typ = invokeSync
	case invokeSync, invokeDryRun:
	case invokeEvent:
		if len(body) > MaxEventPayload {
			lambdaError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", faultUser,
				"Request must be smaller than "+strconv.Itoa(MaxEventPayload)+" bytes for an Event invocation")
			return
		}
	default:
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", faultUser,
			"X-Amz-Invocation-Type "+strconv.Quote(typ)+" is not one of RequestResponse, Event, DryRun")
		return
	}

	fn, err := parseFunctionName(r.PathValue("name"))
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", faultUser, err.Error())
		return
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		if !validQualifier(q) {
			lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", faultUser,
				"Qualifier "+strconv.Quote(q)+" is not a version or alias name")
			return
		}
		if fn.qualifier != "" && fn.qualifier != q {
			// AWS's words for this case.
			lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", faultUser,
				"The derived qualifier from the function name does not match the specified qualifier.")
			return
		}
		fn.qualifier = q
	}
	if fn.qualifier != "" && fn.qualifier != "$LATEST" {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", faultUser,
			"Function not found: "+fn.arn(r)+" (Herald serves only $LATEST: it has no versions or aliases)")
		return
	}

	payload := body
	if len(payload) == 0 {
		payload = []byte("{}")
	} else if !json.Valid(payload) {
		// Only now, on the failure path, find out where and why.
		reason := json.Unmarshal(payload, new(json.RawMessage))
		lambdaError(w, http.StatusBadRequest, "InvalidRequestContentException", faultUser,
			fmt.Sprintf("Could not parse request body into json: %v", reason))
		return
	}

	if typ != invokeSync {
		if c, ok := fns.(FunctionChecker); ok && !c.Has(fn.name) {
			lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", faultUser, "Function not found: "+fn.arn(r))
			return
		}
	}
	log.Debug("lambda invoke", "function", fn.name, "type", typ, "caller", caller)

	switch typ {
	case invokeDryRun:
		w.WriteHeader(http.StatusNoContent)
	case invokeEvent:
		h.invokeEvent(w, log, fns, fn, payload)
	default:
		inv, err := fns.Invoke(r.Context(), fn.name, payload)
		if err != nil {
			h.invokeFailed(w, r, log, fn, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(inv.Payload)))
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		if inv.Error != "" {
			w.Header().Set("X-Amz-Function-Error", inv.Error)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.Payload)
	}
}

// invokeEvent hands the invocation to the background and answers 202.
func (h *Handlers) invokeEvent(w http.ResponseWriter, log *slog.Logger, fns Functions, fn functionRef, payload []byte) {
	// payload was read for this request alone, so the background run may
	// keep it.
	err := h.events.start(func(ctx context.Context) {
		inv, err := fns.Invoke(ctx, fn.name, payload)
		switch {
		case err != nil:
			log.Warn("event invocation failed", "function", fn.name, "err", err)
		case inv.Error != "":
			// The error document is the function's output, which may hold
			// anything: its size only.
			log.Warn("event invocation: the function returned an error", "function", fn.name,
				"function_error", inv.Error, "bytes", len(inv.Payload))
		}
	})
	switch {
	case errors.Is(err, errEventsFull):
		log.Warn("event invocation refused: too many running", "function", fn.name, "max", MaxPendingEvents)
		tooManyRequests(w, "ConcurrentInvocationLimitExceeded",
			fmt.Sprintf("Rate Exceeded: %d Event invocations are already running", MaxPendingEvents))
	case err != nil:
		lambdaError(w, http.StatusServiceUnavailable, "ServiceException", faultService, "Herald is shutting down")
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// invokeFailed answers for a function that could not run.
func (h *Handlers) invokeFailed(w http.ResponseWriter, r *http.Request, log *slog.Logger, fn functionRef, err error) {
	if r.Context().Err() != nil {
		// The client went away and took the invocation with it; no one
		// reads this reply.
		log.Debug("lambda invoke abandoned by the client", "function", fn.name, "err", err)
		return
	}
	msg := herald.ErrorMessageOf(err)
	switch herald.ErrorCodeOf(err) {
	case herald.ENotFound:
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", faultUser, "Function not found: "+fn.arn(r))
	case herald.ETooManyRequests:
		tooManyRequests(w, "ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded: "+msg)
	case herald.EUnavailable:
		lambdaError(w, http.StatusServiceUnavailable, "ServiceException", faultService, msg)
	case herald.EInvalidJSON, herald.EInvalidRequest:
		lambdaError(w, http.StatusBadRequest, "InvalidRequestContentException", faultUser, msg)
	case herald.EPayloadTooLarge:
		lambdaError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", faultUser, msg)
	default:
		log.Error("lambda invoke failed", "function", fn.name, "err", err)
		lambdaError(w, http.StatusInternalServerError, "ServiceException", faultService, msg)
	}
}

// authorizeInvoke checks the request's SigV4 signature (service lambda) or
// Bearer key (publish scope), answering in Lambda's shapes when it fails.
// It returns who called, for the logs.
func (h *Handlers) authorizeInvoke(w http.ResponseWriter, r *http.Request, log *slog.Logger, body []byte) (caller string, ok bool) {
	if token.Bearer(r) != "" {
		keys, ok := h.keys.(PublishKeys)
		if !ok {
			lambdaError(w, http.StatusForbidden, "UnrecognizedClientException", "",
				"API keys are not accepted on the Invoke API of this Herald: sign the request with SigV4")
			return "", false
		}
		name, err := keys.AuthorizePublish(r)
		switch herald.ErrorCodeOf(err) {
		case "":
			return "key " + name, true
		case herald.EForbidden:
			log.Info("lambda invoke refused for its API key's scope", "key", name, "path", r.URL.Path)
			// AccessDeniedException is Lambda's answer to a caller that
			// may not lambda:InvokeFunction.
			lambdaError(w, http.StatusForbidden, "AccessDeniedException", "",
				"API key "+strconv.Quote(name)+" lacks the publish scope needed to invoke functions")
		default:
			lambdaError(w, http.StatusForbidden, "UnrecognizedClientException", "", "missing or invalid API key")
		}
		return "", false
	}
	if h.creds.AccessKeyID == "" {
		lambdaError(w, http.StatusForbidden, "UnrecognizedClientException", "",
			"SigV4 is not configured on this Herald (set HERALD_AWS_ACCESS_KEY_ID and HERALD_AWS_SECRET_ACCESS_KEY) and no API key was given")
		return "", false
	}
	err := VerifySigV4For(r, body, h.creds, ServiceLambda, h.now())
	if err == nil {
		return "sigv4", true
	}
	log.Info("lambda invoke rejected", "path", r.URL.Path, "reason", err)
	// The error types AWS's front door answers with. The SDK keeps their
	// messages (they are not in Lambda's model: it returns a generic
	// smithy.APIError), so Herald's reason reaches the caller; on
	// InvalidSignatureException it also corrects its clock from the
	// reply's Date header and retries when the reason was clock skew.
	switch {
	case errors.Is(err, ErrMissingAuthorization):
		lambdaError(w, http.StatusForbidden, "MissingAuthenticationTokenException", "", "Missing Authentication Token")
	case errors.Is(err, ErrUnknownAccessKey):
		lambdaError(w, http.StatusForbidden, "UnrecognizedClientException", "",
			"The security token included in the request is invalid: "+err.Error())
	default:
		lambdaError(w, http.StatusForbidden, "InvalidSignatureException", "", err.Error())
	}
	return "", false
}

// newRequestID returns a random id in the UUID form of AWS's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])  // crypto/rand.Read never fails on supported systems
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// functionRef is a function as an Invoke request names it.
type functionRef struct {
	name      string // the plain name, valid by ValidFunctionName
	qualifier string // from "name:qualifier"; "" when none was given
	// From an ARN (partition, region, account) or a partial ARN (account);
	// "" otherwise.
	partition, region, account string
}

// arn is fn's ARN as Lambda's messages spell it: the parts the request
// gave, else partition aws, the region the request was signed for (or
// us-east-1) and the stand-in account.
func (fn functionRef) arn(r *http.Request) string {
	partition, region, account := fn.partition, fn.region, fn.account
	if partition == "" {
		partition = "aws"
	}
	if region == "" {
		region = "us-east-1"
		if a, err := parseAuthorization(r.Header.Get("Authorization")); err == nil && validRegion(a.region) {
			region = a.region
		}
	}
	if account == "" {
		account = accountID
	}
	s := "arn:" + partition + ":lambda:" + region + ":" + account + ":function:" + fn.name
	if fn.qualifier != "" {
		s += ":" + fn.qualifier
	}
	return s
}

// maxFunctionNameLen is Lambda's limit on a FunctionName as a whole (an
// ARN with a qualifier); the plain name is limited to 64.
const maxFunctionNameLen = 170

// parseFunctionName parses the function name of an Invoke request in the
// forms Lambda accepts:
//
//	my-function                                            name
//	my-function:$LATEST                                    name:qualifier
//	123456789012:function:my-function[:qualifier]          partial ARN
//	arn:aws:lambda:us-east-1:123456789012:function:my-function[:qualifier]
//
// Any region and account are accepted, as Herald has neither; they only
// enter the ARNs of its error messages. The error, for any other string,
// is meant for the caller (InvalidParameterValueException).
func parseFunctionName(s string) (functionRef, error) {
	var fn functionRef
	if s == "" {
		return fn, errors.New("the function name is empty")
	}
	if len(s) > maxFunctionNameLen {
		return fn, fmt.Errorf("the function name is longer than %d characters", maxFunctionNameLen)
	}
	parts := strings.Split(s, ":")
	switch {
	case parts[0] == "arn":
		if (len(parts) != 7 && len(parts) != 8) || !validPartition(parts[1]) || parts[2] != "lambda" ||
			!validRegion(parts[3]) || !validAccount(parts[4]) || parts[5] != "function" {
			return fn, fmt.Errorf("%q is not a function ARN (arn:aws:lambda:region:account-id:function:name[:qualifier])", s)
		}
		fn.partition, fn.region, fn.account = parts[1], parts[3], parts[4]
		parts = parts[6:]
	case len(parts) >= 3:
		if len(parts) > 4 || !validAccount(parts[0]) || parts[1] != "function" {
			return fn, fmt.Errorf("%q is not a function name, name:qualifier, partial ARN (account-id:function:name) or ARN", s)
		}
		fn.account = parts[0]
		parts = parts[2:]
	}
	fn.name = parts[0]
	if !ValidFunctionName(fn.name) {
		return fn, fmt.Errorf("function name %q is not 1 to 64 letters, digits, hyphens or underscores", fn.name)
	}
	if len(parts) == 2 {
		fn.qualifier = parts[1]
		if !validQualifier(fn.qualifier) {
			return fn, fmt.Errorf("qualifier %q is not a version or alias name", fn.qualifier)
		}
	}
	return fn, nil
}

// ValidFunctionName reports whether name is a function name Lambda
// allows: 1 to 64 ASCII letters, digits, hyphens and underscores. Only
// such names can be invoked through the Invoke API, so a configuration
// naming functions should hold them to it.
func ValidFunctionName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isWordByte(name[i]) {
			return false
		}
	}
	return true
}

// validQualifier reports whether q can be a version ("$LATEST", "12") or
// an alias name: Lambda's 1 to 128 letters, digits, "$", "-" and "_"
// (and "." for "$LATEST.PUBLISHED").
func validQualifier(q string) bool {
	if len(q) == 0 || len(q) > 128 {
		return false
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; !isWordByte(c) && c != '$' && c != '.' {
			return false
		}
	}
	return true
}

// validPartition: "aws", "aws-cn", "aws-us-gov", …
func validPartition(p string) bool {
	if !strings.HasPrefix(p, "aws") || len(p) > 32 {
		return false
	}
	for i := 3; i < len(p); i++ {
		if c := p[i]; !isLetter(c) && c != '-' {
			return false
		}
	}
	return true
}

// validRegion: "us-east-1", "us-gov-west-1", … — lower-case letters,
// digits and hyphens; the list of regions changes, so no more is checked.
func validRegion(r string) bool {
	if len(r) == 0 || len(r) > 32 {
		return false
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; !(c >= 'a' && c <= 'z') && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

// validAccount: twelve digits.
func validAccount(a string) bool {
	if len(a) != 12 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if !isDigit(a[i]) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool   { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isWordByte(c byte) bool { return isLetter(c) || isDigit(c) || c == '-' || c == '_' }

// events holds the Event invocations running in the background. The
// Handlers own them: Shutdown stops them. The zero value is ready.
type events struct {
	mu      sync.Mutex
	ctx     context.Context // parent of every run: made on first use, canceled by Shutdown
	cancel  context.CancelFunc
	closed  bool
	running int
	wg      sync.WaitGroup
}

var (
	errEventsClosed = errors.New("event invocations are shut down")
	errEventsFull   = errors.New("too many event invocations running")
)

// start runs run in a goroutine of its own with a context bounded by
// MaxEventDuration, or refuses: errEventsClosed after Shutdown,
// errEventsFull with MaxPendingEvents running.
func (e *events) start(run func(ctx context.Context)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errEventsClosed
	}
	if e.running >= MaxPendingEvents {
		return errEventsFull
	}
	if e.ctx == nil {
		e.ctx, e.cancel = context.WithCancel(context.Background())
	}
	ctx, cancel := context.WithTimeout(e.ctx, MaxEventDuration)
	e.running++
	e.wg.Add(1)
	go func() {
		defer func() {
			cancel()
			e.mu.Lock()
			e.running--
			e.mu.Unlock()
			e.wg.Done()
		}()
		run(ctx)
	}()
	return nil
}

// Shutdown stops the Invoke API's Event invocations: new ones are refused
// (503 ServiceException), and Shutdown waits for the running ones to
// finish until ctx is done; then it cancels their contexts and waits for
// them to return, and returns ctx's error. Call it after the HTTP server
// has stopped taking requests and before the functions are stopped.
// Calling it again waits again.
func (h *Handlers) Shutdown(ctx context.Context) error {
	e := &h.events
	e.mu.Lock()
	e.closed = true // from here on no run starts, so wg only counts down
	cancel := e.cancel
	e.mu.Unlock()

	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	if cancel != nil {
		cancel()
	}
	<-done
	return ctx.Err()
}
