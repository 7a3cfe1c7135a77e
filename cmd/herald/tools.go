package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/client"
	"github.com/herald-gw/herald/token"
)

// mintToken implements "herald token USER [-ttl D]".
func mintToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	user, rest := firstArg(args)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if user == "" {
		user, _ = firstArg(fs.Args())
	}
	if user == "" {
		return errors.New("usage: herald token USER [-ttl D]")
	}
	secret := getenv("HERALD_TOKEN_SECRET")
	if secret == "" {
		return errors.New("HERALD_TOKEN_SECRET is not set (herald serve prints it in dev mode)")
	}
	iss, err := token.NewIssuer([]byte(secret))
	if err != nil {
		return fmt.Errorf("HERALD_TOKEN_SECRET: %w", err)
	}
	// Tokens carry the iss and aud the server checks, when it checks them.
	issuers := splitList(getenv("HERALD_TOKEN_ISSUER"))
	if len(issuers) > 0 || getenv("HERALD_TOKEN_AUDIENCE") != "" {
		first := ""
		if len(issuers) > 0 {
			first = issuers[0]
		}
		iss = iss.WithClaims(first, getenv("HERALD_TOKEN_AUDIENCE"))
	}
	tok, err := iss.Mint(herald.UserID(user), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// notify implements "herald notify USER JSON" with the Go SDK.
func notify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 2 {
		return errors.New("usage: herald notify USER JSON")
	}
	if !json.Valid([]byte(args[1])) {
		return fmt.Errorf("payload is not valid JSON: %s", args[1])
	}
	base := getenv("HERALD_URL")
	if base == "" {
		base = "http://localhost:8080"
	}
	key := getenv("HERALD_API_KEY")
	if key == "" {
		return errors.New("HERALD_API_KEY is not set (herald serve prints it in dev mode)")
	}
	c, err := client.New(base, key)
	if err != nil {
		return err
	}
	d, err := c.Notify(ctx, args[0], json.RawMessage(args[1]))
	if err != nil {
		return err
	}
	out, _ := json.Marshal(d)
	fmt.Fprintln(stdout, string(out))
	return nil
}

func firstArg(args []string) (string, []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "", args
}
