package awsapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
)

// Credentials are the access key pair Herald accepts on the management API.
type Credentials struct{ AccessKeyID, SecretAccessKey string }

// ErrMissingAuthorization is returned (wrapped) by VerifySigV4 when the
// request carries no Authorization header at all, so that a caller can tell
// "did not try SigV4" (and perhaps try another scheme, or answer like AWS's
// "Missing Authentication Token") from "tried and failed".
var ErrMissingAuthorization = errors.New("sigv4: missing Authorization header")

// ErrUnknownAccessKey is returned (wrapped) by VerifySigV4 when the
// signature was made with an access key ID other than Herald's, so that a
// caller can answer as AWS does for a key it does not know (Lambda:
// UnrecognizedClientException) rather than as for a bad signature.
var ErrUnknownAccessKey = errors.New("sigv4: unknown access key id")

// The signing names of the AWS APIs Herald serves: the service field of a
// SigV4 credential scope. Each API verifies its own, so that a request
// signed for one cannot be replayed against the other.
const (
	ServiceExecuteAPI = "execute-api" // API Gateway's management API (/@connections)
	ServiceLambda     = "lambda"      // Lambda's Invoke API
)

const (
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	sigV4Terminal  = "aws4_request"
	amzDateLayout  = "20060102T150405Z"
)

// MaxClockSkew is how far the signing time may be from the server's clock.
// AWS uses the same window: wide enough for ordinary clock drift, narrow
// enough that a captured request cannot be replayed for long.
const MaxClockSkew = 5 * time.Minute

// VerifySigV4 reports whether r carries a valid AWS Signature Version 4 in
// its Authorization header, made with creds for service "execute-api" — the
// way an aws-sdk-go-v2 apigatewaymanagementapi client (or any SDK) signs when
// its endpoint points at Herald.
//
// What is checked, and why:
//   - The algorithm is AWS4-HMAC-SHA256 and the credential scope is
//     AKID/yyyymmdd/REGION/execute-api/aws4_request. The access key ID must
//     be creds.AccessKeyID (compared in constant time). Any region is
//     accepted, because clients pick whatever region their config says and
//     Herald has no regions; the region still enters the signing key, so it
//     is authenticated, just not restricted. The service must be execute-api
//     so that a signature made for another AWS service cannot be replayed
//     here.
//   - X-Amz-Date is present, is among the signed headers (an unsigned date
//     could be rewritten to extend a captured request's life), its day equals
//     the credential scope's day, and it is within MaxClockSkew of now, which
//     bounds how long a captured request can be replayed.
//   - If X-Amz-Content-Sha256 is sent it must be the hex SHA-256 of body
//     ("UNSIGNED-PAYLOAD" and streaming modes are refused: the body is what
//     the request is about and must be covered by the signature).
//   - Finally the signature is recomputed with the AWS SDK's own signer over
//     a copy of the request holding only the signed headers, the path and
//     query exactly as they came over the wire (a query with a pair that
//     does not parse is refused: the signer would leave it out), and the
//     SHA-256 of body; it must equal the one sent (compared in constant
//     time). Reusing the SDK's
//     signer means Herald canonicalizes exactly as the clients it serves do,
//     including execute-api's double escaping of the path (a connection id
//     "abc=" travels as /@connections/abc%3D and is signed as
//     /%40connections/abc%253D).
//
// The path and query are taken from r.RequestURI, the request-target as
// received, so that routing that rewrites r.URL (a stage prefix stripped, for
// example) does not break verification; a request built in-process, whose
// RequestURI is empty, falls back to r.URL.
//
// body is the request body already read by the caller (r.Body is not read
// again). now is the server's current time.
//
// VerifySigV4 returns nil when the signature is valid. Otherwise its error
// says what was wrong in words meant for the client's developer; it never
// contains the secret key or the signature Herald expected. A signature
// mismatch reports the server's canonical URI, payload hash, signed headers
// and the hash of its canonical request, which a client can compare with its
// own (aws-sdk-go-v2: ClientLogMode aws.LogSigning) to find the difference.
// Presigned (query-string) requests and session tokens are not supported.
func VerifySigV4(r *http.Request, body []byte, creds Credentials, now time.Time) error {
	return VerifySigV4For(r, body, creds, ServiceExecuteAPI, now)
}

// VerifySigV4For is VerifySigV4 for the AWS service whose signing name is
// service (ServiceExecuteAPI, ServiceLambda): the credential scope must
// name exactly that service, and the signature is recomputed for it.
// Everything else is checked as VerifySigV4 describes; the path's double
// escaping is the same for every service but S3, which Herald does not
// serve.
func VerifySigV4For(r *http.Request, body []byte, creds Credentials, service string, now time.Time) error {
	if service == "" {
		return errors.New("sigv4: no service to verify for")
	}
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" {
		// Fail closed: an empty configured key must never match an empty
		// presented one.
		return errors.New("sigv4: no credentials are configured on the server")
	}

	authz := r.Header.Values("Authorization")
	switch {
	case len(authz) == 0:
		if r.URL != nil && r.URL.Query().Has("X-Amz-Signature") {
			return errors.New("sigv4: presigned (query-string) requests are not supported; sign with the Authorization header")
		}
		return ErrMissingAuthorization
	case len(authz) > 1:
		return errors.New("sigv4: more than one Authorization header")
	}
	auth, err := parseAuthorization(authz[0])
	if err != nil {
		return err
	}

	if subtle.ConstantTimeCompare([]byte(auth.accessKeyID), []byte(creds.AccessKeyID)) != 1 {
		// Access key IDs are identifiers, not secrets; echoing the presented
		// one tells an operator which key a misconfigured client is using.
		return fmt.Errorf("%w %q", ErrUnknownAccessKey, auth.accessKeyID)
	}
	if auth.service != service {
		return fmt.Errorf("sigv4: credential scope names service %q, want %q", auth.service, service)
	}
	if !auth.signs("host") {
		return errors.New(`sigv4: SignedHeaders must include "host"`)
	}
	if !auth.signs("x-amz-date") {
		return errors.New(`sigv4: SignedHeaders must include "x-amz-date"`)
	}

	dates := r.Header.Values("X-Amz-Date")
	switch {
	case len(dates) == 0:
		return errors.New("sigv4: missing X-Amz-Date header")
	case len(dates) > 1:
		return errors.New("sigv4: more than one X-Amz-Date header")
	}
	signingTime, err := time.Parse(amzDateLayout, strings.TrimSpace(dates[0]))
	if err != nil {
		return fmt.Errorf("sigv4: X-Amz-Date %q is not in the form yyyymmddThhmmssZ: %w", dates[0], err)
	}
	if day := signingTime.Format("20060102"); day != auth.date {
		return fmt.Errorf("sigv4: credential scope date %s does not match X-Amz-Date day %s", auth.date, day)
	}
	if skew := signingTime.Sub(now); skew > MaxClockSkew || skew < -MaxClockSkew {
		rel := "ahead of"
		if skew < 0 {
			rel, skew = "behind", -skew
		}
		return fmt.Errorf("sigv4: clock skew: signing time %s is %s %s server time %s (allowed ±%s)",
			signingTime.Format(amzDateLayout), skew.Round(time.Second), rel, now.UTC().Format(amzDateLayout), MaxClockSkew)
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if declared := r.Header.Values("X-Amz-Content-Sha256"); len(declared) > 0 {
		if len(declared) > 1 {
			return errors.New("sigv4: more than one X-Amz-Content-Sha256 header")
		}
		d := strings.TrimSpace(declared[0])
		if d == "UNSIGNED-PAYLOAD" || strings.HasPrefix(d, "STREAMING-") {
			return fmt.Errorf("sigv4: X-Amz-Content-Sha256 %q is not accepted: the body must be signed", d)
		}
		if d != payloadHash {
			return errors.New("sigv4: body does not match X-Amz-Content-Sha256 (hex SHA-256 of the body, lower case)")
		}
	}

	return checkSignature(r, auth, payloadHash, signingTime, creds, service)
}

// authorization is the parsed Authorization header.
type authorization struct {
	accessKeyID, date, region, service string
	signedHeaders                      string // as sent: lower case, sorted, ';'-separated
	signature                          []byte
}

func (a authorization) signs(name string) bool {
	for h := range strings.SplitSeq(a.signedHeaders, ";") {
		if h == name {
			return true
		}
	}
	return false
}

// parseAuthorization parses
//
//	AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex
//
// tolerating the spacing variations different SDKs produce.
func parseAuthorization(v string) (authorization, error) {
	var a authorization
	alg, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
	if alg != sigV4Algorithm {
		return a, fmt.Errorf("sigv4: malformed Authorization header: algorithm %q, want %s", alg, sigV4Algorithm)
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, fmt.Errorf("sigv4: malformed Authorization header: component %q is not key=value", strings.TrimSpace(part))
		}
		switch k {
		case "Credential", "SignedHeaders", "Signature":
		default:
			return a, fmt.Errorf("sigv4: malformed Authorization header: unknown component %q", k)
		}
		if _, dup := fields[k]; dup {
			return a, fmt.Errorf("sigv4: malformed Authorization header: %s given twice", k)
		}
		fields[k] = strings.TrimSpace(val)
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[k] == "" {
			return a, fmt.Errorf("sigv4: malformed Authorization header: missing %s", k)
		}
	}

	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 {
		return a, errors.New("sigv4: malformed Authorization header: Credential must be AKID/yyyymmdd/region/service/aws4_request")
	}
	a.accessKeyID, a.date, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
	if scope[4] != sigV4Terminal {
		return a, fmt.Errorf("sigv4: malformed Authorization header: credential scope ends in %q, want %q", scope[4], sigV4Terminal)
	}
	if a.accessKeyID == "" || a.region == "" || a.service == "" {
		return a, errors.New("sigv4: malformed Authorization header: empty access key id, region or service in Credential")
	}
	if _, err := time.Parse("20060102", a.date); err != nil {
		return a, fmt.Errorf("sigv4: malformed Authorization header: credential scope date %q: %w", a.date, err)
	}

	a.signedHeaders = fields["SignedHeaders"]
	sig, err := hex.DecodeString(fields["Signature"])
	if err != nil {
		return a, fmt.Errorf("sigv4: malformed Authorization header: Signature is not hex: %w", err)
	}
	if len(sig) != sha256.Size {
		return a, fmt.Errorf("sigv4: malformed Authorization header: Signature has %d hex digits, want %d", 2*len(sig), 2*sha256.Size)
	}
	a.signature = sig
	return a, nil
}

// checkSignature recomputes the signature with the SDK signer and compares.
func checkSignature(r *http.Request, auth authorization, payloadHash string, signingTime time.Time, creds Credentials, service string) error {
	path, rawQuery := wireTarget(r)
	// The signer canonicalizes the query through url.Values, which silently
	// drops a pair that does not parse ("a=%zz", "x;y"): such bytes would
	// pass unsigned, appended to any signed request. No SDK sends them.
	if _, err := url.ParseQuery(rawQuery); err != nil {
		return fmt.Errorf("sigv4: query string cannot be signed as sent: %w", err)
	}
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}

	// The signer takes the path from URL.Opaque when set, verbatim up to
	// escaping, which is the only way to hand it the client's exact bytes:
	// URL.EscapedPath may re-encode. The "//x" authority is required by its
	// Opaque parser and otherwise ignored (the host comes from Host). Scheme
	// stays empty so the signer does not strip a ":80"/":443" the client
	// sent and signed.
	cp := &http.Request{
		Method: r.Method,
		URL:    &url.URL{Opaque: "//x" + path, RawQuery: rawQuery},
		Host:   host,
		Header: http.Header{},
	}
	for name := range strings.SplitSeq(auth.signedHeaders, ";") {
		switch name {
		case "host":
			continue
		case "content-length":
			// Go moves Content-Length out of the header into ContentLength
			// on the client side, and the signer signs that field.
			n, err := contentLength(r)
			if err != nil {
				return err
			}
			cp.ContentLength = n
			continue
		}
		vals := headerValues(r.Header, name)
		if len(vals) == 0 {
			return fmt.Errorf("sigv4: signed header %q is missing from the request", name)
		}
		cp.Header[http.CanonicalHeaderKey(name)] = vals
	}

	var canonical, toSign string
	signer := v4.NewSigner(func(o *v4.SignerOptions) {
		// The signer's debug log is the only way to see the canonical request
		// it built; it feeds the mismatch diagnostics below.
		o.LogSigning = true
		o.Logger = logging.LoggerFunc(func(_ logging.Classification, _ string, v ...any) {
			if len(v) >= 2 {
				canonical, _ = v[0].(string)
				toSign, _ = v[1].(string)
			}
		})
	})
	err := signer.SignHTTP(context.Background(),
		aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey},
		cp, payloadHash, service, auth.region, signingTime)
	if err != nil {
		return fmt.Errorf("sigv4: recomputing signature: %w", err)
	}
	want, err := parseAuthorization(cp.Header.Get("Authorization"))
	if err != nil {
		return fmt.Errorf("sigv4: recomputing signature: %w", err)
	}

	if want.signedHeaders != auth.signedHeaders {
		// Only happens for signers that canonicalize differently from the
		// AWS SDKs (unsorted or upper-case names, a signed zero
		// Content-Length, headers the SDKs never sign such as User-Agent).
		return fmt.Errorf("sigv4: SignedHeaders %q cannot be reproduced; the server canonicalizes them as %q", auth.signedHeaders, want.signedHeaders)
	}
	if !hmac.Equal(want.signature, auth.signature) {
		return fmt.Errorf("sigv4: signature mismatch (check the secret access key, and that nothing altered the request after signing): "+
			"server canonical URI %q, payload hash %s, signed headers %q, canonical request hash %s",
			canonicalLine(canonical, 1), payloadHash, want.signedHeaders, lastLine(toSign))
	}
	return nil
}

// wireTarget returns the escaped path and raw query the client sent.
func wireTarget(r *http.Request) (path, rawQuery string) {
	if u := r.RequestURI; u != "" && u != "*" {
		if strings.HasPrefix(u, "/") {
			path, rawQuery, _ = strings.Cut(u, "?")
			return path, rawQuery
		}
		// Absolute-form request-target (proxy style).
		if pu, err := url.ParseRequestURI(u); err == nil {
			return pu.EscapedPath(), pu.RawQuery
		}
	}
	if r.URL == nil {
		return "/", ""
	}
	return r.URL.EscapedPath(), r.URL.RawQuery
}

func contentLength(r *http.Request) (int64, error) {
	// A server-side request keeps the header; a client-side one only has the
	// field.
	if v := r.Header.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sigv4: bad Content-Length %q: %w", v, err)
		}
		return n, nil
	}
	if r.ContentLength < 0 {
		return 0, errors.New(`sigv4: "content-length" is signed but the request has no Content-Length`)
	}
	return r.ContentLength, nil
}

// headerValues collects the values of every key equal to name ignoring case,
// because a hand-built header map may hold non-canonical keys. The canonical
// key comes first so that the usual case keeps the order the values arrived
// in, which the signature depends on.
func headerValues(h http.Header, name string) []string {
	key := http.CanonicalHeaderKey(name)
	vals := append([]string(nil), h[key]...)
	for k, v := range h {
		if k != key && strings.EqualFold(k, name) {
			vals = append(vals, v...)
		}
	}
	return vals
}

func canonicalLine(s string, i int) string {
	lines := strings.Split(s, "\n")
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

func lastLine(s string) string {
	return s[strings.LastIndexByte(s, '\n')+1:]
}
