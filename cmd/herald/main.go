// Command herald runs the Herald notification gateway and its helpers:
//
//	herald [serve]               run the gateway (the default)
//	herald token USER [-ttl D]   mint a client token (needs HERALD_TOKEN_SECRET)
//	herald notify USER JSON      send a notification through the Go SDK (needs HERALD_API_KEY)
//	herald version               print the version
//
// main only wires: everything lives in run, which tests call directly.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  herald [serve] [flags]       run the gateway (default)
  herald token USER [-ttl D]   mint a client token for USER (uses HERALD_TOKEN_SECRET)
  herald notify USER JSON      notify USER with the JSON payload (uses HERALD_URL, HERALD_API_KEY)
  herald version               print the version
Run "herald serve -h" for the server's flags and environment variables.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", args[1:]
	if len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		cmd, rest = rest[0], rest[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "token":
		return mintToken(rest, getenv, stdout, stderr)
	case "notify":
		return notify(ctx, rest, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "herald", version)
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
