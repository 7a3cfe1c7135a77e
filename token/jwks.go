package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxJWKSBytes bounds what a key set source may return. Real sets are a
	// few kilobytes; a misconfigured URL pointing at a large file must not
	// be read into memory whole.
	maxJWKSBytes = 1 << 20

	// fetchTimeout bounds a refresh even when Config.HTTPClient has no
	// timeout: token checks waiting on an unknown kid wait at most this.
	fetchTimeout = 30 * time.Second

	// minRSABits is the smallest RSA modulus accepted: 1024-bit keys are
	// within reach of well-funded attackers, and NIST has disallowed them
	// for signatures since 2013.
	minRSABits = 2048
)

// source is where a key set comes from.
type source interface {
	read(ctx context.Context) ([]byte, error)
	String() string // for errors and logs; never holds credentials
}

// urlSource fetches a key set over http(s).
type urlSource struct {
	url    string
	name   string // url with any password redacted
	client *http.Client
}

func (s *urlSource) String() string { return s.name }

func (s *urlSource) read(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, password included; keep only the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("GET: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET: status %s", resp.Status)
	}
	return readAtMost(resp.Body)
}

// fileSource reads a key set from a file. Rotating keys is replacing the
// file (write a new one, rename it over the old): it is read again when a
// token names an unknown kid and every refresh interval.
type fileSource string

func (s fileSource) String() string { return string(s) }

func (s fileSource) read(context.Context) ([]byte, error) {
	f, err := os.Open(string(s))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAtMost(f)
}

func readAtMost(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("key set is larger than %d bytes", maxJWKSBytes)
	}
	return b, nil
}

// verifyKey is one usable public key and the one algorithm it verifies.
type verifyKey struct {
	kid string
	alg string
	key any // *rsa.PublicKey, *ecdsa.PublicKey (P-256) or ed25519.PublicKey
}

// keySet is an immutable set of usable keys; a refresh replaces it whole.
type keySet struct {
	keys []verifyKey
}

// find returns the keys that may verify a token with kid and alg, and
// whether kid names any key at all. Without a kid every key of alg is a
// candidate.
func (s *keySet) find(kid, alg string) (keys []any, kidKnown bool) {
	for _, k := range s.keys {
		if kid != "" && k.kid != kid {
			continue
		}
		kidKnown = kidKnown || kid != ""
		if k.alg == alg {
			keys = append(keys, k.key)
		}
	}
	return keys, kidKnown
}

func (s *keySet) kids() []string {
	out := make([]string, len(s.keys))
	for i, k := range s.keys {
		out[i] = k.kid
	}
	return out
}

// parseKeySet reads a JWKS. Each key is parsed on its own with go-jose, so
// one key Herald cannot use (an encryption key, an RSA-PSS or P-384 key, a
// newer key type) is skipped, as RFC 7517 §5 asks, rather than failing the
// set; skipped says why each was. A set with no usable key is an error.
func parseKeySet(data []byte) (set *keySet, skipped []string, err error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	set = &keySet{}
	for i, r := range raw.Keys {
		var jk jose.JSONWebKey
		if err := jk.UnmarshalJSON(r); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		k, err := usable(jk)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %v", i, echo(jk.KeyID), err))
			continue
		}
		set.keys = append(set.keys, k)
	}
	if len(set.keys) == 0 {
		if len(skipped) > 0 {
			return nil, skipped, fmt.Errorf("no usable RS256, ES256 or EdDSA key (%s)", strings.Join(skipped, "; "))
		}
		return nil, nil, errors.New("no keys")
	}
	return set, skipped, nil
}

// usable pins k to the one algorithm its type verifies, or says why Herald
// will not use it. A key that also holds private parameters is used for
// its public half only.
func usable(k jose.JSONWebKey) (verifyKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return verifyKey{}, fmt.Errorf("use %q is not sig", echo(k.Use))
	}
	pub := k.Public().Key // nil for symmetric keys
	if _, sym := k.Key.([]byte); sym {
		return verifyKey{}, errors.New("symmetric (oct) keys are never used: HS256 verifies only with the configured secret")
	}
	var alg string
	switch key := pub.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return verifyKey{}, fmt.Errorf("RSA key of %d bits; at least %d are required", key.N.BitLen(), minRSABits)
		}
		alg = algRS256
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() {
			return verifyKey{}, fmt.Errorf("EC curve %s; only P-256 (ES256) is supported", key.Curve.Params().Name)
		}
		alg = algES256
	case ed25519.PublicKey:
		alg = algEdDSA
	default:
		return verifyKey{}, fmt.Errorf("key type %T is not supported", k.Key)
	}
	// A key whose alg names another algorithm than its type's is refused
	// rather than guessed at (RS512, PS256, ES384 on a P-256 key…).
	// "Ed25519" is RFC 9864's fully specified name for EdDSA on Ed25519.
	if k.Algorithm != "" && k.Algorithm != alg && (alg != algEdDSA || k.Algorithm != "Ed25519") {
		return verifyKey{}, fmt.Errorf("alg %q; this key type verifies only %s", echo(k.Algorithm), alg)
	}
	return verifyKey{kid: k.KeyID, alg: alg, key: pub}, nil
}

// keyStore holds the current key set and refreshes it: periodically (in
// the background, started by a Verify that finds the set due) and on a
// token with an unknown kid (in the foreground, rate-limited to one read
// per MinJWKSRefresh, single-flight so that every token waiting on a read
// shares it). A failed read keeps the last good set.
type keyStore struct {
	src   source
	every time.Duration
	now   func() time.Time
	log   *slog.Logger

	keys atomic.Pointer[keySet]
	// lastNano is when the last read started (UnixNano), readable without
	// mu so that Verify's periodic check costs an atomic load.
	lastNano atomic.Int64

	mu     sync.Mutex
	flight *flight // the read under way, or nil

	bg sync.WaitGroup // background reads, so tests can wait for them
}

// flight is one read of the source; done is closed when it ends.
type flight struct {
	done chan struct{}
	err  error
}

// init makes the first read; its failure is the caller's to report.
func (s *keyStore) init(ctx context.Context) error {
	s.lastNano.Store(s.now().UnixNano())
	set, skipped, err := s.load(ctx)
	if err != nil {
		return err
	}
	for _, why := range skipped {
		s.log.Warn("JWKS key skipped", "jwks", s.src.String(), "why", why)
	}
	s.keys.Store(set)
	s.log.Info("JWKS loaded", "jwks", s.src.String(), "kids", set.kids())
	return nil
}

func (s *keyStore) load(ctx context.Context) (*keySet, []string, error) {
	b, err := s.src.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	return parseKeySet(b)
}

// keyFor returns the key (or keys, when the token has no kid and several
// keys of its alg exist) that may verify a token with kid and alg, reading
// the source again, within the rate limit, when none is known: in the
// caller's goroutine when wait is true, else in the background.
func (s *keyStore) keyFor(kid, alg string, wait bool) (any, error) {
	s.maybeRefresh()
	if k, err, found := s.lookup(kid, alg); found {
		return k, err
	}
	s.refreshUnknown(wait)
	if k, err, found := s.lookup(kid, alg); found {
		return k, err
	}
	if kid == "" {
		return nil, refuse(KindUnknownKey, nil, "unknown signing key (no kid, no %s key)", alg)
	}
	return nil, refuse(KindUnknownKey, nil, "unknown signing key (kid %q)", echo(kid))
}

func (s *keyStore) lookup(kid, alg string) (key any, err error, found bool) {
	keys, kidKnown := s.keys.Load().find(kid, alg)
	switch {
	case len(keys) == 1:
		return keys[0], nil, true
	case len(keys) > 1:
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
		for i, k := range keys {
			set.Keys[i] = k
		}
		return set, nil, true
	case kidKnown:
		return nil, refuse(KindBadAlgorithm, nil, "token algorithm %s does not match its key (kid %q)", alg, echo(kid)), true
	}
	return nil, nil, false
}

// maybeRefresh starts a background read when the set is due, unless one is
// under way. The token being checked uses the current set meanwhile, so no
// request waits on a periodic read.
func (s *keyStore) maybeRefresh() {
	now := s.now()
	if now.Sub(time.Unix(0, s.lastNano.Load())) < s.every {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight != nil || now.Sub(time.Unix(0, s.lastNano.Load())) < s.every {
		return
	}
	s.goLocked(s.startLocked(now), "periodic")
}

// refreshUnknown reads the source for a token whose key is unknown: it
// joins the read under way if there is one, else starts one if the last
// started at least MinJWKSRefresh ago, else does nothing. 5,000 tokens
// with made-up kids thus cause one read per MinJWKSRefresh, and a burst of
// tokens signed with a newly published key all wait for the same read.
// Without wait, a read is started in the background and nothing waits.
func (s *keyStore) refreshUnknown(wait bool) {
	now := s.now()
	s.mu.Lock()
	if f := s.flight; f != nil {
		s.mu.Unlock()
		if wait {
			<-f.done
		}
		return
	}
	if now.Sub(time.Unix(0, s.lastNano.Load())) < MinJWKSRefresh {
		s.mu.Unlock()
		return
	}
	f := s.startLocked(now)
	if !wait {
		s.goLocked(f, "unknown kid")
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.run(f, "unknown kid")
}

// goLocked runs f in the background.
func (s *keyStore) goLocked(f *flight, why string) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.run(f, why)
	}()
}

// refreshNow reads the source whatever the rate limit, or waits for the
// read under way, and returns its error.
func (s *keyStore) refreshNow(ctx context.Context) error {
	s.mu.Lock()
	f := s.flight
	if f == nil {
		f = s.startLocked(s.now())
		s.mu.Unlock()
		s.run(f, "requested")
		return f.err
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *keyStore) startLocked(now time.Time) *flight {
	f := &flight{done: make(chan struct{})}
	s.flight = f
	s.lastNano.Store(now.UnixNano())
	return f
}

// run makes the read f stands for, installs the new set on success, logs a
// failure (the old set stays), and ends f.
func (s *keyStore) run(f *flight, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	set, skipped, err := s.load(ctx)
	if err != nil {
		f.err = err
		s.log.Warn("JWKS refresh failed; keeping the last good keys",
			"jwks", s.src.String(), "reason", why, "err", err, "kids", s.keys.Load().kids())
	} else {
		old := s.keys.Swap(set)
		if !slices.Equal(old.kids(), set.kids()) {
			s.log.Info("JWKS refreshed", "jwks", s.src.String(), "reason", why, "kids", set.kids())
		}
		for _, w := range skipped {
			s.log.Debug("JWKS key skipped", "jwks", s.src.String(), "why", w)
		}
	}
	s.mu.Lock()
	s.flight = nil
	s.mu.Unlock()
	close(f.done)
}
