package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/herald-gw/herald"
)

// config is everything "herald serve" can be told, by flag or by HERALD_*
// environment variable (a flag wins). docs/api.md lists every variable.
type config struct {
	Addr            string
	DB              string
	TokenSecret     string
	APIKey          string
	AWSAccessKeyID  string
	AWSSecretKey    string
	IO              string
	TLSCert         string
	TLSKey          string
	PingInterval    time.Duration
	WriteTimeout    time.Duration
	DrainTimeout    time.Duration
	HandshakeTime   time.Duration
	MaxConns        int
	MaxConnsPerUser int
	QueueFrames     int
	QueueBytes      int
	MaxClientMsg    int
	RetentionCount  int
	RetentionAge    time.Duration
	RetentionEvery  time.Duration
	CORSOrigins     string
	AdminAddr       string
	LogLevel        string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("herald serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var perr error
	envDur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil && perr == nil {
			perr = fmt.Errorf("%s: %w", name, err)
		}
		return d
	}
	envInt := func(name string, def int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil && perr == nil {
			perr = fmt.Errorf("%s: %w", name, err)
		}
		return n
	}
	fs.StringVar(&c.Addr, "addr", env("HERALD_ADDR", "localhost:8080"), "listen address ($HERALD_ADDR); use :8080 to listen on every interface")
	fs.StringVar(&c.DB, "db", env("HERALD_DB", "herald.db"), `SQLite file for durable data ($HERALD_DB); ":memory:" keeps everything in memory`)
	fs.StringVar(&c.IO, "io", env("HERALD_IO", ""), `connection I/O: "epoll" (Linux) or "goroutine"; empty picks epoll where possible ($HERALD_IO)`)
	fs.StringVar(&c.TLSCert, "tls-cert", env("HERALD_TLS_CERT", ""), "serve TLS with this certificate file ($HERALD_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("HERALD_TLS_KEY", ""), "and this key file ($HERALD_TLS_KEY)")
	fs.DurationVar(&c.PingInterval, "ping-interval", envDur("HERALD_PING_INTERVAL", herald.DefaultPingInterval), "heartbeat period; a connection that answered none of the last two pings is dropped ($HERALD_PING_INTERVAL)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", envDur("HERALD_WRITE_TIMEOUT", herald.DefaultWriteTimeout), "longest a socket write may take before the connection is dropped ($HERALD_WRITE_TIMEOUT)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", envDur("HERALD_DRAIN_TIMEOUT", 10*time.Second), "on SIGTERM, close connections spread over this window ($HERALD_DRAIN_TIMEOUT)")
	fs.DurationVar(&c.HandshakeTime, "handshake-timeout", envDur("HERALD_HANDSHAKE_TIMEOUT", 10*time.Second), "time a client has to send its HTTP request (and WebSocket handshake) headers ($HERALD_HANDSHAKE_TIMEOUT)")
	fs.IntVar(&c.MaxConns, "max-conns", envInt("HERALD_MAX_CONNS", 0), "connections on this node, 0 = unbounded ($HERALD_MAX_CONNS)")
	fs.IntVar(&c.MaxConnsPerUser, "max-conns-per-user", envInt("HERALD_MAX_CONNS_PER_USER", herald.DefaultMaxConnsPerUser), "connections per user, 0 = unbounded; past it the oldest is closed with 4029 ($HERALD_MAX_CONNS_PER_USER)")
	fs.IntVar(&c.QueueFrames, "send-queue-frames", envInt("HERALD_SEND_QUEUE_FRAMES", herald.DefaultSendQueueFrames), "frames waiting per connection before it is closed with 4008 ($HERALD_SEND_QUEUE_FRAMES)")
	fs.IntVar(&c.QueueBytes, "send-queue-bytes", envInt("HERALD_SEND_QUEUE_BYTES", herald.DefaultSendQueueBytes), "bytes waiting per connection before it is closed with 4008 ($HERALD_SEND_QUEUE_BYTES)")
	fs.IntVar(&c.MaxClientMsg, "max-client-message", envInt("HERALD_MAX_CLIENT_MESSAGE", herald.DefaultMaxClientMessage), "largest message a client may send; past it close 1009 ($HERALD_MAX_CLIENT_MESSAGE)")
	fs.IntVar(&c.RetentionCount, "retention-count", envInt("HERALD_RETENTION_COUNT", 1000), "messages kept per user, -1 = no count limit ($HERALD_RETENTION_COUNT)")
	fs.DurationVar(&c.RetentionAge, "retention-age", envDur("HERALD_RETENTION_AGE", 7*24*time.Hour), "messages older than this are dropped, -1s = no age limit ($HERALD_RETENTION_AGE)")
	fs.DurationVar(&c.RetentionEvery, "retention-interval", envDur("HERALD_RETENTION_INTERVAL", time.Minute), "how often retention trims streams ($HERALD_RETENTION_INTERVAL)")
	fs.StringVar(&c.CORSOrigins, "cors-origins", env("HERALD_CORS_ORIGINS", "*"), "comma-separated origins allowed to call the browser inbox API, * for any ($HERALD_CORS_ORIGINS)")
	fs.StringVar(&c.AdminAddr, "admin-addr", env("HERALD_ADMIN_ADDR", ""), "serve pprof and /debug/stats here, e.g. 127.0.0.1:6060; off when empty ($HERALD_ADMIN_ADDR)")
	fs.StringVar(&c.LogLevel, "log-level", env("HERALD_LOG_LEVEL", "info"), "debug, info, warn or error ($HERALD_LOG_LEVEL)")
	// Secrets come only from the environment: flags show up in ps(1).
	c.TokenSecret = getenv("HERALD_TOKEN_SECRET")
	c.APIKey = getenv("HERALD_API_KEY")
	c.AWSAccessKeyID = getenv("HERALD_AWS_ACCESS_KEY_ID")
	c.AWSSecretKey = getenv("HERALD_AWS_SECRET_ACCESS_KEY")
	if perr != nil {
		return c, perr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, fmt.Errorf("TLS needs both a certificate and a key")
	}
	if (c.AWSAccessKeyID == "") != (c.AWSSecretKey == "") {
		return c, fmt.Errorf("HERALD_AWS_ACCESS_KEY_ID and HERALD_AWS_SECRET_ACCESS_KEY must be set together")
	}
	return c, c.check()
}

// check refuses values that have no meaning, so that a 0 (or a negative
// number) never silently becomes a default: each setting either documents
// what 0 means (max-conns: unbounded) or refuses it here.
func (c config) check() error {
	positive := []struct {
		name string
		ok   bool
	}{
		{"HERALD_PING_INTERVAL", c.PingInterval > 0},
		{"HERALD_WRITE_TIMEOUT", c.WriteTimeout > 0},
		{"HERALD_HANDSHAKE_TIMEOUT", c.HandshakeTime > 0},
		{"HERALD_RETENTION_INTERVAL", c.RetentionEvery > 0},
		{"HERALD_SEND_QUEUE_FRAMES", c.QueueFrames > 0},
		{"HERALD_SEND_QUEUE_BYTES", c.QueueBytes > 0},
		{"HERALD_MAX_CLIENT_MESSAGE", c.MaxClientMsg > 0},
	}
	for _, p := range positive {
		if !p.ok {
			return fmt.Errorf("%s must be positive", p.name)
		}
	}
	switch {
	case c.DrainTimeout < 0:
		return fmt.Errorf("HERALD_DRAIN_TIMEOUT must not be negative (0 closes every connection at once)")
	case c.MaxConns < 0:
		return fmt.Errorf("HERALD_MAX_CONNS must not be negative (0 = unbounded)")
	case c.MaxConnsPerUser < 0:
		return fmt.Errorf("HERALD_MAX_CONNS_PER_USER must not be negative (0 = unbounded)")
	case c.RetentionCount == 0 || c.RetentionCount < -1:
		return fmt.Errorf("HERALD_RETENTION_COUNT must be positive, or -1 for no count limit")
	case c.RetentionAge == 0 || c.RetentionAge < 0 && c.RetentionAge != -time.Second:
		return fmt.Errorf("HERALD_RETENTION_AGE must be positive, or -1s for no age limit")
	}
	return nil
}
