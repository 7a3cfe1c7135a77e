package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/token"
)

// Scope names what an API key may do on the server API. A key holds a
// list of scopes; a route asks for one (or, for listing connections,
// either of two). Scopes let an operator hand each integration the least
// it needs: a reporting job a read key, a sender a publish key, an
// operator's tool a connections key.
type Scope string

// The scopes. docs/api.md's scopes table lists the routes of each.
const (
	// ScopePublish sends: POST /v1/notify, /v1/users/{user}/messages,
	// /v1/messages, /v1/broadcast, /v1/batch, and marks inboxes (POST
	// /v1/users/{user}/inbox/seen|read|archive). Marks belong here because
	// they are writes of the same party that writes the messages — the
	// application's backend, syncing "read in the e-mail" into the
	// inbox — and change what users see, which a read key must not do.
	ScopePublish Scope = "publish"
	// ScopeRead reads, changing nothing: GET history, inboxes and their
	// counts, and connection listings.
	ScopeRead Scope = "read"
	// ScopeConnections manages connections: GET and DELETE
	// /v1/users/{user}/connections and the management API
	// (/@connections/{id}: POST, GET, DELETE).
	ScopeConnections Scope = "connections"
	// ScopeAdmin may do everything any scope allows.
	ScopeAdmin Scope = "admin"
)

// Scopes returns every scope, in the order docs/api.md lists them.
func Scopes() []Scope { return []Scope{ScopePublish, ScopeRead, ScopeConnections, ScopeAdmin} }

// DefaultKeyName is the name of Config.APIKey's key in logs and metrics.
const DefaultKeyName = "default"

// MinKeySecret is the shortest secret a named key (Config.APIKeys) may
// have. Long enough that guessing is hopeless even without the rate
// limit; Config.APIKey, older than this rule, is not held to it.
const MinKeySecret = 16

// APIKey is one named key of the server API.
type APIKey struct {
	// Name identifies the key in logs, metrics and error messages: 1 to
	// 64 of A–Z a–z 0–9 . _ -, so it is safe as a metric label. Never the
	// secret.
	Name string
	// Secret is the bearer credential: Authorization: Bearer <Secret>.
	// Printable ASCII without spaces, at least MinKeySecret bytes.
	Secret string
	// Scopes are what the key may do; at least one.
	Scopes []Scope
}

// scopeSet is a set of scopes as bits.
type scopeSet uint8

func scopeBit(s Scope) scopeSet {
	if i := slices.Index(Scopes(), s); i >= 0 {
		return 1 << i
	}
	return 0
}

func (set scopeSet) allows(anyOf []Scope) bool {
	if set&scopeBit(ScopeAdmin) != 0 {
		return true
	}
	for _, s := range anyOf {
		if set&scopeBit(s) != 0 {
			return true
		}
	}
	return false
}

// keyEntry is a key as the set holds it: the secret only as its SHA-256.
type keyEntry struct {
	digest [sha256.Size]byte
	name   string
	scopes scopeSet
}

// KeySet is the server API's keys, ready to check requests against. It is
// immutable and safe for concurrent use. A nil *KeySet knows no key.
type KeySet struct {
	keys []keyEntry
}

// NewKeySet checks keys and returns them as a set. Names must be unique
// and well-formed, secrets unique and non-empty, and every key must have
// at least one scope Herald knows. (The secret length rule, which the
// legacy single key is exempt from, is Config.Validate's.)
func NewKeySet(keys ...APIKey) (*KeySet, error) {
	set := &KeySet{keys: make([]keyEntry, 0, len(keys))}
	names := make(map[string]bool, len(keys))
	digests := make(map[[sha256.Size]byte]string, len(keys))
	for _, k := range keys {
		if err := checkKeyName(k.Name); err != nil {
			return nil, err
		}
		if names[k.Name] {
			return nil, fmt.Errorf("API key %q is defined twice", k.Name)
		}
		names[k.Name] = true
		if k.Secret == "" {
			return nil, fmt.Errorf("API key %q has no secret", k.Name)
		}
		e := keyEntry{digest: sha256.Sum256([]byte(k.Secret)), name: k.Name}
		if other, dup := digests[e.digest]; dup {
			// Then a request would match two keys, and which one
			// decides its scopes and its name in the logs.
			return nil, fmt.Errorf("API keys %q and %q have the same secret", other, k.Name)
		}
		digests[e.digest] = k.Name
		if len(k.Scopes) == 0 {
			return nil, fmt.Errorf("API key %q has no scopes; give it some of %s", k.Name, scopeList(Scopes()))
		}
		for _, s := range k.Scopes {
			b := scopeBit(s)
			if b == 0 {
				return nil, fmt.Errorf("API key %q: unknown scope %q; the scopes are %s", k.Name, s, scopeList(Scopes()))
			}
			e.scopes |= b
		}
		set.keys = append(set.keys, e)
	}
	return set, nil
}

func checkKeyName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("API key name %q must be 1 to 64 characters", name)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("API key name %q may hold only A-Z, a-z, 0-9, '.', '_' and '-'", name)
		}
	}
	return nil
}

// checkSecret is the rule for a named key's secret: printable ASCII
// without spaces (what a bearer credential can carry intact, and what
// HERALD_API_KEYS can list), at least MinKeySecret bytes.
func checkSecret(k APIKey) error {
	if len(k.Secret) < MinKeySecret {
		return fmt.Errorf("API key %q: the secret must be at least %d bytes, got %d", k.Name, MinKeySecret, len(k.Secret))
	}
	for _, c := range []byte(k.Secret) {
		if c <= ' ' || c >= 0x7f || c == ',' {
			return fmt.Errorf("API key %q: the secret may hold only printable ASCII without spaces or commas", k.Name)
		}
	}
	return nil
}

func scopeList(scopes []Scope) string {
	s := make([]string, len(scopes))
	for i, sc := range scopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ", ")
}

// lookup returns the key whose secret is secret, or nil. It compares the
// SHA-256 of secret with every key's, always all of them, in constant
// time: how long it takes tells neither how much of a secret was right
// nor which key matched. (Comparing digests rather than secrets also
// makes the time independent of the secrets' lengths.)
func (k *KeySet) lookup(secret string) *keyEntry {
	if k == nil || secret == "" {
		return nil
	}
	d := sha256.Sum256([]byte(secret))
	found := -1
	for i := range k.keys {
		eq := subtle.ConstantTimeCompare(d[:], k.keys[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil
	}
	return &k.keys[found]
}

// Authorize checks r's bearer credential against the keys. It returns the
// key's name when the key has one of the scopes anyOf (or admin); an
// EUnauthorized *herald.Error when r carries no key of the set; an
// EForbidden one, naming the scope needed, when the key lacks them. The
// name is returned with the EForbidden error too, for the logs.
func (k *KeySet) Authorize(r *http.Request, anyOf ...Scope) (name string, err error) {
	e := k.lookup(token.Bearer(r))
	if e == nil {
		return "", herald.Errorf(herald.EUnauthorized, "missing or invalid API key")
	}
	if !e.scopes.allows(anyOf) {
		need := strings.ReplaceAll(scopeList(anyOf), ", ", " or ")
		return e.name, herald.Errorf(herald.EForbidden, "API key %q lacks the %s scope needed here", e.name, need)
	}
	return e.name, nil
}

// AuthorizeConnections is Authorize for the connections scope: the
// management API's (awsapi.APIKeys) Bearer alternative to SigV4.
func (k *KeySet) AuthorizeConnections(r *http.Request) (name string, err error) {
	return k.Authorize(r, ScopeConnections)
}

// AuthorizePublish is Authorize for the publish scope: the Bearer
// alternative to SigV4 on the Lambda Invoke API (awsapi.PublishKeys), whose
// built-in herald-notify publishes.
func (k *KeySet) AuthorizePublish(r *http.Request) (name string, err error) {
	return k.Authorize(r, ScopePublish)
}

// ParseAPIKeys parses HERALD_API_KEYS: comma-separated keys, each
// name:scope+scope:secret. The secret comes last so that it may hold
// colons (and plus signs, as base64 does); it may not hold commas. Blank
// entries are skipped. The result is not yet checked: Config.Validate
// does that, with the other settings.
func ParseAPIKeys(s string) ([]APIKey, error) {
	var keys []APIKey
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, rest, ok1 := strings.Cut(entry, ":")
		scopes, secret, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			// Never quote the entry: it may be a bare secret.
			return nil, fmt.Errorf("API key %d of the list: want name:scope+scope:secret", i+1)
		}
		k := APIKey{Name: name, Secret: secret}
		for _, sc := range strings.Split(scopes, "+") {
			if sc = strings.TrimSpace(sc); sc != "" {
				k.Scopes = append(k.Scopes, Scope(sc))
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyNameKey is the context key of the API key's name.
type keyNameKey struct{}

// KeyName returns the name of the API key that authorized the request
// whose context ctx is, or "" (no key: a browser route, or a request
// that was refused before its key was known).
func KeyName(ctx context.Context) string {
	name, _ := ctx.Value(keyNameKey{}).(string)
	return name
}

// RequestInfo is what the API learned about a request that the code
// around Handler wants for its logs and metrics. Context values flow only
// inwards, so the caller puts an empty RequestInfo into the request's
// context (WithRequestInfo) and reads it after ServeHTTP returns.
type RequestInfo struct {
	// KeyName is the API key's name, as KeyName returns it; also set when
	// the key was refused for its scope.
	KeyName string
}

type requestInfoKey struct{}

// WithRequestInfo returns ctx carrying info, for the API to fill in.
func WithRequestInfo(ctx context.Context, info *RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// withKeyName records the key's name for the handlers (KeyName) and for
// the caller (RequestInfo).
func withKeyName(r *http.Request, name string) *http.Request {
	if info, ok := r.Context().Value(requestInfoKey{}).(*RequestInfo); ok && info != nil {
		info.KeyName = name
	}
	return r.WithContext(context.WithValue(r.Context(), keyNameKey{}, name))
}
