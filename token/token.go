// Package token mints and verifies the client tokens browsers present to the
// gateway: JWTs whose "sub" is the user id and whose "exp" is enforced.
//
// Issuer mints and verifies HS256 tokens with one shared secret (dev mode,
// the `herald token` tool). Verifier is what a deployment checks tokens
// with: the HS256 secret, a JWKS of RS256, ES256 and EdDSA keys fetched
// from a URL or read from a file, or both; iss, aud, nbf and iat with
// leeway; numeric subjects. Every refusal is an EUnauthorized
// *herald.Error whose message names the failed check, and FailureKind
// gives it as a stable label for metrics.
//
// Algorithms are pinned per key: the secret verifies only HS256, an RSA key
// only RS256, a P-256 key only ES256, an Ed25519 key only EdDSA. A token
// that names another algorithm — "none" above all, or HS256 with a public
// key an attacker hopes is used as the HMAC secret — is refused before its
// signature is looked at.
package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-gw/herald"
)

// Claims is what a verified token says.
type Claims struct {
	User    herald.UserID
	Expires time.Time
}

// Issuer mints and verifies tokens with one shared secret. It is safe for
// concurrent use.
type Issuer struct {
	secret   []byte
	now      func() time.Time
	issuer   string // stamped as "iss" when set
	audience string // stamped as "aud" when set
}

// MinSecretLen is the shortest secret NewIssuer accepts: HS256 with fewer
// than 32 bytes of key is guessable offline from any captured token.
const MinSecretLen = 32

// NewIssuer returns an Issuer for secret.
func NewIssuer(secret []byte) (*Issuer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("token secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	return &Issuer{secret: secret, now: time.Now}, nil
}

// WithClaims returns a copy of i whose tokens also carry "iss" and "aud"
// (each only when not empty), so that tokens it mints pass a Verifier
// configured with Config.Issuers and Config.Audience.
func (i *Issuer) WithClaims(issuer, audience string) *Issuer {
	c := *i
	c.issuer, c.audience = issuer, audience
	return &c
}

// Mint returns a token for user that expires after ttl.
func (i *Issuer) Mint(user herald.UserID, ttl time.Duration) (string, error) {
	if user == "" {
		return "", errors.New("mint token: empty user id")
	}
	if ttl <= 0 {
		return "", errors.New("mint token: ttl must be positive")
	}
	now := i.now()
	rc := jwt.RegisteredClaims{
		Issuer:    i.issuer,
		Subject:   string(user),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	if i.audience != "" {
		rc.Audience = jwt.ClaimStrings{i.audience}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, rc)
	s, err := t.SignedString(i.secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// Verify checks tok's algorithm, signature and expiry and returns its claims.
// Errors are wrapped *herald.Error with code EUnauthorized; their message
// says what was wrong without echoing the token, and FailureKind classifies
// them as it does Verifier's. Unlike Verifier it allows no leeway and
// ignores iss and aud; its messages are kept as they were for the callers
// that match on them.
func (i *Issuer) Verify(tok string) (Claims, error) {
	if tok == "" {
		return Claims{}, refuse(KindMissing, nil, "missing token")
	}
	var rc jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(tok, &rc, func(*jwt.Token) (any, error) { return i.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(i.now),
		// One spelling per signature: base64url's last character has
		// unused bits, and without strict decoding four spellings verify.
		jwt.WithStrictDecoding(),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, refuse(KindExpired, err, "token expired")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		kind := KindBadSignature
		if h, herr := parseHeader(tok); herr == nil && h.Alg != algHS256 {
			kind = KindBadAlgorithm
		}
		return Claims{}, refuse(kind, err, "token signature or algorithm rejected")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return Claims{}, refuse(KindNoExpiry, err, "invalid token")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return Claims{}, refuse(KindNotYetValid, err, "invalid token")
	case err != nil:
		return Claims{}, refuse(KindMalformed, err, "invalid token")
	}
	if rc.Subject == "" {
		return Claims{}, refuse(KindNoSubject, nil, "token has no subject")
	}
	return Claims{User: herald.UserID(rc.Subject), Expires: rc.ExpiresAt.Time}, nil
}
