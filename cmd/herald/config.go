package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/api"
)

// clusterRE is what a cluster or node name may hold: it becomes part of
// Redis keys and NATS subjects.
var clusterRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// config is everything "herald serve" can be told. Each field is one row
// of settings() below, which gives its name in the three places a setting
// can come from: the config file (max_conns), the environment
// (HERALD_MAX_CONNS) and the command line (-max-conns). docs/api.md's
// configuration table is checked against that list by a test.
type config struct {
	ConfigFile string

	Env     string // "production" refuses to start without secrets
	Dev     bool
	Addr    string
	Admin   string
	DB      string
	Store   string // "" = the SQLite file DB; postgres://… = PostgreSQL (package postgres)
	Broker  string // "" = in-process; redis://… or nats://…
	Cluster string // namespace of the broker's keys and subjects
	NodeID  string // this node's name in the cluster; "" = generated
	// RegistryTTL is the connection registry's lease: a dead node's
	// connections stop being listed within it.
	RegistryTTL time.Duration
	DBCheck     time.Duration
	IO          string
	TLSCert     string
	TLSKey      string
	LogLevel    string
	LogFmt      string

	TokenSecret     string
	TokenSecretFile string
	APIKey          string
	APIKeyFile      string
	APIKeys         []api.APIKey // HERALD_API_KEYS or [[api_keys]]
	AWSAccessKeyID  string
	AWSSecretKey    string
	AWSSecretFile   string

	JWKSURL       string
	JWKSFile      string
	JWKSRefresh   time.Duration
	TokenIssuer   []string
	TokenAudience string
	TokenLeeway   time.Duration

	Dashboard      string
	RoutesFile     string // an API Gateway route set and its functions (package routes)
	Routes         string // the same, inline JSON
	AWSRegion      string
	AllowedOrigins []string
	CORSOrigins    []string // the older name of AllowedOrigins

	PingInterval    time.Duration
	WriteTimeout    time.Duration
	DrainTimeout    time.Duration
	HandshakeTime   time.Duration
	MaxHeaderBytes  int
	MaxConns        int
	MaxConnsPerUser int
	QueueFrames     int
	QueueBytes      int
	MaxClientMsg    int
	ClientMsgRate   float64
	ClientMsgBurst  int
	ConnectRate     float64
	ConnectBurst    int
	KeyRate         float64
	KeyBurst        int
	TrustedProxies  []string
	RetentionCount  int
	RetentionAge    time.Duration
	RetentionEvery  time.Duration

	// sources says where each setting's value came from, by name, for
	// errors: "HERALD_MAX_CONNS", "-max-conns", "herald.toml:12: max_conns".
	sources map[string]string
}

type kind uint8

const (
	kString kind = iota
	kDuration
	kInt
	kFloat
	kBool
	kList
)

func (k kind) String() string {
	return [...]string{"a string", `a duration such as "10s"`, "an integer", "a number", "true or false", "a list of strings"}[k]
}

// setting is one row of the configuration table.
type setting struct {
	name   string // config file key; HERALD_ + upper case is the variable, - + dashes the flag
	kind   kind
	def    string // default, as text
	group  string // heading in "herald config example" and docs/api.md
	usage  string // one line; docs/api.md may say more
	secret bool   // environment only: never a flag (ps shows flags) or a file value (files get copied)
	field  func(c *config) any
	// check returns why the value is refused ("must be positive"), or "".
	check func(c *config) string
}

func (s setting) env() string  { return "HERALD_" + strings.ToUpper(s.name) }
func (s setting) flag() string { return strings.ReplaceAll(s.name, "_", "-") }

func positive[T int | float64 | time.Duration](v T) string {
	if v <= 0 {
		return "must be positive"
	}
	return ""
}

func notNegative[T int | float64 | time.Duration](v T) string {
	if v < 0 {
		return "must not be negative (0 = unlimited)"
	}
	return ""
}

func oneOf(v string, allowed ...string) string {
	if !slices.Contains(allowed, v) {
		return fmt.Sprintf("must be one of %s, got %q", strings.Join(allowed, ", "), v)
	}
	return ""
}

// settings is the whole configuration surface, in the order "herald config
// example" prints it.
func settings() []setting {
	return []setting{
		{name: "env", group: "Mode", def: "", usage: `"production" refuses to start unless client tokens and API keys are configured; "" or "development" otherwise`,
			field: func(c *config) any { return &c.Env }, check: func(c *config) string { return oneOf(c.Env, "", "development", "production") }},
		{name: "dev", kind: kBool, group: "Mode", def: "false", usage: "dev mode: generated secrets kept next to the database, loopback only, any origin (also: herald dev)",
			field: func(c *config) any { return &c.Dev }},

		{name: "addr", group: "Listeners", def: "localhost:8080", usage: `listen address; ":8080" listens on every interface (logged as such)`,
			field: func(c *config) any { return &c.Addr }},
		{name: "admin_addr", group: "Listeners", def: "", usage: "admin listener (/metrics, /debug/pprof, /healthz, /readyz), e.g. 127.0.0.1:9090; off when empty. Keep it private",
			field: func(c *config) any { return &c.Admin }},
		{name: "tls_cert", group: "Listeners", def: "", usage: "serve TLS with this certificate file (PEM); needs tls_key",
			field: func(c *config) any { return &c.TLSCert }},
		{name: "tls_key", group: "Listeners", def: "", usage: "the certificate's key file (PEM)",
			field: func(c *config) any { return &c.TLSKey }},
		{name: "io", group: "Listeners", def: "", usage: `connection I/O: "epoll" (Linux) or "goroutine"; empty picks epoll where possible`,
			field: func(c *config) any { return &c.IO }, check: func(c *config) string { return oneOf(c.IO, "", "epoll", "goroutine") }},

		{name: "store", group: "Cluster", usage: `durable store shared by the nodes: "postgres://…" (PostgreSQL); empty = the SQLite file of db`,
			field: func(c *config) any { return &c.Store }, check: func(c *config) string {
				if c.Store != "" && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
					return "want a postgres:// (or postgresql://) URL, or nothing for the SQLite file"
				}
				return ""
			}},
		{name: "broker", group: "Cluster", usage: `bus between nodes: "redis://…", "rediss://…" or "nats://…"; empty = this node alone`,
			field: func(c *config) any { return &c.Broker }, check: func(c *config) string {
				for _, p := range []string{"", "redis://", "rediss://", "nats://", "tls://"} {
					if p != "" && strings.HasPrefix(c.Broker, p) || p == "" && c.Broker == "" {
						return ""
					}
				}
				return "want a redis://, rediss:// or nats:// URL, or nothing for a single node"
			}},
		{name: "cluster", group: "Cluster", def: "herald", usage: "the cluster's name: its keys (Redis) and subjects (NATS) start with it, so clusters can share a broker",
			field: func(c *config) any { return &c.Cluster }, check: func(c *config) string {
				if !clusterRE.MatchString(c.Cluster) {
					return "letters, digits, - and _, 1 to 64"
				}
				return ""
			}},
		{name: "node_id", group: "Cluster", usage: "this node's name in the cluster (logs, the connection registry); empty = the host name and a random suffix",
			field: func(c *config) any { return &c.NodeID }, check: func(c *config) string {
				if c.NodeID != "" && !clusterRE.MatchString(c.NodeID) {
					return "letters, digits, - and _, 1 to 64"
				}
				return ""
			}},
		{name: "registry_ttl", kind: kDuration, group: "Cluster", def: herald.DefaultRegistryTTL.String(), usage: "the connection registry's lease: nodes renew it every third of it, and a dead node's connections stop being listed within it",
			field: func(c *config) any { return &c.RegistryTTL }, check: func(c *config) string {
				if c.RegistryTTL < 3*time.Second {
					return "at least 3s (nodes renew it every third)"
				}
				return ""
			}},
		{name: "db", group: "Store", def: "herald.db", usage: `SQLite file for durable data; ":memory:" keeps everything in memory`,
			field: func(c *config) any { return &c.DB }, check: func(c *config) string {
				if c.DB == "" {
					return `must name a file (or ":memory:")`
				}
				return ""
			}},
		{name: "db_check_timeout", kind: kDuration, group: "Store", def: "30s", usage: "longest the integrity check (quick_check) at start may take; past it Herald starts with a warning; 0s skips the check",
			field: func(c *config) any { return &c.DBCheck }, check: func(c *config) string {
				if c.DBCheck < 0 {
					return "must not be negative (0s skips the check)"
				}
				return ""
			}},
		{name: "retention_count", kind: kInt, group: "Store", def: "1000", usage: "messages kept per user stream; -1 = no count limit",
			field: func(c *config) any { return &c.RetentionCount }, check: func(c *config) string {
				if c.RetentionCount == 0 || c.RetentionCount < -1 {
					return "must be positive, or -1 for no count limit"
				}
				return ""
			}},
		{name: "retention_age", kind: kDuration, group: "Store", def: "168h", usage: "messages older than this are dropped; -1s = no age limit",
			field: func(c *config) any { return &c.RetentionAge }, check: func(c *config) string {
				if c.RetentionAge == 0 || c.RetentionAge < 0 && c.RetentionAge != -time.Second {
					return "must be positive, or -1s for no age limit"
				}
				return ""
			}},
		{name: "retention_interval", kind: kDuration, group: "Store", def: "1m", usage: "how often retention trims streams",
			field: func(c *config) any { return &c.RetentionEvery }, check: func(c *config) string { return positive(c.RetentionEvery) }},

		{name: "token_secret", secret: true, group: "Secrets", usage: "HS256 secret of client tokens, at least 32 bytes",
			field: func(c *config) any { return &c.TokenSecret }},
		{name: "token_secret_file", group: "Secrets", usage: "read token_secret from this file (Docker and systemd credentials)",
			field: func(c *config) any { return &c.TokenSecretFile }},
		{name: "api_key", secret: true, group: "Secrets", usage: `bearer key of the server API, named "default", every scope`,
			field: func(c *config) any { return &c.APIKey }},
		{name: "api_key_file", group: "Secrets", usage: "read api_key from this file",
			field: func(c *config) any { return &c.APIKeyFile }},
		{name: "api_keys", kind: kList, secret: true, group: "Secrets", usage: `named keys with scopes, "name:scope+scope:secret,…" (in the file: [[api_keys]] tables)`,
			field: func(c *config) any { return new([]string) }},
		{name: "aws_access_key_id", group: "Secrets", usage: "access key id accepted in SigV4 signatures on /@connections",
			field: func(c *config) any { return &c.AWSAccessKeyID }},
		{name: "aws_secret_access_key", secret: true, group: "Secrets", usage: "its secret; both or neither",
			field: func(c *config) any { return &c.AWSSecretKey }},
		{name: "aws_secret_access_key_file", group: "Secrets", usage: "read aws_secret_access_key from this file",
			field: func(c *config) any { return &c.AWSSecretFile }},

		{name: "jwks_url", group: "Client tokens", usage: "verify RS256/ES256/EdDSA tokens with the keys at this URL (cached, refreshed)",
			field: func(c *config) any { return &c.JWKSURL }},
		{name: "jwks_file", group: "Client tokens", usage: "or with the keys in this JWKS file (re-read on an unknown kid)",
			field: func(c *config) any { return &c.JWKSFile }},
		{name: "jwks_refresh", kind: kDuration, group: "Client tokens", def: "15m", usage: "how often the JWKS is fetched again (an unknown kid fetches at once, at most every 10s)",
			field: func(c *config) any { return &c.JWKSRefresh }, check: func(c *config) string {
				if c.JWKSRefresh < 10*time.Second {
					return "must be at least 10s"
				}
				return ""
			}},
		{name: "token_issuer", kind: kList, group: "Client tokens", usage: "accepted iss values; empty = not checked",
			field: func(c *config) any { return &c.TokenIssuer }},
		{name: "token_audience", group: "Client tokens", usage: "required aud value; empty = not checked",
			field: func(c *config) any { return &c.TokenAudience }},
		{name: "token_leeway", kind: kDuration, group: "Client tokens", def: "30s", usage: "clock skew allowed on exp, nbf and iat; 0s = none",
			field: func(c *config) any { return &c.TokenLeeway }, check: func(c *config) string {
				if c.TokenLeeway < 0 || c.TokenLeeway > 5*time.Minute {
					return "must be between 0s and 5m"
				}
				return ""
			}},

		{name: "routes_file", group: "API Gateway", usage: "route set and Lambda functions, TOML (or JSON if named *.json); see docs/aws.md",
			field: func(c *config) any { return &c.RoutesFile }},
		{name: "routes", group: "API Gateway", usage: "the same as inline JSON, for the simple case; not with routes_file",
			field: func(c *config) any { return &c.Routes }, check: func(c *config) string {
				if c.Routes != "" && c.RoutesFile != "" {
					return "set routes or routes_file, not both"
				}
				return ""
			}},
		{name: "aws_region", group: "API Gateway", def: "us-east-1", usage: "the region functions are told (AWS_REGION) and their ARNs name",
			field: func(c *config) any { return &c.AWSRegion }, check: func(c *config) string {
				if c.AWSRegion == "" {
					return "must name a region, e.g. us-east-1"
				}
				return ""
			}},
		{name: "dashboard", group: "Browsers", def: "auto", usage: `the web dashboard at /dashboard/: "auto" (on in dev mode only), "on" or "off"`,
			field: func(c *config) any { return &c.Dashboard }, check: func(c *config) string { return oneOf(c.Dashboard, "auto", "on", "off") }},
		{name: "allowed_origins", kind: kList, group: "Browsers", usage: `origins allowed on /ws, /sse and the browser API (CORS); empty = the request's own origin (any in dev mode); "*" = any`,
			field: func(c *config) any { return &c.AllowedOrigins }},
		{name: "cors_origins", kind: kList, group: "Browsers", usage: "older name of allowed_origins, still read",
			field: func(c *config) any { return &c.CORSOrigins }},

		{name: "ping_interval", kind: kDuration, group: "Connections", def: herald.DefaultPingInterval.String(), usage: "heartbeat period; a connection that answered none of the last two pings is dropped",
			field: func(c *config) any { return &c.PingInterval }, check: func(c *config) string { return positive(c.PingInterval) }},
		{name: "write_timeout", kind: kDuration, group: "Connections", def: herald.DefaultWriteTimeout.String(), usage: "longest a socket write may take before the connection is dropped",
			field: func(c *config) any { return &c.WriteTimeout }, check: func(c *config) string { return positive(c.WriteTimeout) }},
		{name: "drain_timeout", kind: kDuration, group: "Connections", def: "10s", usage: "on SIGTERM, connections are closed spread over this window; the process exits within it plus 1s",
			field: func(c *config) any { return &c.DrainTimeout }, check: func(c *config) string {
				if c.DrainTimeout < 0 {
					return "must not be negative (0s closes every connection at once)"
				}
				return ""
			}},
		{name: "handshake_timeout", kind: kDuration, group: "Connections", def: "10s", usage: "time a client has to send its request headers (WebSocket handshake included)",
			field: func(c *config) any { return &c.HandshakeTime }, check: func(c *config) string { return positive(c.HandshakeTime) }},
		{name: "max_header_bytes", kind: kInt, group: "Connections", def: "16384", usage: "largest request header block; past it 431",
			field: func(c *config) any { return &c.MaxHeaderBytes }, check: func(c *config) string {
				if c.MaxHeaderBytes < 1024 {
					return "must be at least 1024"
				}
				return ""
			}},
		{name: "max_conns", kind: kInt, group: "Connections", def: "0", usage: "connections on this node, /ws and /sse together; 0 = unbounded",
			field: func(c *config) any { return &c.MaxConns }, check: func(c *config) string {
				if c.MaxConns < 0 {
					return "must not be negative (0 = unbounded)"
				}
				return ""
			}},
		{name: "max_conns_per_user", kind: kInt, group: "Connections", def: strconv.Itoa(herald.DefaultMaxConnsPerUser), usage: "connections per user; past it the oldest is closed with 4029; 0 = unbounded",
			field: func(c *config) any { return &c.MaxConnsPerUser }, check: func(c *config) string {
				if c.MaxConnsPerUser < 0 {
					return "must not be negative (0 = unbounded)"
				}
				return ""
			}},
		{name: "send_queue_frames", kind: kInt, group: "Connections", def: strconv.Itoa(herald.DefaultSendQueueFrames), usage: "frames waiting per connection before it is closed with 4008",
			field: func(c *config) any { return &c.QueueFrames }, check: func(c *config) string { return positive(c.QueueFrames) }},
		{name: "send_queue_bytes", kind: kInt, group: "Connections", def: strconv.Itoa(herald.DefaultSendQueueBytes), usage: "bytes waiting per connection before it is closed with 4008",
			field: func(c *config) any { return &c.QueueBytes }, check: func(c *config) string { return positive(c.QueueBytes) }},
		{name: "max_client_message", kind: kInt, group: "Connections", def: strconv.Itoa(herald.DefaultMaxClientMessage), usage: "largest message a client may send; past it close 1009",
			field: func(c *config) any { return &c.MaxClientMsg }, check: func(c *config) string { return positive(c.MaxClientMsg) }},

		{name: "client_message_rate", kind: kFloat, group: "Abuse limits", def: "50", usage: "messages per second a connection may send, sustained; past it close 4030; 0 = unlimited",
			field: func(c *config) any { return &c.ClientMsgRate }, check: func(c *config) string { return notNegative(c.ClientMsgRate) }},
		{name: "client_message_burst", kind: kInt, group: "Abuse limits", def: "100", usage: "messages a connection may send at once above the rate",
			field: func(c *config) any { return &c.ClientMsgBurst }, check: func(c *config) string { return positive(c.ClientMsgBurst) }},
		{name: "connect_rate", kind: kFloat, group: "Abuse limits", def: "100", usage: "connects per second per client address (IPv6: per /64) on /ws and /sse; past it 429; loopback and private addresses are exempt; 0 = unlimited",
			field: func(c *config) any { return &c.ConnectRate }, check: func(c *config) string { return notNegative(c.ConnectRate) }},
		{name: "connect_burst", kind: kInt, group: "Abuse limits", def: "1000", usage: "connects one address may make at once above the rate (an office behind one NAT reconnecting); 0 = one second's worth",
			field: func(c *config) any { return &c.ConnectBurst }, check: func(c *config) string { return notNegative(c.ConnectBurst) }},
		{name: "key_rate", kind: kFloat, group: "Abuse limits", def: "0", usage: "server API requests per second per API key; past it 429; 0 = unlimited",
			field: func(c *config) any { return &c.KeyRate }, check: func(c *config) string { return notNegative(c.KeyRate) }},
		{name: "key_burst", kind: kInt, group: "Abuse limits", def: "0", usage: "requests one key may make at once above the rate; 0 = one second's worth",
			field: func(c *config) any { return &c.KeyBurst }, check: func(c *config) string { return notNegative(c.KeyBurst) }},
		{name: "trusted_proxies", kind: kList, group: "Abuse limits", usage: "proxies (CIDR) whose X-Forwarded-For names the client for the connect limit; empty = the TCP peer is the client",
			field: func(c *config) any { return &c.TrustedProxies }},

		{name: "log_level", group: "Logs", def: "info", usage: "debug, info, warn or error; logs never hold tokens, keys or payloads",
			field: func(c *config) any { return &c.LogLevel }, check: func(c *config) string { return oneOf(c.LogLevel, "debug", "info", "warn", "error") }},
		{name: "log_format", group: "Logs", def: "text", usage: `"text" (logfmt) or "json"`,
			field: func(c *config) any { return &c.LogFmt }, check: func(c *config) string { return oneOf(c.LogFmt, "text", "json") }},
	}
}

// parseConfig builds the configuration from, in rising precedence: the
// defaults, the config file (-config or HERALD_CONFIG), the environment,
// and the flags in args.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{sources: map[string]string{}}
	all := settings()

	// Flags are read first, only to be applied last: -config names the
	// file that everything else is layered over.
	fs := flag.NewFlagSet("herald serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { serveUsage(fs.Output()) }
	fs.StringVar(&c.ConfigFile, "config", getenv("HERALD_CONFIG"), "config file (TOML) ($HERALD_CONFIG)")
	flagged := map[string]string{}
	for _, s := range all {
		if s.secret {
			continue
		}
		name := s.name
		if s.kind == kBool {
			fs.Var(boolFlag{flagged, name}, s.flag(), s.usage)
		} else {
			fs.Func(s.flag(), s.usage+" ($"+s.env()+")", func(v string) error { flagged[name] = v; return nil })
		}
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	for _, s := range all {
		if err := setText(&c, s, s.def); err != nil {
			panic(fmt.Sprintf("default of %s: %v", s.name, err)) // a bug in the table
		}
		c.sources[s.name] = "default"
	}
	if c.ConfigFile != "" {
		if err := c.loadFile(all); err != nil {
			return c, err
		}
	}
	for _, s := range all {
		if v := getenv(s.env()); v != "" {
			if err := setText(&c, s, v); err != nil {
				return c, fmt.Errorf("%s: %w", s.env(), err)
			}
			c.sources[s.name] = s.env()
		}
	}
	for _, s := range all {
		if v, ok := flagged[s.name]; ok {
			if err := setText(&c, s, v); err != nil {
				return c, fmt.Errorf("-%s: %w", s.flag(), err)
			}
			c.sources[s.name] = "-" + s.flag()
		}
	}
	if err := c.readSecretFiles(); err != nil {
		return c, err
	}
	if v := getenv("HERALD_API_KEYS"); v != "" {
		keys, err := api.ParseAPIKeys(v)
		if err != nil {
			return c, fmt.Errorf("HERALD_API_KEYS: %w", err)
		}
		c.APIKeys = keys // the environment wins over the file
	}
	return c, c.check(all)
}

// boolFlag lets -dev be given without a value, as flags usually are.
type boolFlag struct {
	set  map[string]string
	name string
}

func (b boolFlag) String() string { return "" }
func (b boolFlag) Set(v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return err
	}
	b.set[b.name] = v
	return nil
}
func (b boolFlag) IsBoolFlag() bool { return true }

// setText parses text as setting s and stores it in c.
func setText(c *config, s setting, text string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = text
	case *bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", text)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(text)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", text)
		}
		*p = n
	case *float64:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", text)
		}
		*p = f
	case *time.Duration:
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf(`want a duration such as "10s" or "1m30s", got %q`, text)
		}
		*p = d
	case *[]string:
		*p = splitList(text)
	}
	return nil
}

// loadFile applies the config file's values.
func (c *config) loadFile(all []setting) error {
	var data []byte
	var err error
	name := c.ConfigFile
	if name == "-" {
		data, err = io.ReadAll(os.Stdin)
		name = "stdin"
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return c.applyFile(name, data, all)
}

func (c *config) applyFile(name string, data []byte, all []setting) error {
	cf, err := parseConfigFile(name, data)
	if err != nil {
		return err
	}
	byName := map[string]setting{}
	for _, s := range all {
		byName[s.name] = s
	}
	for _, v := range cf.values {
		s, ok := byName[v.key]
		switch {
		case !ok:
			return fmt.Errorf("%s: unknown setting%s", v.where(name), suggest(v.key, all))
		case s.name == "api_keys":
			return fmt.Errorf("%s: write API keys as [[api_keys]] tables with name, scopes and secret_env or secret_file", v.where(name))
		case s.secret:
			return fmt.Errorf("%s: secrets are not written in config files (they get copied and committed); use %s_file or the %s variable", v.where(name), s.name, s.env())
		}
		if err := checkKind(s, v); err != nil {
			return fmt.Errorf("%s: %w", v.where(name), err)
		}
		if err := setText(c, s, v.text); err != nil {
			return fmt.Errorf("%s: %w", v.where(name), err)
		}
		c.sources[s.name] = v.where(name)
	}
	for i, t := range cf.apiKeys {
		k, err := apiKeyFromFile(name, i, t)
		if err != nil {
			return err
		}
		c.APIKeys = append(c.APIKeys, k)
	}
	return nil
}

// checkKind refuses a file value of the wrong TOML type, so that
// max_conns = "10" is an error with its line, not a silent conversion.
func checkKind(s setting, v fileValue) error {
	want := map[kind]string{kString: "String", kDuration: "String", kInt: "Integer", kFloat: "Integer Float", kBool: "Bool", kList: "Array String"}[s.kind]
	if !strings.Contains(want, v.kind.String()) {
		return fmt.Errorf("want %s, got a %s", s.kind, strings.ToLower(v.kind.String()))
	}
	return nil
}

func apiKeyFromFile(file string, i int, t []fileValue) (api.APIKey, error) {
	var k api.APIKey
	line := 0
	var secretEnv, secretFile string
	for _, v := range t {
		if line == 0 {
			line = v.line
		}
		switch v.key {
		case "name":
			k.Name = v.text
		case "scopes":
			if v.list == nil {
				return k, fmt.Errorf("%s:%d: api_keys[%d].scopes: want a list of strings", file, v.line, i)
			}
			for _, sc := range v.list {
				k.Scopes = append(k.Scopes, api.Scope(sc))
			}
		case "secret_env":
			secretEnv = v.text
		case "secret_file":
			secretFile = v.text
		case "secret":
			return k, fmt.Errorf("%s:%d: api_keys[%d].secret: secrets are not written in config files; use secret_env or secret_file", file, v.line, i)
		default:
			return k, fmt.Errorf("%s:%d: api_keys[%d].%s: unknown key (want name, scopes, secret_env or secret_file)", file, v.line, i, v.key)
		}
	}
	where := fmt.Sprintf("%s:%d: api_keys[%d]", file, line, i)
	switch {
	case k.Name == "":
		return k, fmt.Errorf("%s: needs a name", where)
	case (secretEnv == "") == (secretFile == ""):
		return k, fmt.Errorf("%s (%s): needs secret_env or secret_file (one of them)", where, k.Name)
	case secretEnv != "":
		k.Secret = os.Getenv(secretEnv)
		if k.Secret == "" {
			return k, fmt.Errorf("%s (%s): the variable %s is not set", where, k.Name, secretEnv)
		}
	default:
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return k, fmt.Errorf("%s (%s): %w", where, k.Name, err)
		}
		k.Secret = strings.TrimSpace(string(b))
	}
	if len(k.Scopes) == 0 {
		return k, fmt.Errorf("%s (%s): needs scopes (publish, read, connections, admin)", where, k.Name)
	}
	for _, sc := range k.Scopes {
		if !slices.Contains(api.Scopes(), sc) {
			return k, fmt.Errorf("%s (%q): unknown scope %q (want publish, read, connections or admin)", where, k.Name, sc)
		}
	}
	return k, nil
}

// readSecretFiles loads the *_file settings. A secret given both ways is
// an error: which one wins would be a guess.
func (c *config) readSecretFiles() error {
	for _, f := range []struct {
		name, path string
		dst        *string
	}{
		{"token_secret", c.TokenSecretFile, &c.TokenSecret},
		{"api_key", c.APIKeyFile, &c.APIKey},
		{"aws_secret_access_key", c.AWSSecretFile, &c.AWSSecretKey},
	} {
		if f.path == "" {
			continue
		}
		if *f.dst != "" {
			return fmt.Errorf("%s is set both directly and by %s_file; use one", f.name, f.name)
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return fmt.Errorf("%s_file: %w", f.name, err)
		}
		*f.dst = strings.TrimSpace(string(b))
		if *f.dst == "" {
			return fmt.Errorf("%s_file: %s is empty", f.name, f.path)
		}
	}
	return nil
}

// check refuses values that have no meaning, so that a 0 (or a negative
// number) never silently becomes a default: each setting either documents
// what 0 means (max_conns: unbounded) or refuses it here. The error names
// the setting where it was given: the variable, the flag, or the file and
// line.
func (c config) check(all []setting) error {
	for _, s := range all {
		if s.check == nil {
			continue
		}
		if msg := s.check(&c); msg != "" {
			src := c.sources[s.name]
			if src == "default" {
				src = s.env()
			}
			return fmt.Errorf("%s: %s", src, msg)
		}
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("TLS needs both a certificate (tls_cert) and a key (tls_key)")
	case (c.AWSAccessKeyID == "") != (c.AWSSecretKey == ""):
		return errors.New("HERALD_AWS_ACCESS_KEY_ID and HERALD_AWS_SECRET_ACCESS_KEY must be set together")
	case c.JWKSURL != "" && c.JWKSFile != "":
		return errors.New("jwks_url and jwks_file: set one")
	}
	return nil
}

// origins is the origin allow-list: allowed_origins, or its older name.
func (c config) origins() []string {
	if len(c.AllowedOrigins) > 0 {
		return c.AllowedOrigins
	}
	return c.CORSOrigins
}

// suggest names the closest known setting, for a typo in the file.
func suggest(key string, all []setting) string {
	best, bestD := "", 4
	for _, s := range all {
		if d := editDistance(key, s.name); d < bestD {
			best, bestD = s.name, d
		}
	}
	if best == "" {
		return " (herald config example lists every setting)"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
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
