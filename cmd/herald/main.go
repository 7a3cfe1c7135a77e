// Command herald runs the Herald notification gateway and its helpers.
// "herald --help" lists the commands; docs/api.md#command-line has them
// all. main only wires: everything lives in run, which tests call directly.
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
	stopWithParent(ctx, stop)
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

const usage = `Herald — a real-time notification gateway.

usage:
  herald [serve] [flags]        run the gateway (the default command)
  herald dev [flags]            run in dev mode: generated secrets kept next to
                                the database, loopback only, any origin
  herald token USER [-ttl D]    print a client token for USER (uses HERALD_TOKEN_SECRET)
  herald notify USER JSON       notify USER (uses HERALD_URL, HERALD_API_KEY)
  herald config example         print a commented config file with every setting
  herald config check FILE      check a config file ("-" reads stdin) and the environment
  herald health [URL]           exit 0 if the server's /readyz answers 200 (container checks)
  herald db new-epoch [-db F]   give the SQLite file a new history epoch (after restoring a
                                backup: resuming clients then reset instead of skipping)
  herald version                print the version (also --version)
  herald help                   this text (also -h, --help)

Secrets are read from the environment (or *_FILE settings), never from flags:
  HERALD_TOKEN_SECRET           HS256 secret of client tokens (>= 32 bytes)
  HERALD_API_KEY                bearer key of the server API (all scopes)
  HERALD_API_KEYS               named keys: "name:scope+scope:secret,…"
  HERALD_AWS_SECRET_ACCESS_KEY  SigV4 secret for /@connections
With none of them set, "herald serve" runs in dev mode; HERALD_ENV=production
refuses to start without them. "herald serve -h" lists every setting.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", args[1:]
	if len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd == "serve" && len(rest) > 0 {
		switch rest[0] {
		case "--version", "-version":
			cmd = "version"
		case "--help", "-help", "-h":
			if len(args) > 1 && args[1] != "serve" { // "herald -h", not "herald serve -h"
				cmd = "help"
			}
		}
	}
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "dev":
		return serve(ctx, append([]string{"-dev"}, rest...), getenv, stdout, stderr)
	case "token":
		return mintToken(rest, getenv, stdout, stderr)
	case "notify":
		return notify(ctx, rest, getenv, stdout, stderr)
	case "config":
		return configCommand(rest, getenv, stdout, stderr)
	case "health":
		return healthCommand(ctx, rest, getenv, stdout)
	case "db":
		return dbCommand(ctx, rest, getenv, stdout, stderr)
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
