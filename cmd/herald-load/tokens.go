package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// readTokenFile reads client tokens, one per line (blank lines and lines
// starting with # are skipped), for deployments whose token secret the
// tester should not hold. Each token's user is its "sub" claim, read
// without verifying the signature: the server verifies, the tool only needs
// to know whom to notify.
func readTokenFile(path string) (tokens, users []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sub, err := tokenSubject(line)
		if err != nil {
			return nil, nil, fmt.Errorf("token file %s line %d: %w", path, n, err)
		}
		tokens = append(tokens, line)
		users = append(users, sub)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("token file: %w", err)
	}
	if len(tokens) == 0 {
		return nil, nil, fmt.Errorf("token file %s holds no token", path)
	}
	return tokens, users, nil
}

// tokenSubject returns a JWT's "sub" claim, unverified.
func tokenSubject(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT (want three dot-separated parts)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("JWT payload: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("JWT payload: %w", err)
	}
	if claims.Sub == "" {
		return "", errors.New("JWT has no sub claim")
	}
	return claims.Sub, nil
}
