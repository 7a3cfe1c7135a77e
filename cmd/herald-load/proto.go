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
	ID    int `json:"id"`
	First int `json:"first"` // global index of this worker's first connection
	Count int `json:"count"` // connections this worker holds

	// Transport is "ws" (or "") for WebSocket, whose URL is
	// ws://host:port/ws, or "sse" for Server-Sent Events, whose URL is
	// http://host:port/sse; the token goes in the query of either.
	Transport string `json:"transport,omitempty"`
	URL       string `json:"url"`
	// URLs, when there are several, are every node's endpoint: WebSocket
	// connection i of the fleet dials URLs[i mod len], spreading clients
	// over a cluster; an SSE worker streams from URLs[ID mod len].
	URLs []string `json:"urls,omitempty"`

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
	// Protocol is the subprotocol to ask for: "" for raw frames, or
	// herald.v1 (resume), whose envelopes carry each message's offset and
	// epoch, which the worker then tracks per connection. SSE has no
	// subprotocols (every event carries the envelope, and a stored
	// message's id is "<epoch>:<offset>"): there herald.v1 only asks the
	// worker to track the offsets.
	Protocol string `json:"protocol,omitempty"`
	// Dialect is the server's protocol: "" Herald's (or the raw
	// baseline's), dialectCentrifugo for the peer's JSON protocol: the
	// token goes in a connect command rather than the URL, and messages
	// arrive as publication pushes (peer_client.go).
	Dialect  string    `json:"dialect,omitempty"`
	Deadline time.Time `json:"deadline"` // the worker stops by itself then, whatever happens
}

// command is a coordinator → worker line after the spec.
type command struct {
	Op       string        `json:"op"`                 // "stop", "churn", "disconnect" or "resume"
	Rate     float64       `json:"rate,omitempty"`     // churn: reconnects/s for this worker
	Duration time.Duration `json:"duration,omitempty"` // churn: for how long
	// resume: per connection of this worker, the last offset of its
	// user's stream: the connection has caught up once it has that one.
	Targets []int64 `json:"targets,omitempty"`
}

// seqStat is what one worker saw of one tracked message.
type seqStat struct {
	N     int64 `json:"n"`     // deliveries
	First int64 `json:"first"` // unix nanos of the first and last delivery
	Last  int64 `json:"last"`
}

// workerStats are a worker's cumulative counters, sent every statsEvery.
type workerStats struct {
	Assigned      int     `json:"assigned"`
	Established   int64   `json:"established"`            // handshakes completed (first connects)
	ConnectFailed int64   `json:"connect_failed"`         // dials or handshakes that failed
	ConnectDone   bool    `json:"connect_done"`           // every assigned connection was attempted
	ConnectStart  int64   `json:"connect_start"`          // unix nanos: first dial started
	ConnectEnd    int64   `json:"connect_end"`            // unix nanos: last first-connect handshake done
	Open          int64   `json:"open"`                   // connections open now
	OpenByNode    []int64 `json:"open_by_node,omitempty"` // of those, per node of the target (URL order); nil with one node
	Dropped       int64   `json:"dropped"`                // closed by the server or the network, not by us
	BadFrames     int64   `json:"bad_frames"`             // frames that broke the protocol
	Delivered     int64   `json:"delivered"`              // messages carrying our timestamp
	Other         int64   `json:"other"`                  // messages without one
	OutOfOrder    int64   `json:"out_of_order"`           // a connection saw a seq not above its previous one
	Pings         int64   `json:"pings"`                  // protocol pings answered

	ChurnClosed      int64 `json:"churn_closed,omitempty"`
	ChurnReconnected int64 `json:"churn_reconnected,omitempty"`
	ChurnFailed      int64 `json:"churn_failed,omitempty"`
	ChurnDone        bool  `json:"churn_done,omitempty"`

	// Resume scenario (herald.v1 connections).
	Positioned        int64 `json:"positioned,omitempty"`         // connections that received a stored message (know an offset)
	DisconnectDone    bool  `json:"disconnect_done,omitempty"`    // every connection was closed for the resume
	Disconnected      int64 `json:"disconnected,omitempty"`       // connections closed for it
	ResumeReconnected int64 `json:"resume_reconnected,omitempty"` // handshakes completed and resume sent
	ResumeFailed      int64 `json:"resume_failed,omitempty"`      // reconnects that failed
	ResumeDone        bool  `json:"resume_done,omitempty"`        // every reconnect was attempted
	ResumeStart       int64 `json:"resume_start,omitempty"`       // unix nanos: first reconnect dial started
	ResumeDialEnd     int64 `json:"resume_dial_end,omitempty"`    // unix nanos: last reconnect handshake done
	ResumeEnd         int64 `json:"resume_end,omitempty"`         // unix nanos: last connection caught up
	ResumeExpected    int64 `json:"resume_expected,omitempty"`    // messages the reconnected connections had missed
	Replayed          int64 `json:"replayed,omitempty"`           // new offsets received after a resume
	CaughtUp          int64 `json:"caught_up,omitempty"`          // reconnected connections that reached their target
	Behind            int64 `json:"behind,omitempty"`             // offsets reconnected connections still lack (their tails)
	Gaps              int64 `json:"gaps,omitempty"`               // offsets skipped: a message arrived after a missing one
	Duplicates        int64 `json:"duplicates,omitempty"`         // offsets received again
	Resets            int64 `json:"resets,omitempty"`             // reset messages, and epochs that changed without one

	RSSKB  int64              `json:"rss_kb"` // the worker's own VmRSS
	Errors []string           `json:"errors,omitempty"`
	Seqs   map[int64]*seqStat `json:"seqs,omitempty"`
}

// event is a worker → coordinator line.
type event struct {
	Ev    string      `json:"ev"` // "stats", "final" or "fatal"
	Stats workerStats `json:"stats"`
	// final only: latency of deliveries, of first connects, of churn or
	// resume reconnects, and of resumes (dial to caught up).
	Latency   *histogram `json:"latency,omitempty"`
	Connect   *histogram `json:"connect,omitempty"`
	Reconnect *histogram `json:"reconnect,omitempty"`
	CatchUp   *histogram `json:"catch_up,omitempty"`
	Error     string     `json:"error,omitempty"` // fatal only
}

// statsEvery is how often workers report. Fanout completion is detected at
// this granularity, but delivery times are measured by the workers
// themselves, so it costs no accuracy.
const statsEvery = 100 * time.Millisecond

// maxErrorSamples bounds the error messages kept per worker: the counters
// say how many, a few samples say why.
const maxErrorSamples = 8
