package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-gw/herald"
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
	s := serveWith(tb, Config{IO: mode}, session.Config{})
	return s.h, s.iss, s.addr
}

// testServer is a gateway behind a loopback HTTP server.
type testServer struct {
	h    *hub.Hub
	sm   *session.Manager
	iss  *token.Issuer
	addr string
}

// serveWith runs a gateway configured with cfg over a session manager
// configured with scfg behind a real loopback HTTP server, whose every
// path authenticates and upgrades, until the test ends. Errors are
// answered the way package api answers them (writeTestError).
func serveWith(tb testing.TB, cfg Config, scfg session.Config) *testServer {
	tb.Helper()
	iss, err := token.NewIssuer([]byte("test-secret-0123456789abcdef0123456789"))
	if err != nil {
		tb.Fatal(err)
	}
	h := hub.New(0)
	store := memory.New()
	sm := session.NewManager(scfg, h, store, iss, slog.New(slog.DiscardHandler))
	g, err := New(cfg, sm, iss, slog.New(slog.DiscardHandler))
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
			writeTestError(w, err)
		}
	}))
	tb.Cleanup(func() {
		srv.Close()
		cancel()
		store.Close()
	})
	return &testServer{h: h, sm: sm, iss: iss, addr: strings.TrimPrefix(srv.URL, "http://")}
}

// writeTestError answers err as package api's writeError does: the JSON
// error shape, with the status docs/api.md gives the code. Headers set on
// w before (Accept's) are kept, as they are there.
func writeTestError(w http.ResponseWriter, err error) {
	code := herald.ErrorCodeOf(err)
	status := map[herald.ErrorCode]int{
		herald.EInvalidRequest:  http.StatusBadRequest,
		herald.EUnauthorized:    http.StatusUnauthorized,
		herald.EUpgradeRequired: http.StatusUpgradeRequired,
		herald.EUnavailable:     http.StatusServiceUnavailable,
	}[code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	var body struct {
		Error struct {
			Code    herald.ErrorCode `json:"code"`
			Message string           `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, herald.ErrorMessageOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
