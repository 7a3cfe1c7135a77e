package herald

import (
	"errors"
	"fmt"
)

// ErrorCode is the stable, documented code of an API error. Clients switch on
// it; the message is for humans and may change.
type ErrorCode string

// Error codes reported as {"error":{"code":…,"message":…}}. Each is listed in
// docs/api.md with its HTTP status; never rename one.
const (
	EInvalidJSON      ErrorCode = "invalid_json"           // 400: body is not valid JSON or has wrong types
	EInvalidRequest   ErrorCode = "invalid_request"        // 400: JSON is well formed but a field is missing or invalid
	EUnauthorized     ErrorCode = "unauthorized"           // 401: missing or bad API key or token
	EForbidden        ErrorCode = "forbidden"              // 403: authenticated, but not allowed (API key scope, Origin)
	ENotFound         ErrorCode = "not_found"              // 404: no such route, user connection or connection
	EMethodNotAllowed ErrorCode = "method_not_allowed"     // 405
	EPayloadTooLarge  ErrorCode = "payload_too_large"      // 413
	EUnsupportedMedia ErrorCode = "unsupported_media_type" // 415: Content-Type is not application/json
	EUpgradeRequired  ErrorCode = "upgrade_required"       // 426: a WebSocket version Herald does not speak
	ETooManyRequests  ErrorCode = "too_many_requests"      // 429: a limit was hit; retry later
	EInternal         ErrorCode = "internal"               // 500
	EUnavailable      ErrorCode = "unavailable"            // 503: shutting down or not ready
	// The $connect route of an API Gateway route set refused a WebSocket
	// handshake: the status is the integration's own (any 4xx or 5xx).
	EConnectRefused ErrorCode = "connect_refused"
	// An integration of a route set failed (error, timeout, crash): 502.
	EIntegrationFailed ErrorCode = "integration_failed"
)

// Error is an error with a code for the API to report. Wrap a cause in Err
// to keep it for logs without showing it to clients.
type Error struct {
	Code    ErrorCode
	Message string
	Err     error
	// Status, when not 0, is the HTTP status to answer with instead of
	// the code's own: EConnectRefused carries the $connect integration's.
	Status int
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCodeOf returns the code of the first *Error in err's chain, or
// EInternal for any other non-nil error.
func ErrorCodeOf(err error) ErrorCode {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessageOf returns the client-facing message of err: the *Error's
// message, or a generic one that leaks nothing for other errors.
func ErrorMessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
