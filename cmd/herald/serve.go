package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/herald-gw/herald/api"
	"github.com/herald-gw/herald/awsapi"
	"github.com/herald-gw/herald/cluster"
	"github.com/herald-gw/herald/dashboard"
	"github.com/herald-gw/herald/gateway"
	"github.com/herald-gw/herald/health"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/lambdahost"
	"github.com/herald-gw/herald/metrics"
	"github.com/herald-gw/herald/routes"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/sse"
	"github.com/herald-gw/herald/stream"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	m, err := validate(cfg)
	if err != nil {
		return err
	}
	var dev *devSecrets
	if m == modeDev {
		if err := checkLoopback("HERALD_ADDR", cfg.Addr); err != nil {
			return err
		}
		if cfg.Admin != "" {
			if err := checkLoopback("HERALD_ADMIN_ADDR", cfg.Admin); err != nil {
				return err
			}
		}
		d, err := loadDevSecrets(cfg.DB)
		if err != nil {
			return err
		}
		// A secret the operator did set is kept (and never printed).
		if cfg.TokenSecret == "" {
			cfg.TokenSecret = d.tokenSecret
		} else {
			d.tokenSecret = ""
		}
		if cfg.APIKey == "" && len(cfg.APIKeys) == 0 {
			cfg.APIKey = d.apiKey
		} else {
			d.apiKey = ""
		}
		if len(cfg.origins()) == 0 {
			cfg.AllowedOrigins = []string{"*"}
		}
		dev = &d
	}
	// Metrics first: every part below reports to them. Their scrape-time
	// sources are closures over parts made further down.
	var sessions *session.Manager
	var srv *api.Server
	var member *cluster.Node
	var clusterCounts func() (uint64, uint64)
	var replicaComplete func() bool
	if cfg.Broker != "" {
		clusterCounts = func() (uint64, uint64) {
			if member == nil {
				return 0, 0
			}
			return member.Counted()
		}
		replicaComplete = func() bool { return member != nil && member.ReplicaComplete() }
	}
	mx := metrics.New(metrics.Sources{
		Version:     version,
		Connections: func() int { return sessions.Open() },
		Queues: func() (int, int, int) {
			q := sessions.QueueStats()
			return q.Frames, q.Bytes, q.MaxBytes
		},
		Ready:      func() bool { return srv.Ready() == nil },
		AuthKinds:  append(token.FailureKinds(), api.AuthAPIKey, api.AuthScope, api.AuthOrigin),
		RateLimits: []string{api.LimitConnect, api.LimitAPIKey},
		StoreOps:   health.Ops(),

		ClusterCounts:   clusterCounts,
		ReplicaComplete: replicaComplete,
	})

	verifier, err := token.NewVerifier(ctx, token.Config{
		Secret: []byte(cfg.TokenSecret), JWKSURL: cfg.JWKSURL, JWKSFile: cfg.JWKSFile, JWKSRefresh: cfg.JWKSRefresh,
		Issuers: cfg.TokenIssuer, Audience: cfg.TokenAudience, Leeway: leeway(cfg.TokenLeeway), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("client tokens: %w", err)
	}
	tokens := observedVerifier{verifier.Verify, mx}
	var issuer *token.Issuer // mints the dev banner's token
	if cfg.TokenSecret != "" {
		if issuer, err = token.NewIssuer([]byte(cfg.TokenSecret)); err != nil {
			return fmt.Errorf("HERALD_TOKEN_SECRET: %w", err)
		}
	}

	apiCfg, err := apiConfig(cfg)
	if err != nil {
		return err
	}
	apiCfg.Observer = apiObserver{mx}
	keys, err := apiCfg.KeySet()
	if err != nil {
		return err
	}
	routeSet, err := loadRoutes(cfg)
	if err != nil {
		return err
	}
	// The functions' runtime host starts once the listener's address is
	// known (functions are told it); the route set only needs to know
	// where it will be.
	fns := &functionSet{}
	var router *routes.Router
	if routeSet != nil && len(routeSet.Routes) > 0 {
		if router, err = routes.New(routeSet, fns.invokeRoute, log); err != nil {
			return err
		}
	}

	node := nodeName(cfg)
	inner, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	store := health.New(inner, health.Options{Logger: log, Observer: func(o health.Observation) {
		mx.StoreOp(o.Op, o.Duration, o.Failed)
	}})
	defer store.Close()

	// The bus to the other nodes: Redis or NATS, or the in-process one
	// when this node is alone.
	broker, err := openBroker(ctx, cfg, node, log)
	if err != nil {
		return err
	}
	defer broker.Close()

	// In a cluster the node keeps the connection registry and its broker
	// subscriptions in step with its hub, and answers for the other
	// nodes' connections.
	var hubOpts []hub.Option
	var streamOpts []stream.Option
	if reg := openRegistry(cfg, inner); reg != nil {
		member = cluster.New(cluster.Config{Node: node, Registry: reg, TTL: cfg.RegistryTTL, Broker: broker, Log: log})
		hubOpts = append(hubOpts, hub.WithWatcher(member))
		streamOpts = append(streamOpts, stream.WithCluster(member))
	}
	h := hub.New(cfg.MaxConnsPerUser, hubOpts...)
	msgRate := cfg.ClientMsgRate
	if msgRate == 0 {
		msgRate = -1 // documented as unlimited; session's 0 means its default
	}
	// A refresh is verified on an epoll worker: it must never wait for a
	// JWKS fetch (an unknown key is refused now and fetched meanwhile).
	sessions = session.NewManager(session.Config{
		PingInterval: cfg.PingInterval, MaxQueueFrames: cfg.QueueFrames, MaxQueueBytes: cfg.QueueBytes, MaxConns: cfg.MaxConns,
		MessageRate: msgRate, MessageBurst: cfg.ClientMsgBurst, Observer: mx, Routes: sessionRoutes(router),
	}, h, store, observedVerifier{verifier.VerifyCached, mx}, log)
	gw, err := gateway.New(gateway.Config{IO: cfg.IO, WriteTimeout: cfg.WriteTimeout, MaxFrame: cfg.MaxClientMsg, Routes: router}, sessions, tokens, log)
	if err != nil {
		return err
	}
	events := sse.New(sse.Config{WriteTimeout: cfg.WriteTimeout, Gateway: gw}, sessions, tokens, log)
	st := stream.New(store, h, broker, log, streamOpts...)
	stopSubscription, err := st.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("broker subscribe: %w", err)
	}
	defer stopSubscription()
	aws := awsapi.NewWithKeys(h, log, awsapi.Credentials{AccessKeyID: cfg.AWSAccessKeyID, SecretAccessKey: cfg.AWSSecretKey}, keys)
	streams := observedStreams{st, mx}
	var dash http.Handler
	if cfg.Dashboard == "on" || cfg.Dashboard == "auto" && dev != nil {
		dash = dashboard.New(dashboard.Config{Dev: dev != nil, Tokens: issuer, Stream: streams, Log: log})
	}
	deps := api.Deps{Hub: h, Gateway: gw, SSE: events, Stream: streams, AWS: aws, Health: readiness{store, broker}, Dashboard: dash, Invoke: aws.Invoke(fns)}
	if member != nil {
		aws.WithRemote(member)
		deps.Cluster = member
	}
	if router != nil {
		deps.Routes = router
	}
	srv = api.New(apiCfg, log, deps)
	fns.notify = srv.Notify

	apiHandler := srv.Handler()
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
	if fns.host, err = startFunctions(routeSet, cfg, localBase(scheme, ln.Addr()), log); err != nil {
		ln.Close()
		return err
	}
	httpSrv := &http.Server{
		Handler:           apiHandler,
		ReadHeaderTimeout: cfg.HandshakeTime, // also the WebSocket handshake timeout
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	base := scheme + "://" + displayAddr(ln.Addr())
	printBanner(stdout, base, ln.Addr(), cfg, dev, issuer, gw.IO())
	if !isLoopback(ln.Addr()) {
		log.Info("listening beyond loopback: reachable from the network", "addr", ln.Addr().String())
	}
	var admin *http.Server
	if cfg.Admin != "" {
		adminLn, err := net.Listen("tcp", cfg.Admin)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
		if !isLoopback(adminLn.Addr()) {
			log.Warn("admin listener beyond loopback: /metrics and /debug/pprof are reachable from the network", "addr", adminLn.Addr().String())
		}
		admin = &http.Server{Handler: adminHandler(gw, sessions, apiHandler, mx.Handler()), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: cfg.MaxHeaderBytes}
		go func() { _ = admin.Serve(adminLn) }()
		defer admin.Close()
		fmt.Fprintf(stdout, "Admin (metrics, pprof, health) on http://%s/ — keep it private\n", adminLn.Addr())
	}
	log.Info("herald started", "addr", ln.Addr().String(), "io", gw.IO(), "store", storeName(cfg), "broker", redactURL(cfg.Broker), "node", node, "mode", string(m), "version", version)

	gwCtx, stopGateway := context.WithCancel(context.WithoutCancel(ctx))
	defer stopGateway()
	var wg sync.WaitGroup
	wg.Go(func() { _ = gw.Run(gwCtx) })
	wg.Go(func() { sessions.Run(gwCtx) })
	if member != nil {
		// Leaves the registry once the drain is over (gwCtx ends).
		wg.Go(func() { member.Run(gwCtx, h) })
	}
	if router != nil {
		wg.Go(func() { router.Run(gwCtx) })
	}
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
	drainStart := time.Now()
	drain(log, srv, httpSrv, sessions, cfg.DrainTimeout)
	stopGateway()
	wg.Wait()
	stopFunctions(log, router, aws, fns.host, drainStart.Add(cfg.DrainTimeout+time.Second))
	if err := store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	log.Info("stopped", "drain", time.Since(drainStart).Round(time.Millisecond))
	return nil
}

// drain takes the node out of service within window plus one second,
// whatever the load:
//
//  1. /readyz answers 503 at once, and so do new /ws and /sse: the
//     listener stays open, so a load balancer sees the node leave instead
//     of a refused connection;
//  2. connections are closed spread over window (1012, after a
//     "reconnect" message), so clients do not all reconnect to the other
//     nodes in the same instant; API requests are still served meanwhile;
//  3. the listener closes and in-flight requests get what is left of the
//     extra second; whatever still runs then is cut off.
func drain(log *slog.Logger, srv *api.Server, httpSrv *http.Server, sessions *session.Manager, window time.Duration) {
	deadline := time.Now().Add(window)
	log.Info("draining", "connections", sessions.Open(), "window", window)
	srv.SetReady(false)
	closing, cancel := context.WithDeadline(context.Background(), deadline)
	sessions.Drain(closing, wire.CloseServiceRestart, "server restarting", window)
	cancel()
	// Closed sockets leave the registry as their close handshakes end;
	// give them until the deadline, then half of the extra second.
	for sessions.Open() > 0 && time.Now().Before(deadline.Add(300*time.Millisecond)) {
		time.Sleep(10 * time.Millisecond)
	}
	shutdown, cancel := context.WithDeadline(context.Background(), deadline.Add(700*time.Millisecond))
	defer cancel()
	if err := httpSrv.Shutdown(shutdown); err != nil {
		log.Warn("in-flight requests cut off at the end of the drain", "err", err)
		httpSrv.Close()
	}
	if n := sessions.Open(); n > 0 {
		log.Warn("connections still open at the end of the drain are cut off", "connections", n)
	}
}

// stopFunctions waits for the Invoke API's Event invocations and the
// route set's integrations still running — the drain's $disconnects above
// all — then stops the functions'
// processes, all by deadline (the drain window plus its extra second),
// so that a route set does not stretch the exit the drain promises.
func stopFunctions(log *slog.Logger, router *routes.Router, aws *awsapi.Handlers, host *lambdahost.Host, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-300*time.Millisecond))
	if err := aws.Shutdown(ctx); err != nil {
		log.Warn("Event invocations cut off at the end of the drain", "err", err)
	}
	cancel()
	if router != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-200*time.Millisecond))
		if err := router.Wait(ctx); err != nil {
			log.Warn("integrations cut off at the end of the drain", "err", err)
		}
		cancel()
	}
	if host != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := host.Close(ctx); err != nil {
			log.Warn("functions stopped", "err", err)
		}
		cancel()
	}
}

// sessionRoutes is router as the session manager takes it: a nil
// interface when there is no route set, never a typed nil.
func sessionRoutes(router *routes.Router) session.Routes {
	if router == nil {
		return nil
	}
	return router
}

// displayAddr turns a listen address into one a browser or curl can use.
// Only loopback becomes "localhost": an address that listens on every
// interface is shown as it is, so the banner never hides that it does.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if host == "127.0.0.1" || host == "::1" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func printBanner(w io.Writer, base string, bound net.Addr, cfg config, dev *devSecrets, issuer *token.Issuer, io string) {
	where := ""
	if !isLoopback(bound) {
		where = " — reachable from the network"
		if t, ok := bound.(*net.TCPAddr); ok && t.IP.IsUnspecified() {
			where = " — every network interface"
		}
	}
	fmt.Fprintf(w, "Herald %s listening on %s (connections: %s, store: %s)%s\n", version, base, io, storeName(cfg), where)
	if dev == nil {
		return
	}
	wsBase := "ws" + base[len("http"):]
	tok, _ := issuer.Mint("demo", 24*time.Hour)
	fmt.Fprint(w, "\nDev mode: loopback only, any browser origin. Never use it in production (HERALD_ENV=production refuses it).\n")
	if dev.tokenSecret != "" || dev.apiKey != "" {
		switch {
		case dev.path == "":
			fmt.Fprint(w, "Generated secrets, for this run only (the store is in memory):\n")
		case dev.created:
			fmt.Fprintf(w, "Generated secrets, kept in %s so that tokens stay valid across restarts:\n", dev.path)
		default:
			fmt.Fprintf(w, "Secrets from %s (delete it to get new ones):\n", dev.path)
		}
		if dev.tokenSecret != "" {
			fmt.Fprintf(w, "  export HERALD_TOKEN_SECRET=%s\n", dev.tokenSecret)
		}
		if dev.apiKey != "" {
			fmt.Fprintf(w, "  export HERALD_API_KEY=%s\n", dev.apiKey)
		}
	}
	key := dev.apiKey
	if key == "" {
		key = "$HERALD_API_KEY" // configured: never printed
	}
	fmt.Fprintf(w, `
A token for user "demo", valid 24h:
  %s

Connect a client (browser console, or any WebSocket tool):
  new WebSocket("%s/ws?token=%s").onmessage = e => console.log(JSON.parse(e.data))

Notify user "demo":
  curl -sS %s/v1/notify -H "Authorization: Bearer %s" -H 'Content-Type: application/json' -d '{"user_id":"demo","json":"{\"message\":\"hello\"}"}'

Dashboard (inbox, badge, test notifications): %s/dashboard/#user=demo

API: %s/v1/...   WebSocket: %s/ws   Docs: docs/api.md
`, tok, wsBase, tok, base, key, base, base, wsBase)
}

// newLogger returns the process's logger, in the configured format.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // checked by config.check
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFmt == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
