package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/token"
)

// testSessions returns a session manager over h with a memory store and
// the default limits.
func testSessions(h *hub.Hub) *session.Manager {
	return session.NewManager(session.Config{}, h, memory.New(), nil, slog.New(slog.DiscardHandler))
}

// serveGateway runs a gateway with the given I/O strategy behind a real
// loopback HTTP server (every path upgrades) until the test ends, and
// returns its hub, the issuer of its client tokens and its host:port.
func serveGateway(tb testing.TB, mode string) (*hub.Hub, *token.Issuer, string) {
	tb.Helper()
	iss, err := token.NewIssuer([]byte("test-secret-0123456789abcdef0123456789"))
	if err != nil {
		tb.Fatal(err)
	}
	h := hub.New(0)
	g, err := New(Config{IO: mode}, testSessions(h), iss, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go g.Run(ctx)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := g.Authenticate(r)
		if err == nil {
			err = g.Accept(w, r, claims)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}))
	tb.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return h, iss, strings.TrimPrefix(srv.URL, "http://")
}
