package main

import "time"

// The coordinator and its workers speak JSON lines: the coordinator writes
// a workerSpec and then commands to a worker's stdin; the worker writes
// events to its stdout. A worker whose stdin closes (the coordinator died,
// even by SIGKILL) closes its connections and exits, so nothing outlives a
// run.

// workerEnv marks a process as a worker. The -worker argument says the same
// to a human reading ps(1); the variable is what a test binary, whose flags
// belong to the testing package, can check before parsing any.
const workerEnv = "HERALD_LOAD_WORKER"

// workerSpec is everything a worker needs, sent as its first stdin line.
// Secrets travel here rather than in argv, which ps(1) shows to everyone.
type workerSpec struct {
	ID    int    `json:"id"`
	WSURL string `json:"ws_url"` // ws://host:port/ws
	First int    `json:"first"`  // global index of this worker's first connection
	Count int    `json:"count"`  // connections this worker holds

	// Tokens: minted from Secret for user UserPrefix+(i mod Users), or
	// given, one per connection of this worker.
	Secret     string        `json:"secret,omitempty"`
	UserPrefix string        `json:"user_prefix,omitempty"`
	Users      int           `json:"users,omitempty"`
	TokenTTL   time.Duration `json:"token_ttl,omitempty"`
	Tokens     []string      `json:"tokens,omitempty"`

	LocalAddrs      []string      `json:"local_addrs,omitempty"` // connection i binds LocalAddrs[i mod len]
	Rate            float64       `json:"rate"`                  // this worker's share of the connect rate, conns/s
	DialConcurrency int           `json:"dial_concurrency"`
	DialTimeout     time.Duration `json:"dial_timeout"`
	IO              string        `json:"io"`         // "epoll" or "goroutine"
	TrackSeqs       bool          `json:"track_seqs"` // keep per-message delivery counts (fanout)
	Deadline        time.Time     `json:"deadline"`   // the worker stops by itself then, whatever happens
}

// command is a coordinator → worker line after the spec.
type command struct {
	Op       string        `json:"op"`                 // "stop" or "churn"
	Rate     float64       `json:"rate,omitempty"`     // churn: reconnects/s for this worker
	Duration time.Duration `json:"duration,omitempty"` // churn: for how long
}

// seqStat is what one worker saw of one tracked message.
type seqStat struct {
	N     int64 `json:"n"`     // deliveries
	First int64 `json:"first"` // unix nanos of the first and last delivery
	Last  int64 `json:"last"`
}

// workerStats are a worker's cumulative counters, sent every statsEvery.
type workerStats struct {
	Assigned      int   `json:"assigned"`
	Established   int64 `json:"established"`    // handshakes completed (first connects)
	ConnectFailed int64 `json:"connect_failed"` // dials or handshakes that failed
	ConnectDone   bool  `json:"connect_done"`   // every assigned connection was attempted
	ConnectStart  int64 `json:"connect_start"`  // unix nanos: first dial started
	ConnectEnd    int64 `json:"connect_end"`    // unix nanos: last first-connect handshake done
	Open          int64 `json:"open"`           // connections open now
	Dropped       int64 `json:"dropped"`        // closed by the server or the network, not by us
	BadFrames     int64 `json:"bad_frames"`     // frames that broke the protocol
	Delivered     int64 `json:"delivered"`      // messages carrying our timestamp
	Other         int64 `json:"other"`          // messages without one
	OutOfOrder    int64 `json:"out_of_order"`   // a connection saw a seq not above its previous one
	Pings         int64 `json:"pings"`          // protocol pings answered

	ChurnClosed      int64 `json:"churn_closed,omitempty"`
	ChurnReconnected int64 `json:"churn_reconnected,omitempty"`
	ChurnFailed      int64 `json:"churn_failed,omitempty"`
	ChurnDone        bool  `json:"churn_done,omitempty"`

	RSSKB  int64              `json:"rss_kb"` // the worker's own VmRSS
	Errors []string           `json:"errors,omitempty"`
	Seqs   map[int64]*seqStat `json:"seqs,omitempty"`
}

// event is a worker → coordinator line.
type event struct {
	Ev    string      `json:"ev"` // "stats", "final" or "fatal"
	Stats workerStats `json:"stats"`
	// final only: latency of deliveries, of first connects and of churn
	// reconnects.
	Latency   *histogram `json:"latency,omitempty"`
	Connect   *histogram `json:"connect,omitempty"`
	Reconnect *histogram `json:"reconnect,omitempty"`
	Error     string     `json:"error,omitempty"` // fatal only
}

// statsEvery is how often workers report. Fanout completion is detected at
// this granularity, but delivery times are measured by the workers
// themselves, so it costs no accuracy.
const statsEvery = 100 * time.Millisecond

// maxErrorSamples bounds the error messages kept per worker: the counters
// say how many, a few samples say why.
const maxErrorSamples = 8
