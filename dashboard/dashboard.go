// Package dashboard serves Herald's own web page at /dashboard/: a bell with
// the unread badge, the inbox (mark read, mark all read, archive), the
// connection state and, in dev mode, a form that sends a test notification.
// The page is a client of Herald like any other: it uses @herald/client
// (its built bundle is committed in assets/, so the binary serves the page
// with no npm step) over the same /ws, /sse and /v1/inbox routes.
//
// In dev mode the page may also mint a token for any user and publish a
// test notification (POST /dashboard/dev/token and /dashboard/dev/notify).
// Those two routes exist only in dev mode, which listens on loopback only,
// and answer only same-origin JSON requests, so another site open in the
// same browser cannot use them.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
)

// assets are the page's files, embedded so that "go run ./cmd/herald"
// serves the dashboard with no build step.
//
//go:embed assets
var assets embed.FS

// Minter mints client tokens (token.Issuer).
type Minter interface {
	Mint(user herald.UserID, ttl time.Duration) (string, error)
}

// Publisher stores and delivers messages (stream.Service).
type Publisher interface {
	Publish(ctx context.Context, msgs []*herald.Message) ([]hub.Result, error)
}

// Config is what the dashboard needs. Tokens and Stream are used in dev
// mode only.
type Config struct {
	Dev    bool
	Tokens Minter
	Stream Publisher
	Log    *slog.Logger
}

// devTokenTTL is how long a token the dev form mints lives: a working
// session; the page asks again on every reconnect anyway.
const devTokenTTL = 12 * time.Hour

// New returns the handler of everything under /dashboard/.
func New(cfg Config) http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed directive guarantees the folder
	}
	files := http.StripPrefix("/dashboard/", http.FileServerFS(static))
	mux := http.NewServeMux()
	mux.Handle("GET /dashboard/", pageHeaders(files))
	mux.HandleFunc("GET /dashboard/config.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"dev": cfg.Dev})
	})
	if cfg.Dev {
		mux.Handle("POST /dashboard/dev/token", sameOrigin(handleToken(cfg)))
		mux.Handle("POST /dashboard/dev/notify", sameOrigin(handleNotify(cfg)))
	}
	// Herald's one error shape, also for what the dashboard does not have
	// (the dev routes outside dev mode).
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, herald.ENotFound, "no such dashboard route: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// pageHeaders sets what a page served by Herald should carry: a content
// security policy that allows only Herald itself (scripts, styles and the
// connection), and no caching, so a new binary's page is the one served.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses what a page of another origin could send: a JSON
// request from elsewhere needs a CORS preflight, which nothing here
// answers, and an Origin that is not this host's is refused outright.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, herald.EUnsupportedMedia, "Content-Type must be application/json")
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || !strings.EqualFold(u.Host, r.Host) {
				writeError(w, http.StatusForbidden, herald.EForbidden, "the dashboard's dev routes answer its own page only")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

type devRequest struct {
	User herald.UserID   `json:"user_id"`
	Data json.RawMessage `json:"data"`
}

func readRequest(w http.ResponseWriter, r *http.Request) (devRequest, bool) {
	var req devRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, herald.MaxPayload+4096))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, herald.EInvalidJSON, "body must be {\"user_id\": \"…\", \"data\": …}")
		return req, false
	}
	if err := herald.CheckUserID(string(req.User)); err != nil {
		writeError(w, http.StatusBadRequest, herald.EInvalidRequest, "user_id: "+herald.ErrorMessageOf(err))
		return req, false
	}
	return req, true
}

func handleToken(cfg Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := readRequest(w, r)
		if !ok {
			return
		}
		tok, err := cfg.Tokens.Mint(req.User, devTokenTTL)
		if err != nil {
			writeError(w, http.StatusInternalServerError, herald.EInternal, "could not mint a token")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"user_id": req.User, "token": tok})
	})
}

func handleNotify(cfg Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := readRequest(w, r)
		if !ok {
			return
		}
		if len(req.Data) == 0 || !json.Valid(req.Data) {
			writeError(w, http.StatusBadRequest, herald.EInvalidJSON, "data must be a JSON value")
			return
		}
		m := &herald.Message{User: req.User, Data: req.Data}
		res, err := cfg.Stream.Publish(r.Context(), []*herald.Message{m})
		if err != nil {
			cfg.Log.Error("dashboard notify failed", "err", err)
			writeError(w, http.StatusServiceUnavailable, herald.EUnavailable, "the message could not be stored")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"user_id": m.User, "id": m.ID, "offset": m.Offset, "connections": res[0].Connections})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code herald.ErrorCode, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}
