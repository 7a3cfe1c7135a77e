package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/api"
	"github.com/herald-gw/herald/awsapi"
	"github.com/herald-gw/herald/gateway"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/sqlite"
	"github.com/herald-gw/herald/sse"
	"github.com/herald-gw/herald/stream"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	devMode := cfg.TokenSecret == "" || cfg.APIKey == ""
	if cfg.TokenSecret == "" {
		cfg.TokenSecret = randomHex(32)
	}
	if cfg.APIKey == "" {
		cfg.APIKey = randomHex(24)
	}
	issuer, err := token.NewIssuer([]byte(cfg.TokenSecret))
	if err != nil {
		return fmt.Errorf("HERALD_TOKEN_SECRET: %w", err)
	}

	var store herald.Store
	if cfg.DB == ":memory:" {
		store = memory.New()
	} else {
		s, err := sqlite.Open(ctx, cfg.DB)
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		store = s
	}
	defer store.Close()

	// One node: the in-process bus has no other node to carry messages to.
	// Cluster brokers (Redis, NATS) plug in here.
	broker := memory.NewBus().Node()
	defer broker.Close()

	h := hub.New(cfg.MaxConnsPerUser)
	sessions := session.NewManager(session.Config{
		PingInterval: cfg.PingInterval, MaxQueueFrames: cfg.QueueFrames, MaxQueueBytes: cfg.QueueBytes, MaxConns: cfg.MaxConns,
	}, h, store, issuer, log)
	gw, err := gateway.New(gateway.Config{IO: cfg.IO, WriteTimeout: cfg.WriteTimeout, MaxFrame: cfg.MaxClientMsg}, sessions, issuer, log)
	if err != nil {
		return err
	}
	events := sse.New(sse.Config{WriteTimeout: cfg.WriteTimeout, Gateway: gw}, sessions, issuer, log)
	st := stream.New(store, h, broker, log)
	stopSubscription, err := st.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("broker subscribe: %w", err)
	}
	defer stopSubscription()
	aws := awsapi.New(h, log, awsapi.Credentials{AccessKeyID: cfg.AWSAccessKeyID, SecretAccessKey: cfg.AWSSecretKey}, cfg.APIKey)
	srv := api.New(api.Config{APIKey: cfg.APIKey, CORSOrigins: splitList(cfg.CORSOrigins)}, log,
		api.Deps{Hub: h, Gateway: gw, SSE: events, Stream: st, AWS: aws})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		// TLS connections are *tls.Conn, so the gateway serves them with a
		// goroutine each: the TLS record layer needs blocking reads.
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
		scheme = "https"
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: cfg.HandshakeTime, // also the WebSocket handshake timeout
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	base := scheme + "://" + displayAddr(ln.Addr())
	printBanner(stdout, base, cfg, devMode, issuer, gw.IO())
	if cfg.AdminAddr != "" {
		adminLn, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
		admin := &http.Server{Handler: adminHandler(gw, sessions), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = admin.Serve(adminLn) }()
		defer admin.Close()
		fmt.Fprintf(stdout, "Admin (pprof, stats) on http://%s/debug/ — keep it private\n", adminLn.Addr())
	}
	log.Info("herald started", "addr", ln.Addr().String(), "io", gw.IO(), "db", cfg.DB, "version", version)

	gwCtx, stopGateway := context.WithCancel(context.WithoutCancel(ctx))
	defer stopGateway()
	var wg sync.WaitGroup
	wg.Go(func() { _ = gw.Run(gwCtx) })
	wg.Go(func() { sessions.Run(gwCtx) })
	wg.Go(func() {
		st.RunRetention(gwCtx, stream.Retention{MaxCount: cfg.RetentionCount, MaxAge: cfg.RetentionAge, Every: cfg.RetentionEvery}, log)
	})
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	select {
	case err := <-serveErr:
		stopGateway()
		wg.Wait()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Drain: refuse new connections, let in-flight API calls finish, then
	// close WebSockets spread over the drain window so that clients do not
	// reconnect to the other nodes all at once.
	log.Info("draining", "connections", sessions.Open(), "window", cfg.DrainTimeout)
	srv.SetReady(false)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainTimeout+5*time.Second)
	defer cancel()
	// Shutdown waits for the requests in flight, and an SSE stream served
	// by net/http (HTTP/2; HTTP/1 streams are taken over by the gateway) is
	// one until its session is closed: drain the sessions meanwhile.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sessions.Drain(shutdownCtx, wire.CloseServiceRestart, "server restarting", cfg.DrainTimeout)
	}()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http shutdown", "err", err)
	}
	<-drained
	for sessions.Open() > 0 && shutdownCtx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	stopGateway()
	wg.Wait()
	if err := store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	log.Info("stopped")
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported systems
	return hex.EncodeToString(b)
}

// displayAddr turns a listen address into one a browser or curl can use.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() || host == "127.0.0.1" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func printBanner(w io.Writer, base string, cfg config, devMode bool, issuer *token.Issuer, io string) {
	wsBase := "ws" + base[len("http"):]
	fmt.Fprintf(w, "Herald %s listening on %s (connections: %s, store: %s)\n", version, base, io, cfg.DB)
	if !devMode {
		return
	}
	tok, _ := issuer.Mint("demo", 24*time.Hour)
	fmt.Fprintf(w, `
Dev mode: HERALD_TOKEN_SECRET and HERALD_API_KEY are not both set, so this run uses:
  export HERALD_TOKEN_SECRET=%s
  export HERALD_API_KEY=%s
Set both to keep them across restarts (tokens minted now stop working otherwise).

A token for user "demo", valid 24h:
  %s

Connect a client (browser console, or any WebSocket tool):
  new WebSocket("%s/ws?token=%s").onmessage = e => console.log(JSON.parse(e.data))

Notify user "demo":
  curl -sS %s/v1/notify -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{"user_id":"demo","json":"{\"message\":\"hello\"}"}'

API: %s/v1/...   WebSocket: %s/ws   Docs: docs/api.md
`, cfg.TokenSecret, cfg.APIKey, tok, wsBase, tok, base, cfg.APIKey, base, wsBase)
}

func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
