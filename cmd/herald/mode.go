package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"
)

// mode is how Herald runs, decided from the secrets it was given.
type mode string

const (
	modeDev        mode = "dev mode"
	modeConfigured mode = "configured"
	modeProduction mode = "production"
)

// resolveMode decides the mode. Dev mode is never a fallback for a
// half-configured deployment: with one secret set and the other missing,
// Herald refuses to start instead of generating the other (and printing
// it), because that operator meant to configure it.
func resolveMode(c config) (mode, error) {
	tokens := c.TokenSecret != "" || c.JWKSURL != "" || c.JWKSFile != ""
	keys := c.APIKey != "" || len(c.APIKeys) > 0
	const tokenHow = "HERALD_TOKEN_SECRET (or jwks_url / jwks_file)"
	const keyHow = "HERALD_API_KEY (or HERALD_API_KEYS / [[api_keys]])"
	switch {
	case c.Env == "production" && c.Dev:
		return "", errors.New("dev mode and HERALD_ENV=production exclude each other")
	case c.Env == "production" && !tokens:
		return "", fmt.Errorf("HERALD_ENV=production: client tokens cannot be checked; set %s", tokenHow)
	case c.Env == "production" && !keys:
		return "", fmt.Errorf("HERALD_ENV=production: the server API has no key; set %s", keyHow)
	case c.Env == "production":
		return modeProduction, nil
	case c.Dev, !tokens && !keys:
		return modeDev, nil
	case !tokens:
		return "", fmt.Errorf("an API key is set but client tokens cannot be checked: set %s too, or set no secret at all for dev mode", tokenHow)
	case !keys:
		return "", fmt.Errorf("client tokens are configured but the server API has no key: set %s too, or set no secret at all for dev mode", keyHow)
	}
	return modeConfigured, nil
}

// checkLoopback refuses a dev-mode listen address that is not loopback:
// dev mode's secrets are printed and kept in a file, fine on a laptop,
// not on a network.
func checkLoopback(setting, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", setting, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("dev mode listens on loopback only, and %s is %q: set HERALD_TOKEN_SECRET and HERALD_API_KEY to listen beyond it (or use localhost:PORT)", setting, addr)
}

// isLoopback reports whether a bound address is reachable only from this
// machine.
func isLoopback(a net.Addr) bool {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	return false
}

// devSecrets are the secrets dev mode generated, and where they are kept.
type devSecrets struct {
	path        string // "" with an in-memory store: they last one run
	tokenSecret string
	apiKey      string
	created     bool
}

// devSecretsPath keeps dev-mode secrets beside the database, so that a
// restart keeps every client's token valid, and deleting the database's
// folder forgets both.
func devSecretsPath(db string) string {
	if db == ":memory:" {
		return ""
	}
	return db + ".dev-secrets"
}

// loadDevSecrets reads the dev secrets file, or generates the secrets and
// writes it (mode 0600).
func loadDevSecrets(db string) (devSecrets, error) {
	d := devSecrets{path: devSecretsPath(db)}
	if d.path != "" {
		f, err := os.Open(d.path)
		switch {
		case err == nil:
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
				switch {
				case !ok || strings.HasPrefix(k, "#"):
				case k == "HERALD_TOKEN_SECRET":
					d.tokenSecret = v
				case k == "HERALD_API_KEY":
					d.apiKey = v
				}
			}
			if err := sc.Err(); err != nil {
				return d, fmt.Errorf("dev secrets %s: %w", d.path, err)
			}
			if d.tokenSecret == "" || d.apiKey == "" {
				return d, fmt.Errorf("dev secrets %s lacks HERALD_TOKEN_SECRET or HERALD_API_KEY; delete it to generate new ones", d.path)
			}
			return d, nil
		case !errors.Is(err, fs.ErrNotExist):
			return d, fmt.Errorf("dev secrets: %w", err)
		}
	}
	d.tokenSecret, d.apiKey, d.created = randomHex(32), randomHex(24), true
	if d.path == "" {
		return d, nil
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return d, fmt.Errorf("dev secrets: %w", err)
	}
	_, err = fmt.Fprintf(f, "# Herald dev-mode secrets, generated %s.\n# Delete this file to get new ones (tokens minted with the old secret stop working).\nHERALD_TOKEN_SECRET=%s\nHERALD_API_KEY=%s\n",
		time.Now().UTC().Format(time.RFC3339), d.tokenSecret, d.apiKey)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return d, fmt.Errorf("dev secrets: %w", err)
	}
	return d, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported systems
	return hex.EncodeToString(b)
}
