package api

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Browsers send an Origin header with every WebSocket handshake and every
// cross-origin (and most same-origin) fetch; other clients — servers,
// curl, native apps — send none. The origin policy decides which pages may
// talk to Herald: without it any web page could open /ws or /sse with a
// token it got hold of, or probe them, from the visitor's browser.

// pageOrigin is a parsed origin: scheme, lower-case host and port, the port
// always explicit for http and https ("https://a.example" and
// "https://a.example:443" are the same origin).
type pageOrigin struct{ scheme, host, port string }

// parseOrigin parses scheme://host[:port], as an Origin header or a
// configured allowed origin carries it. Nothing else may follow: a path,
// even a lone "/", is refused, since no browser sends one.
func parseOrigin(s string) (pageOrigin, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return pageOrigin{}, fmt.Errorf("origin %q: %w", s, err)
	case u.Scheme == "" || u.Host == "" || u.Opaque != "":
		return pageOrigin{}, fmt.Errorf("origin %q is not scheme://host[:port]", s)
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#"):
		return pageOrigin{}, fmt.Errorf("origin %q has more than scheme://host[:port]", s)
	case strings.Contains(u.Host, "*"):
		return pageOrigin{}, fmt.Errorf("origin %q: a wildcard is allowed only as a leading \"*.\" of the host", s)
	}
	o := pageOrigin{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if o.port == "" {
		o.port = defaultPort(o.scheme)
	}
	return o, nil
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	}
	return ""
}

// originPolicy is Config.AllowedOrigins (with CORSOrigins), parsed.
type originPolicy struct {
	any      bool                // "*": every origin
	exact    map[pageOrigin]bool // listed origins
	wildcard []pageOrigin        // https://*.example.com as {https, .example.com, 443}
}

// newOriginPolicy parses the allowed origins. An entry is "*", an origin,
// or an origin whose host starts with "*." (any subdomain, at any depth,
// but not the domain itself).
func newOriginPolicy(lists ...[]string) (*originPolicy, error) {
	p := &originPolicy{exact: map[pageOrigin]bool{}}
	for _, list := range lists {
		for _, s := range list {
			s = strings.TrimSpace(s)
			switch {
			case s == "":
				continue
			case s == "*":
				p.any = true
				continue
			}
			wild := false
			if scheme, rest, ok := strings.Cut(s, "://"); ok && strings.HasPrefix(rest, "*.") {
				s, wild = scheme+"://"+rest[2:], true
			}
			o, err := parseOrigin(s)
			if err != nil {
				return nil, fmt.Errorf("allowed origins: %w", err)
			}
			if wild {
				o.host = "." + o.host
				p.wildcard = append(p.wildcard, o)
			} else {
				p.exact[o] = true
			}
		}
	}
	return p, nil
}

// allows reports whether a page of the Origin header value from may call
// r's route. The request's own origin always may: a page served from
// Herald's host (directly, or by the same reverse proxy) is not
// cross-origin.
func (p *originPolicy) allows(from string, r *http.Request) bool {
	if p.any {
		return true
	}
	o, err := parseOrigin(from)
	if err != nil {
		return false // "null" (sandboxed pages, file://) among others
	}
	if sameOrigin(o, r.Host) || p.exact[o] {
		return true
	}
	for _, w := range p.wildcard {
		if o.scheme == w.scheme && o.port == w.port && strings.HasSuffix(o.host, w.host) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether o is the origin of a request to host (the
// Host header): the same host, case-insensitively, and port, a missing
// one being the default of o's scheme. The scheme itself is not
// compared: behind a proxy that terminates TLS the page is https and the
// request Herald sees is http.
func sameOrigin(o pageOrigin, host string) bool {
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = strings.Trim(host, "[]"), ""
	}
	if !strings.EqualFold(h, o.host) {
		return false
	}
	if port == "" {
		return o.port == defaultPort(o.scheme)
	}
	return o.port == port
}

// securityHeaders sets headers that matter to browsers on every reply,
// errors and 404s included: the replies are JSON (or an event stream) and
// must never be sniffed into something else, leak the URL — which may
// hold a token — in a Referer, or be framed.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
