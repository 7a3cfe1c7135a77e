// Package token mints and verifies the client tokens browsers present to the
// gateway: HS256 JWTs whose "sub" is the user id and whose "exp" is enforced.
//
// The algorithm is pinned to HS256. A token that names another algorithm —
// "none" above all, or an asymmetric one an attacker could pair with the
// shared secret as a "public key" — is rejected before its signature is
// looked at.
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
	secret []byte
	now    func() time.Time
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

// Mint returns a token for user that expires after ttl.
func (i *Issuer) Mint(user herald.UserID, ttl time.Duration) (string, error) {
	if user == "" {
		return "", errors.New("mint token: empty user id")
	}
	if ttl <= 0 {
		return "", errors.New("mint token: ttl must be positive")
	}
	now := i.now()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   string(user),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	s, err := t.SignedString(i.secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// Verify checks tok's algorithm, signature and expiry and returns its claims.
// Errors are wrapped *herald.Error with code EUnauthorized; their message
// says what was wrong without echoing the token.
func (i *Issuer) Verify(tok string) (Claims, error) {
	if tok == "" {
		return Claims{}, herald.Errorf(herald.EUnauthorized, "missing token")
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
		return Claims{}, &herald.Error{Code: herald.EUnauthorized, Message: "token expired", Err: err}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return Claims{}, &herald.Error{Code: herald.EUnauthorized, Message: "token signature or algorithm rejected", Err: err}
	case err != nil:
		return Claims{}, &herald.Error{Code: herald.EUnauthorized, Message: "invalid token", Err: err}
	}
	if rc.Subject == "" {
		return Claims{}, herald.Errorf(herald.EUnauthorized, "token has no subject")
	}
	return Claims{User: herald.UserID(rc.Subject), Expires: rc.ExpiresAt.Time}, nil
}
