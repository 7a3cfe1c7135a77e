package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herald-gw/herald/token"
)

// config is one run, from flags and HERALD_* environment variables.
type config struct {
	URL       *url.URL   // server base, http(s)://host:port: the first of URLs
	URLs      []*url.URL // every node of the target (-url a,b,c): clients are spread over them, sends go round them
	Scenario  string
	Transport string // ws or sse

	Conns, Users int
	Rate         float64 // connects/s over all workers
	Workers      int     // processes; 0 = one per PerWorker connections
	PerWorker    int
	LocalAddrs   []string
	localFlag    string // -local-addrs as given, resolved again for the baseline's address
	ClientIO     string // epoll or goroutine

	Secret     string
	TokenFile  string
	TokenTTL   time.Duration
	UserPrefix string
	APIKey     string
	PID        int      // -pid: the server's (one node)
	PIDs       []int    // -pids: every node's, in URL order
	CPUProcs   []string // -cpu-procs: more processes whose CPU time counts in the server's, by command name or pid

	Hold       time.Duration // idle
	Duration   time.Duration // notify, churn
	Messages   int           // fanout: broadcasts; resume: messages per user stored while away
	Interval   time.Duration // fanout: pause between broadcasts
	MsgRate    float64       // notify
	Senders    int           // notify: concurrent API requests
	Batch      int           // notify: messages per POST /v1/batch at most; 1 = one POST /v1/users/{u}/messages each
	BatchWait  time.Duration // notify with Batch > 1: longest a partial batch waits for more messages
	ChurnRate  float64       // churn: reconnects/s over all workers
	MsgTimeout time.Duration // how long to wait for deliveries to finish

	DialConcurrency int
	DialTimeout     time.Duration
	Timeout         time.Duration // cap on the whole run
	JSON            bool
	Baseline        bool   // idle, fanout, notify: run the same load against the raw baseline first
	BaselineAfter   bool   // run the baseline (and the peer) after the target instead
	Peer            string // idle, fanout, notify: also run the same load against this peer server ("centrifugo"), started by this run
	PeerBin         string // the peer's binary; "" = the cached one, installed when missing
	CSV             string // append the run's summary as a CSV row to this file

	// Dialect is what the run's server speaks: "" Herald's protocol and
	// API (the raw baseline speaks them too), dialectCentrifugo in the
	// peer's run. Set by the coordinator, never by a flag.
	Dialect string
}

const usage = `herald-load opens many WebSocket (or Server-Sent Events) connections
to a Herald server and measures it: memory per idle connection, broadcast
fan-out, notification latency, connect/disconnect churn and a storm of
resuming clients.

usage: herald-load [flags]

  herald-load -scenario idle   -conns 19000 -hold 60s
  herald-load -scenario fanout -conns 10000 -messages 5
  herald-load -scenario notify -conns 10000 -msg-rate 5000 -duration 10s
  herald-load -scenario notify -conns 10000 -msg-rate 5000 -duration 10s -batch 100
  herald-load -scenario churn  -conns 5000 -churn-rate 500 -duration 10s
  herald-load -scenario resume -conns 10000 -messages 10 -rate 5000
  herald-load -scenario fanout -conns 10000 -baseline -csv fanout.csv
  herald-load -scenario fanout -conns 10000 -transport sse -baseline
  herald-load -scenario notify -conns 10000 -msg-rate 5000 -baseline -peer centrifugo -csv latency.csv
  herald-load -plot fanout.csv -x conns -y deliveries_per_s,baseline_deliveries_per_s -o fanout.png
  herald-load -table memory.csv fanout.csv latency.csv
  herald-load -peer-info centrifugo
  herald-load -serve-baseline 127.0.0.1:9000

Tokens are minted with -secret or $HERALD_TOKEN_SECRET (users
<prefix>0..<prefix>N-1), or read from -token-file (one JWT per line). The
server API key is -api-key or $HERALD_API_KEY (not needed for idle).
Connections are spread over worker processes (this binary, re-executed
with -worker) and, for a loopback server, over source addresses 127.0.0.1,
127.0.0.2, ... so that neither the per-process file limit nor one address's
ephemeral ports is the ceiling. The server's memory is read from
/proc/<pid>/status; its pid is found from the listening port or given with
-pid. With several nodes (-url a,b,c) every node's pid is found from its
port (or given with -pids, in -url order), connection i goes to node i
mod N, and the memory is reported per node and summed: for idle, RSS per
connection on each node, from the connections the tool holds there.

notify sends -msg-rate messages a second (messages, not requests) and
measures each one's latency from its timestamp to its delivery. With
-batch 1 every message is a POST /v1/users/{user}/messages, stamped just
before the request; with -batch N the messages are stamped as they are
created on the schedule and grouped into POST /v1/batch requests of up to
N, a partial batch going after -batch-wait at most (the wait is part of
the latency). notify also reports the server's CPU time (utime+stime from
/proc/<pid>/stat, 10ms resolution) over the send window, from the first
message to the last reply, as ms per 1,000 messages: summed over every
node of -url, and over the processes -cpu-procs names, each one's share
listed. -cpu-procs takes command names (as in /proc/<pid>/comm, at most
15 characters: postgres, redis-server, nats-server) or pids,
comma-separated. A name stands for every process of that name, looked up
again at each end of the window, each counted with the children it has
waited for (cutime+cstime): PostgreSQL's backends come and go with its
clients' connections, and one that exits passes its time to the
postmaster, which waits for it, so the sum over the processes alive at
each end holds it. Every process of the name counts, whoever it works for:
keep other users of the database off the machine while measuring. idle
reports the same sum over its hold, in cores: what the server spends on
connections that do nothing (pings, timers; in a cluster, the connection
registry's upkeep).

resume is many clients reconnecting at once, e.g. after a network
outage: the connections speak herald.v1 and each first receives one
message (POST /v1/batch) so that it knows its offset and epoch; then all
close together, the server stores -messages more per user (POST
/v1/batch) while they are away, and all reconnect at -rate, each sending
{"type":"resume","since":<its last offset>,"epoch":...} first. It reports
the time from the first reconnect to the last client having every message
it missed, reconnects/s, replayed messages/s, per-connection catch-up
time (its dial to its last missed message) and the server's CPU over
that window. A gap (an offset skipped), a duplicate, a reset or a missed
message never replayed fails the run. Keep -messages within the server's
HERALD_RETENTION_COUNT (1000), or it resets.

For the idle scenario's memory per connection, start the server afresh
(Go keeps freed memory for a while, so an earlier run inflates the
baseline) and hold past a heartbeat or two (Herald pings every 25s by
default, which costs memory of its own): -hold 60s.

-transport sse opens Server-Sent Events streams (GET /sse?token=…)
instead of WebSockets: a hand-written HTTP/1.1 GET per connection, read
by the same epoll loop. Every scenario works over it; the resume
scenario's clients reconnect with the Last-Event-ID header, as a
browser's EventSource does, instead of sending a resume message.

-baseline (idle, fanout, notify) first runs the identical load against a
raw server that does nothing but hold connections and write one prebuilt
frame (or SSE event) to each on POST /v1/broadcast, or each payload to
its user's connections on POST /v1/users/{user}/messages and POST
/v1/batch (no token check, no store, no envelope; this binary with
-serve-baseline, started on a free loopback port and stopped
afterwards), then against -url, and reports both and the ratio
Herald/baseline: the practical limit of this machine, measured in the
same run. -serve-baseline
ADDR runs that server alone.

-peer centrifugo (idle, fanout, notify) also runs the identical load
against Centrifugo ` + centrifugoVersion + `, the peer a user would pick
instead: the tool installs it once with the Go toolchain ("go install
` + centrifugoModule + `@` + centrifugoVersion + `" into
$XDG_CACHE_HOME/herald-load, or takes -peer-bin), starts it on a free
loopback port with a generated configuration (fresh HMAC token secret
and API key; every connection subscribed server-side to its personal
channel personal:#<user>, whose namespace keeps 1,000 messages for 168h
with recovery forced, and to a shared channel "broadcast"), drives it
with the same workers over its JSON protocol (connect command with an
HS256 token, publication pushes, "{}" pings answered), sends through
POST /api/publish (or POST /api/batch with -batch N), and stops it.
With -baseline too, that is three runs: baseline, peer, target (with
-baseline-after: target, baseline, peer). The result reports each and
the ratios Herald/peer; -csv adds peer_* columns; -table FILE.csv...
prints them side by side as markdown; -peer-info centrifugo installs
it if needed and prints its version and configuration.

-plot IN.csv -o OUT.png draws a line chart of CSV columns (run
"herald-load -plot -h").

Note: fanout broadcasts to every connection of the server, real users
included. Progress goes to stderr once a second; the result to stdout, as
a table or (-json) one JSON object.

flags:
`

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("herald-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	def := func(name, fallback string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return fallback
	}
	rawURL := fs.String("url", def("HERALD_URL", "http://127.0.0.1:8080"), "Herald server base URL, or several nodes' comma-separated: clients spread over them, API calls go round them ($HERALD_URL)")
	fs.StringVar(&c.Scenario, "scenario", "idle", "idle, fanout, notify, churn or resume")
	fs.StringVar(&c.Transport, "transport", "ws", `"ws" (WebSocket, /ws) or "sse" (Server-Sent Events, GET /sse)`)
	fs.IntVar(&c.Conns, "conns", 1000, "connections to open")
	fs.IntVar(&c.Users, "users", 0, "distinct users the connections belong to (0 = one per connection); connection i is user i mod users")
	fs.Float64Var(&c.Rate, "rate", 1000, "connects per second, over all workers (resume: reconnects too)")
	fs.IntVar(&c.Workers, "workers", 0, "worker processes (0 = one per -per-worker connections)")
	fs.IntVar(&c.PerWorker, "per-worker", 10000, "connections per worker process when -workers is 0; at most the open-file limit minus a few")
	local := fs.String("local-addrs", "auto", `source addresses to bind, comma-separated; "auto" = 127.0.0.1..127.0.0.K (one per 8000 connections) for a loopback server, else none; "none" = let the kernel choose`)
	fs.StringVar(&c.ClientIO, "client-io", defaultClientIO(), `how workers read their sockets: "epoll" (Linux) or "goroutine" (one reader goroutine per connection)`)
	secretFlag := fs.String("secret", "", "token secret to mint client tokens with (default $HERALD_TOKEN_SECRET)")
	fs.StringVar(&c.TokenFile, "token-file", "", "read client tokens from this file, one JWT per line, instead of minting them")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 0, "lifetime of minted tokens (0 = the run's timeout plus 10m)")
	fs.StringVar(&c.UserPrefix, "user-prefix", "", "user id prefix of minted tokens (default load-<random>-, fresh per run)")
	apiKey := fs.String("api-key", "", "server API key (default $HERALD_API_KEY)")
	fs.IntVar(&c.PID, "pid", 0, "server process id for memory and CPU readings (default: found from the port, local servers only)")
	pids := fs.String("pids", "", "with several -url nodes: their process ids, comma-separated in -url order (default: found from their ports)")
	cpuProcs := fs.String("cpu-procs", "", `more processes whose CPU time counts in the server's (idle, notify, resume), comma-separated: command names, each every process of that name (e.g. "postgres,redis-server"), or pids`)
	fs.DurationVar(&c.Hold, "hold", 10*time.Second, "idle: how long to hold the connections before reading the server's memory (its GC needs a few seconds to settle)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "notify, churn: how long to send or churn")
	fs.IntVar(&c.Messages, "messages", 5, "fanout: broadcasts to send, one after the other; resume: messages per user stored while the clients are away")
	fs.DurationVar(&c.Interval, "interval", time.Second, "fanout: pause between one broadcast's last delivery and the next broadcast")
	fs.Float64Var(&c.MsgRate, "msg-rate", 1000, "notify: notifications per second, to users in turn")
	fs.IntVar(&c.Senders, "senders", 64, "notify: concurrent API requests at most")
	fs.IntVar(&c.Batch, "batch", 1, fmt.Sprintf("notify: messages per POST /v1/batch request at most (1 = one POST /v1/users/{user}/messages per message; at most %d)", maxBatch))
	fs.DurationVar(&c.BatchWait, "batch-wait", time.Millisecond, "notify with -batch > 1: the longest a partial batch waits for more messages before it is sent")
	fs.Float64Var(&c.ChurnRate, "churn-rate", 100, "churn: disconnects (each followed by a reconnect) per second")
	fs.DurationVar(&c.MsgTimeout, "msg-timeout", 10*time.Second, "how long to wait for outstanding deliveries before counting them missing")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 256, "handshakes in flight at most, over all workers")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 10*time.Second, "connect plus handshake timeout")
	fs.DurationVar(&c.Timeout, "timeout", 0, "stop everything after this long whatever happens (0 = estimated from the other flags, plus a minute)")
	fs.BoolVar(&c.JSON, "json", false, "print the result as one JSON object")
	fs.BoolVar(&c.BaselineAfter, "baseline-after", false, "with -baseline: measure the target first and the baseline second (the second run of a pair can measure slower on a small machine; try both orders)")
	fs.BoolVar(&c.Baseline, "baseline", false, "idle, fanout, notify: run the same load against a raw WebSocket baseline server first (started and stopped by this run) and report the ratio Herald/baseline")
	fs.StringVar(&c.Peer, "peer", "", `idle, fanout, notify: also run the same load against a peer server, "centrifugo" (Centrifugo `+centrifugoVersion+`, installed with the Go toolchain into the cache folder when missing, started and stopped by this run), and report the ratio Herald/peer`)
	fs.StringVar(&c.PeerBin, "peer-bin", "", "with -peer: the peer's binary to run, instead of the cached (or installed) one")
	fs.StringVar(&c.CSV, "csv", "", "append a summary of the run as one CSV row to this file (header written when the file is new; one file per scenario)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	// Secrets may come from flags (convenient on a laptop) but default to
	// the environment, which ps(1) does not show.
	c.Secret = *secretFlag
	if c.Secret == "" {
		c.Secret = getenv("HERALD_TOKEN_SECRET")
	}
	c.APIKey = *apiKey
	if c.APIKey == "" {
		c.APIKey = getenv("HERALD_API_KEY")
	}

	for _, raw := range strings.Split(*rawURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("-url %q: want http(s)://host:port, or several, comma-separated", raw)
		}
		u.Path, u.RawQuery = strings.TrimSuffix(u.Path, "/"), ""
		c.URLs = append(c.URLs, u)
	}
	u := c.URLs[0]
	c.URL = u
	if *pids != "" {
		for f := range strings.SplitSeq(*pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return c, fmt.Errorf("-pids: %q is not a process id", f)
			}
			c.PIDs = append(c.PIDs, pid)
		}
		if len(c.PIDs) != len(c.URLs) {
			return c, fmt.Errorf("-pids gives %d process ids for %d -url nodes", len(c.PIDs), len(c.URLs))
		}
		if c.PID != 0 {
			return c, errors.New("-pid and -pids: give one")
		}
	}
	if c.PID != 0 && len(c.URLs) > 1 {
		return c, errors.New("-pid names one server; with several -url nodes give -pids")
	}
	if *cpuProcs != "" {
		for f := range strings.SplitSeq(*cpuProcs, ",") {
			if f = strings.TrimSpace(f); f == "" || strings.Contains(f, "/") {
				return c, fmt.Errorf("-cpu-procs: %q is neither a command name nor a pid", f)
			}
			c.CPUProcs = append(c.CPUProcs, f)
		}
	}

	switch {
	case c.Scenario != "idle" && c.Scenario != "fanout" && c.Scenario != "notify" && c.Scenario != "churn" && c.Scenario != "resume":
		return c, fmt.Errorf("-scenario %q: want idle, fanout, notify, churn or resume", c.Scenario)
	case c.Transport != "ws" && c.Transport != "sse":
		return c, fmt.Errorf("-transport %q: want ws or sse", c.Transport)
	case c.Conns <= 0:
		return c, errors.New("-conns must be positive")
	case c.Users < 0 || c.Users > c.Conns:
		return c, errors.New("-users must be between 0 and -conns")
	case c.Rate <= 0 || c.MsgRate <= 0 || c.ChurnRate <= 0:
		return c, errors.New("-rate, -msg-rate and -churn-rate must be positive")
	case c.Workers < 0 || c.PerWorker <= 0 || c.Senders <= 0 || c.DialConcurrency <= 0 || c.Messages <= 0:
		return c, errors.New("-workers, -per-worker, -senders, -dial-concurrency and -messages must be positive")
	case c.ClientIO != "epoll" && c.ClientIO != "goroutine":
		return c, fmt.Errorf("-client-io %q: want epoll or goroutine", c.ClientIO)
	case c.ClientIO == "epoll" && !pollSupported:
		return c, errors.New("-client-io epoll needs Linux")
	case c.TokenFile == "" && c.Secret == "":
		return c, errors.New("no way to get client tokens: set -secret or HERALD_TOKEN_SECRET, or -token-file")
	case c.Scenario != "idle" && c.APIKey == "":
		return c, fmt.Errorf("scenario %s calls the server API: set -api-key or HERALD_API_KEY", c.Scenario)
	case c.Batch < 1 || c.Batch > maxBatch:
		return c, fmt.Errorf("-batch must be between 1 and %d (the server's limit per POST /v1/batch)", maxBatch)
	case c.Batch > 1 && c.Scenario != "notify":
		return c, fmt.Errorf("-batch works with the notify scenario, not %s", c.Scenario)
	case c.Batch > 1 && c.BatchWait <= 0:
		return c, errors.New("-batch-wait must be positive")
	case c.BaselineAfter && !c.Baseline && c.Peer == "":
		return c, errors.New("-baseline-after needs -baseline or -peer")
	case c.Peer != "" && c.Peer != dialectCentrifugo:
		return c, fmt.Errorf("-peer %q: the one peer known is centrifugo", c.Peer)
	case c.Peer != "" && c.Scenario != "idle" && c.Scenario != "fanout" && c.Scenario != "notify":
		return c, fmt.Errorf("-peer works with the idle, fanout and notify scenarios, not %s", c.Scenario)
	case c.Peer != "" && c.Transport != "ws":
		return c, errors.New("-peer measures WebSocket only: Centrifugo's SSE is a different protocol")
	case c.PeerBin != "" && c.Peer == "":
		return c, errors.New("-peer-bin needs -peer")
	case c.Baseline && c.Scenario != "idle" && c.Scenario != "fanout" && c.Scenario != "notify":
		// The baseline has no streams: it cannot resume, and churn
		// measures nothing it does differently.
		return c, fmt.Errorf("-baseline works with the idle, fanout and notify scenarios, not %s", c.Scenario)
	}
	if c.TokenFile == "" {
		// Fail here rather than in every worker.
		if _, err := token.NewIssuer([]byte(c.Secret)); err != nil {
			return c, fmt.Errorf("-secret or HERALD_TOKEN_SECRET: %w", err)
		}
	}
	if c.Users == 0 {
		c.Users = c.Conns
	}
	if c.Workers == 0 {
		c.Workers = (c.Conns + c.PerWorker - 1) / c.PerWorker
	}
	c.Workers = min(c.Workers, c.Conns)
	if c.UserPrefix == "" {
		// Fresh users per run: the previous run's connections may still be
		// closing on the server, and must not count in this one.
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		c.UserPrefix = "load-" + hex.EncodeToString(b) + "-"
	}
	c.localFlag = *local
	var err error
	if c.LocalAddrs, err = localAddrs(*local, u.Hostname(), c.Conns); err != nil {
		return c, err
	}
	if c.Timeout == 0 {
		c.Timeout = c.estimate() + time.Minute
		if c.Baseline {
			c.Timeout += c.estimate() + stopGrace // the baseline's run, and its workers' stop
		}
		if c.Peer != "" {
			c.Timeout += c.estimate() + stopGrace + 30*time.Second // and the peer's, and its start
		}
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = c.Timeout + 10*time.Minute
	}
	return c, nil
}

// maxBatch is the server's limit of messages per POST /v1/batch
// (docs/api.md, Limits).
const maxBatch = 1000

// estimate is how long the run should take when all goes well.
func (c *config) estimate() time.Duration {
	connect := time.Duration(float64(c.Conns) / c.Rate * float64(time.Second))
	var scenario time.Duration
	switch c.Scenario {
	case "idle":
		scenario = c.Hold
	case "fanout":
		scenario = time.Duration(c.Messages) * (c.Interval + c.MsgTimeout)
	case "notify":
		scenario = c.Duration + c.BatchWait + c.MsgTimeout
	case "churn":
		scenario = c.Duration + c.DialTimeout + 5*time.Second
	case "resume":
		// Priming and its deliveries; the clients closing and the server
		// noticing (each bounded by DialTimeout); storing at a pessimistic
		// 5,000 messages/s; the reconnects at Rate, and the replays after
		// the last of them.
		stored := time.Duration(c.Users*c.Messages) * (time.Second / 5000)
		scenario = c.MsgTimeout + 2*c.DialTimeout + stored + connect + c.DialTimeout + c.MsgTimeout
	}
	return connect + c.DialTimeout + scenario
}

// workerShare is worker w's (0-based) part of the connections: the global
// index of its first one and how many it holds.
func (c *config) workerShare(w int) (first, n int) {
	n = c.Conns / c.Workers
	first = w*n + min(w, c.Conns%c.Workers)
	if w < c.Conns%c.Workers {
		n++
	}
	return first, n
}

// endpoint is where clients of the transport connect: the gateway,
// ws(s)://host:port/ws, or the event streams, http(s)://host:port/sse.
func (c *config) endpoint() string { return c.endpointOf(c.URL) }

// endpoints is endpoint for every node of the target.
func (c *config) endpoints() []string {
	out := make([]string, len(c.URLs))
	for i, u := range c.URLs {
		out[i] = c.endpointOf(u)
	}
	return out
}

func (c *config) endpointOf(base *url.URL) string {
	u := *base
	if c.Dialect == dialectCentrifugo {
		u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
		u.Path += centrifugoPath
		return u.String()
	}
	if c.Transport == "sse" {
		u.Path += "/sse"
		return u.String()
	}
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path += "/ws"
	return u.String()
}

// localAddrs resolves -local-addrs. A client address can open one
// connection per ephemeral port (about 28k by default) to a given server,
// fewer while earlier runs' sockets sit in TIME_WAIT; every address in
// 127.0.0.0/8 is loopback on Linux, so spreading over several lifts that.
func localAddrs(flagValue, host string, conns int) ([]string, error) {
	switch flagValue {
	case "none", "":
		return nil, nil
	case "auto":
		ip := net.ParseIP(host)
		if host == "localhost" {
			ip = net.IPv4(127, 0, 0, 1)
		}
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return nil, nil
		}
		n := min((conns+7999)/8000, 250)
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("127.0.0.%d", i+1)
		}
		return out, nil
	}
	var out []string
	for a := range strings.SplitSeq(flagValue, ",") {
		a = strings.TrimSpace(a)
		if net.ParseIP(a) == nil {
			return nil, fmt.Errorf("-local-addrs: %q is not an IP address", a)
		}
		out = append(out, a)
	}
	return out, nil
}

func defaultClientIO() string {
	if pollSupported {
		return "epoll"
	}
	return "goroutine"
}
