package token

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-gw/herald"
)

const (
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat when
	// Config.Leeway is zero. NTP keeps servers within a second of each
	// other, but an identity provider's clock, a VM resumed from suspend or
	// a container host without NTP drifts by seconds; 30 s absorbs that
	// while lengthening a token's life by little next to the minutes or
	// hours tokens usually live. golang-jwt's default of 0 turns every
	// second of skew into a refused, just-minted token.
	DefaultLeeway = 30 * time.Second

	// NoLeeway, as Config.Leeway, turns leeway off: exp, nbf and iat are
	// compared with this node's clock exactly.
	NoLeeway time.Duration = -1

	// DefaultJWKSRefresh is how often the key set is fetched again when
	// Config.JWKSRefresh is zero. New keys do not wait for it (a token with
	// an unknown kid triggers a fetch); it bounds how long a key the
	// identity provider has withdrawn keeps verifying tokens.
	DefaultJWKSRefresh = 15 * time.Minute

	// MinJWKSRefresh is the shortest refresh interval, and the rate limit
	// of fetches caused by unknown kids: however many tokens name a key
	// the set does not have, the source is read at most once per this.
	MinJWKSRefresh = 10 * time.Second

	// MaxTokenLen is the longest token Verify decodes. A JWT with a 4096-bit
	// RSA signature and a generous set of claims is a few kilobytes; a
	// bigger one is refused before any base64 or JSON work is spent on it.
	MaxTokenLen = 16 << 10

	// defaultHTTPTimeout bounds a JWKS fetch when Config.HTTPClient is nil.
	defaultHTTPTimeout = 10 * time.Second
)

// Config configures a Verifier. At least one of Secret, JWKSURL and
// JWKSFile must be set; other zero fields take their defaults.
type Config struct {
	// Secret is the HS256 shared secret, at least MinSecretLen bytes.
	// Empty: HS256 tokens are refused (a deployment that only uses JWKS).
	Secret []byte

	// JWKSURL is an http or https URL serving a JSON Web Key Set of RS256,
	// ES256 (P-256) and EdDSA (Ed25519) public keys. JWKSFile is a path to
	// one. Set at most one of them; unset, RS256, ES256 and EdDSA tokens
	// are refused.
	JWKSURL  string
	JWKSFile string

	// JWKSRefresh is how often the key set is read again
	// (DefaultJWKSRefresh; at least MinJWKSRefresh).
	JWKSRefresh time.Duration

	// Issuers, when not empty, are the accepted values of the "iss" claim;
	// a token without iss, or with another, is refused.
	Issuers []string

	// Audience, when set, must be the "aud" claim or one of its elements.
	Audience string

	// Leeway is the clock skew tolerated on exp, nbf and iat: 0 means
	// DefaultLeeway, NoLeeway (any negative value) none.
	Leeway time.Duration

	// HTTPClient fetches JWKSURL (nil: a client with a 10 s timeout).
	HTTPClient *http.Client

	// Logger reports key set loads and failed refreshes (nil: slog.Default).
	Logger *slog.Logger

	// Now is the clock (nil: time.Now). Tests inject one to expire tokens
	// and to pace key refreshes without sleeping.
	Now func() time.Time
}

// Verifier checks client tokens: HS256 with a shared secret and RS256,
// ES256 and EdDSA with keys from a JWKS, each algorithm pinned to its key
// type; exp, nbf and iat with leeway; iss and aud when configured; and the
// user id in sub. It is safe for concurrent use, and its Verify has the
// signature session.Verifier and the transports expect.
type Verifier struct {
	secret   []byte
	issuers  []string
	audience string
	leeway   time.Duration
	now      func() time.Time
	// parsers holds one parser per allowed algorithm, each pinned to that
	// algorithm alone: a token is parsed by the parser of the alg its
	// header names, so the library can never pick another.
	parsers map[string]*jwt.Parser
	jwks    *keyStore // nil without a JWKS
}

// Algorithms of client tokens. Each is pinned to one kind of key: the
// secret verifies only HS256, an RSA key only RS256, a P-256 key only
// ES256, an Ed25519 key only EdDSA.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// NewVerifier checks cfg and, with a JWKS, loads it. ctx bounds that first
// load only; later refreshes run on their own.
//
// An unreadable or unusable key set fails the call, for a URL as for a
// file: a typo in the URL, a wrong network route or an empty set would
// otherwise start a node that answers every client with 401, which is
// harder to notice than a process that does not start, and a supervisor
// restarting Herald retries the fetch anyway. Once started, a failing
// source never takes keys away: the last good set keeps serving.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 && cfg.JWKSURL == "" && cfg.JWKSFile == "" {
		return nil, errors.New("token: no way to verify client tokens: set a secret (HS256), a JWKS URL or a JWKS file")
	}
	if len(cfg.Secret) > 0 && len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("token: secret must be at least %d bytes, got %d", MinSecretLen, len(cfg.Secret))
	}
	if cfg.JWKSURL != "" && cfg.JWKSFile != "" {
		return nil, errors.New("token: set a JWKS URL or a JWKS file, not both")
	}
	refresh := cfg.JWKSRefresh
	switch {
	case refresh == 0:
		refresh = DefaultJWKSRefresh
	case refresh < MinJWKSRefresh:
		return nil, fmt.Errorf("token: JWKS refresh interval %v is below the minimum %v", refresh, MinJWKSRefresh)
	}
	for _, iss := range cfg.Issuers {
		if strings.TrimSpace(iss) == "" {
			return nil, errors.New("token: an accepted issuer is empty")
		}
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	v := &Verifier{
		secret:   bytes.Clone(cfg.Secret),
		issuers:  slices.Clone(cfg.Issuers),
		audience: cfg.Audience,
		leeway:   leeway,
		now:      cfg.Now,
		parsers:  make(map[string]*jwt.Parser),
	}
	if v.now == nil {
		v.now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var algs []string
	if len(v.secret) > 0 {
		algs = append(algs, algHS256)
	}
	if cfg.JWKSURL != "" || cfg.JWKSFile != "" {
		algs = append(algs, algRS256, algES256, algEdDSA)
		var src source
		if cfg.JWKSURL != "" {
			u, err := url.Parse(cfg.JWKSURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, errors.New("token: JWKS URL must be an absolute http or https URL")
			}
			client := cfg.HTTPClient
			if client == nil {
				client = &http.Client{Timeout: defaultHTTPTimeout}
			}
			src = &urlSource{url: u.String(), name: u.Redacted(), client: client}
			if u.Scheme == "http" && !isLoopback(u.Hostname()) {
				log.Warn("JWKS is fetched over plain http: anyone on the path can substitute keys and mint tokens", "jwks", u.Redacted())
			}
		} else {
			src = fileSource(cfg.JWKSFile)
		}
		v.jwks = &keyStore{src: src, every: refresh, now: v.now, log: log}
		if err := v.jwks.init(ctx); err != nil {
			return nil, fmt.Errorf("token: load JWKS from %s: %w", src, err)
		}
	}
	for _, alg := range algs {
		v.parsers[alg] = jwt.NewParser(
			jwt.WithValidMethods([]string{alg}),
			// Claims are checked by checkClaims, after the signature, so
			// every claim rule and its message live in one place.
			jwt.WithoutClaimsValidation(),
			// One spelling per signature: base64url's last character has
			// unused bits, and without strict decoding four spellings verify.
			jwt.WithStrictDecoding(),
		)
	}
	return v, nil
}

// Refresh reads the key set now, whatever the rate limit, for an operator's
// "reload keys" signal. A failure keeps the current keys and is returned.
// Without a JWKS it does nothing.
func (v *Verifier) Refresh(ctx context.Context) error {
	if v.jwks == nil {
		return nil
	}
	return v.jwks.refreshNow(ctx)
}

// Verify checks tok and returns its claims. Claims.Expires is the instant
// this Verifier stops accepting the token — exp plus the leeway — so a
// connection lives exactly as long as its token would still be accepted.
//
// Every error is a *herald.Error with code EUnauthorized whose message
// names the check that failed, never echoing the token; FailureKind gives
// the same reason as a stable label.
func (v *Verifier) Verify(tok string) (Claims, error) { return v.verify(tok, true) }

// VerifyCached is Verify for callers that must not block, such as a
// connection's event loop handling a "refresh" message: it never waits for
// the key set to be read. A token whose kid is unknown starts a read in the
// background (within the same rate limit) and is refused now with
// "unknown signing key"; the client's next try finds the key.
func (v *Verifier) VerifyCached(tok string) (Claims, error) { return v.verify(tok, false) }

func (v *Verifier) verify(tok string, wait bool) (Claims, error) {
	if tok == "" {
		return Claims{}, refuse(KindMissing, nil, "missing token")
	}
	if len(tok) > MaxTokenLen {
		return Claims{}, refuse(KindMalformed, fmt.Errorf("token is %d bytes; the limit is %d", len(tok), MaxTokenLen), "malformed token")
	}
	h, err := parseHeader(tok)
	if err != nil {
		return Claims{}, refuse(KindMalformed, err, "malformed token")
	}
	p := v.parsers[h.Alg]
	if p == nil {
		return Claims{}, refuse(KindBadAlgorithm, nil, "token algorithm %q not allowed", echo(h.Alg))
	}
	var rc rawClaims
	_, err = p.ParseWithClaims(tok, &rc, func(*jwt.Token) (any, error) {
		if h.Alg == algHS256 {
			return v.secret, nil
		}
		return v.jwks.keyFor(h.Kid, h.Alg, wait)
	})
	if err != nil {
		var he *herald.Error
		switch {
		case errors.As(err, &he): // from keyFor: unknown key or algorithm mismatch
			return Claims{}, he
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			return Claims{}, refuse(KindBadSignature, err, "token signature invalid")
		case errors.Is(err, jwt.ErrTokenUnverifiable):
			return Claims{}, refuse(KindBadAlgorithm, err, "token algorithm %q not allowed", echo(h.Alg))
		default: // jwt.ErrTokenMalformed: claims or signature not base64url JSON
			return Claims{}, refuse(KindMalformed, err, "malformed token")
		}
	}
	return v.checkClaims(&rc)
}

// header is what Verify reads of a token's header before the JWT library
// does: the algorithm (to pick the parser pinned to it) and the key id.
type header struct {
	Alg string
	Kid string
}

// parseHeader decodes tok's header strictly, as the JWT library will, so
// both read the same alg.
func parseHeader(tok string) (header, error) {
	var h header
	if strings.Count(tok, ".") != 2 {
		return h, errors.New("not three dot-separated parts")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok[:strings.IndexByte(tok, '.')])
	if err != nil {
		return h, fmt.Errorf("header is not base64url: %w", err)
	}
	m, err := members(b)
	if err != nil {
		return h, fmt.Errorf("header: %w", err)
	}
	// RFC 7515 §4.1.11: a recipient that does not understand a critical
	// extension (such as unencoded payloads, RFC 7797) must refuse.
	if _, ok := m["crit"]; ok {
		return h, errors.New("header has crit extensions")
	}
	for name, dst := range map[string]*string{"alg": &h.Alg, "kid": &h.Kid} {
		if raw, ok := m[name]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return h, fmt.Errorf("header %s is not a string", name)
			}
		}
	}
	return h, nil
}

// members decodes a JSON object into its members, with names matched
// exactly. (Decoding into a struct would match "SUB" or "Alg" as well:
// encoding/json folds case, and a claim named so by an issuer for its own
// purposes must not be taken for a registered one.)
func members(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil { // null
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// rawClaims holds the registered claims undecoded, so that checkClaims
// decides what each JSON type means (a numeric sub, a string exp) with its
// own message, rather than the whole token failing to decode.
type rawClaims struct {
	Sub, Exp, Nbf, Iat, Iss, Aud json.RawMessage
}

// UnmarshalJSON matches claim names exactly; see members.
func (c *rawClaims) UnmarshalJSON(b []byte) error {
	m, err := members(b)
	if err != nil {
		return err
	}
	*c = rawClaims{Sub: m["sub"], Exp: m["exp"], Nbf: m["nbf"], Iat: m["iat"], Iss: m["iss"], Aud: m["aud"]}
	return nil
}

// The jwt.Claims methods are never used: claims validation is off in the
// parsers and checkClaims reads the fields.
func (*rawClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (*rawClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (*rawClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (*rawClaims) GetIssuer() (string, error)                   { return "", nil }
func (*rawClaims) GetSubject() (string, error)                  { return "", nil }
func (*rawClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// checkClaims applies the claim rules to a token whose signature verified.
func (v *Verifier) checkClaims(rc *rawClaims) (Claims, error) {
	now := v.now()
	if absent(rc.Exp) {
		return Claims{}, refuse(KindNoExpiry, nil, "token has no exp")
	}
	exp, ok := numericDate(rc.Exp)
	if !ok {
		return Claims{}, refuse(KindMalformed, nil, "token exp is not a number")
	}
	deadline := exp.Add(v.leeway)
	if !now.Before(deadline) {
		return Claims{}, refuse(KindExpired, nil, "token expired")
	}
	if !absent(rc.Nbf) {
		nbf, ok := numericDate(rc.Nbf)
		if !ok {
			return Claims{}, refuse(KindMalformed, nil, "token nbf is not a number")
		}
		if now.Add(v.leeway).Before(nbf) {
			return Claims{}, refuse(KindNotYetValid, nil, "token not valid yet")
		}
	}
	if !absent(rc.Iat) {
		iat, ok := numericDate(rc.Iat)
		if !ok {
			return Claims{}, refuse(KindMalformed, nil, "token iat is not a number")
		}
		if now.Add(v.leeway).Before(iat) {
			return Claims{}, refuse(KindNotYetValid, nil, "token issued in the future")
		}
	}
	if len(v.issuers) > 0 {
		var iss string
		if json.Unmarshal(rc.Iss, &iss) != nil || !slices.Contains(v.issuers, iss) {
			return Claims{}, refuse(KindIssuer, nil, "token issuer not accepted")
		}
	}
	if v.audience != "" && !slices.Contains(audiences(rc.Aud), v.audience) {
		return Claims{}, refuse(KindAudience, nil, "token audience not accepted")
	}
	user, err := subject(rc.Sub)
	if err != nil {
		return Claims{}, err
	}
	return Claims{User: user, Expires: deadline}, nil
}

// absent reports whether a claim is missing or null (RFC 7519 gives null
// no meaning; treating it as absent keeps "exp": null from passing as 0).
func absent(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || string(s) == "null"
}

// maxNumericDate is 9999-12-31T23:59:59Z. Dates beyond ±it are clamped so
// that 1e300 is "never" rather than an overflowed time.
const maxNumericDate = 253402300799

// numericDate reads a JWT NumericDate: a JSON number (not a string) of
// seconds since the epoch, fractions allowed. A number too large for a
// float64 (1e400) is not one.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, false
	}
	f = max(-maxNumericDate, min(f, maxNumericDate))
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// audiences reads "aud": one string or an array of them. Anything else,
// or a non-string element, contributes nothing.
func audiences(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil {
		return nil
	}
	out := make([]string, 0, len(many))
	for _, m := range many {
		if json.Unmarshal(m, &one) == nil {
			out = append(out, one)
		}
	}
	return out
}

// subject reads "sub": a string is the user id; an integer is the user
// whose id is its decimal digits, exactly as written (9007199254740993
// stays that, not the nearest float64), with -0 read as 0. Either way the
// id must pass herald.CheckUserID.
func subject(raw json.RawMessage) (herald.UserID, error) {
	s := bytes.TrimSpace(raw)
	var user string
	switch {
	case absent(s):
		return "", refuse(KindNoSubject, nil, "token has no sub")
	case s[0] == '"':
		if err := json.Unmarshal(s, &user); err != nil {
			return "", refuse(KindBadSubject, err, "token sub is not a string or an integer")
		}
		if user == "" {
			return "", refuse(KindNoSubject, nil, "token has no sub")
		}
	case s[0] == '-' || (s[0] >= '0' && s[0] <= '9'):
		// The JSON decoder has checked the number's grammar, so digits
		// after an optional minus are an integer; a fraction or an
		// exponent (4.2, 42.0, 1e400) is not taken for one.
		digits := strings.TrimPrefix(string(s), "-")
		if strings.Trim(digits, "0123456789") != "" {
			return "", refuse(KindBadSubject, nil, "token sub is a number but not an integer")
		}
		user = string(s)
		if user == "-0" {
			user = "0"
		}
	default:
		return "", refuse(KindBadSubject, nil, "token sub is not a string or an integer")
	}
	if err := herald.CheckUserID(user); err != nil {
		return "", refuse(KindBadSubject, err, "token sub: %s", herald.ErrorMessageOf(err))
	}
	return herald.UserID(user), nil
}

// isLoopback reports whether host names this machine, where plain http
// cannot be intercepted on the way.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	return strings.HasPrefix(host, "127.") || host == "::1"
}
