package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/api"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/metrics"
	"github.com/herald-gw/herald/token"
)

// validate checks what serve would refuse before it opens anything, so
// that "herald config check" says what "herald serve" would: the mode, the
// token secret's length, the API keys, origins and proxies.
func validate(cfg config) (mode, error) {
	m, err := resolveMode(cfg)
	if err != nil {
		return m, err
	}
	if cfg.TokenSecret != "" && len(cfg.TokenSecret) < token.MinSecretLen {
		return m, fmt.Errorf("HERALD_TOKEN_SECRET must be at least %d bytes, got %d", token.MinSecretLen, len(cfg.TokenSecret))
	}
	// Production holds the single key to the rule named keys follow: a
	// short key is guessable.
	if m == modeProduction && cfg.APIKey != "" && len(cfg.APIKey) < api.MinKeySecret {
		return m, fmt.Errorf("HERALD_ENV=production: HERALD_API_KEY must be at least %d bytes, got %d", api.MinKeySecret, len(cfg.APIKey))
	}
	if _, err := apiConfig(cfg); err != nil {
		return m, err
	}
	// Nodes on a broker share their streams: each would otherwise number
	// its own, and a client moving between nodes would see offsets that
	// mean nothing there.
	if cfg.Broker != "" && cfg.Store == "" {
		return m, fmt.Errorf("HERALD_BROKER needs HERALD_STORE: the nodes of a cluster share one store (postgres://…); an SQLite file belongs to one node")
	}
	return m, nil
}

// observedVerifier counts refused client tokens by why they were refused
// (token.FailureKind), wherever a token is checked: /ws, /sse, the browser
// API and refresh messages.
type observedVerifier struct {
	verify func(string) (token.Claims, error)
	m      *metrics.Metrics
}

func (v observedVerifier) Verify(tok string) (token.Claims, error) {
	c, err := v.verify(tok)
	if err != nil {
		v.m.AuthFailed(token.FailureKind(err))
	}
	return c, err
}

// apiObserver passes the API's refusals to the metrics. Refused tokens
// are counted by observedVerifier, by kind; the API's own "token" count
// would count them twice.
type apiObserver struct{ m *metrics.Metrics }

func (o apiObserver) RateLimited(kind string) { o.m.RateLimited(kind) }
func (o apiObserver) AuthFailed(kind string) {
	if kind != api.AuthToken {
		o.m.AuthFailed(kind)
	}
}

// observedStreams times the server API's publishes and counts what they
// delivered on this node.
type observedStreams struct {
	api.Streams
	m *metrics.Metrics
}

func (s observedStreams) Publish(ctx context.Context, msgs []*herald.Message) ([]hub.Result, error) {
	start := time.Now()
	res, err := s.Streams.Publish(ctx, msgs)
	if err != nil {
		return res, err
	}
	var delivered, failed int
	for _, r := range res {
		delivered += r.Connections
		failed += len(r.Failed)
	}
	s.m.Published(len(msgs), delivered, failed, time.Since(start))
	return res, nil
}

// leeway maps the documented token_leeway (0s = none) to token.Config's
// (0 = the default).
func leeway(d time.Duration) time.Duration {
	if d == 0 {
		return token.NoLeeway
	}
	return d
}

// apiConfig turns the settings into the API's configuration and checks it.
func apiConfig(cfg config) (api.Config, error) {
	c := api.Config{
		APIKey: cfg.APIKey, APIKeys: cfg.APIKeys, AllowedOrigins: cfg.origins(),
		ConnectRate: cfg.ConnectRate, ConnectBurst: cfg.ConnectBurst, KeyRate: cfg.KeyRate, KeyBurst: cfg.KeyBurst,
	}
	for _, p := range cfg.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil && !strings.Contains(p, "/") {
			var a netip.Addr
			if a, err = netip.ParseAddr(p); err == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return c, fmt.Errorf("trusted_proxies: %q is not an address or CIDR prefix", p)
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
