package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Error codes Herald reports in {"error":{"code":…,"message":…}}, with the
// HTTP status each comes with. Codes are stable; messages are for humans and
// may change, so branch on the code.
const (
	CodeInvalidJSON          = "invalid_json"           // 400: the body is not valid JSON
	CodeInvalidRequest       = "invalid_request"        // 400: a field is missing or invalid
	CodeUnauthorized         = "unauthorized"           // 401: missing or wrong API key
	CodeNotFound             = "not_found"              // 404
	CodeMethodNotAllowed     = "method_not_allowed"     // 405
	CodePayloadTooLarge      = "payload_too_large"      // 413: the payload exceeds the gateway's limit
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeTooManyRequests      = "too_many_requests"      // 429: a rate limit was hit; retried
	CodeInternal             = "internal"               // 500: retried
	CodeUnavailable          = "unavailable"            // 503: shutting down or not ready; retried
)

// Error is an error reply from Herald. Methods of Client return it wrapped
// with the request it answered; get it back with errors.As:
//
//	var herr *client.Error
//	if errors.As(err, &herr) && herr.Status == http.StatusRequestEntityTooLarge {
//		// shrink the payload
//	}
//
// A reply that did not come from Herald itself, such as a load balancer's
// HTML error page, is reported as an Error with the reply's status, an empty
// Code and the start of the body as Message.
type Error struct {
	// Status is the HTTP status code of the reply.
	Status int
	// Code is Herald's error code, one of the Code constants, or "" when
	// the reply carried none.
	Code string
	// Message describes the error for humans.
	Message string
	// RetryAfter is how long the server asked the client to wait before
	// trying again (the Retry-After header), or 0.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	text := e.Code
	if text == "" {
		text = http.StatusText(e.Status)
	}
	s := strings.TrimSpace(fmt.Sprintf("%d %s", e.Status, text))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// IsCode reports whether err is, or wraps, an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
