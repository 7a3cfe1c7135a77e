// Package metrics exposes Herald's Prometheus metrics. It adapts the
// observer hooks of the core packages (session.Observer, api.Observer, the
// store watcher, the token verifier) to collectors, so that the core knows
// no metrics library; cmd/herald wires it and serves Handler on the admin
// listener only. docs/operations.md lists every series and the alerts
// worth setting on them.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sources are read at scrape time: what is cheaper to compute on demand
// than to track on every change.
type Sources struct {
	Version     string
	Connections func() int
	// Queues reports what waits in the send queues: frames and bytes in
	// all, and the most bytes waiting for one connection.
	Queues func() (frames, bytes, maxBytes int)
	// Ready reports whether the node takes new connections (not
	// draining, store healthy).
	Ready func() bool
	// ClusterCounts reports, in a cluster, how many times replies counted
	// the other nodes' connections from the node's replica of their
	// counts and from the registry; ReplicaComplete whether the replica
	// answers now. Nil on a single node.
	ClusterCounts   func() (replica, registry uint64)
	ReplicaComplete func() bool
	// The label values each labelled series is created with at zero, so
	// that an alert's rate() or increase() works from the first scrape
	// instead of from the first event: auth failure kinds, rate limits
	// and store operations.
	AuthKinds, RateLimits, StoreOps []string
}

// Metrics holds Herald's collectors on a registry of its own (no global
// state: two Heralds in one test process do not share counters).
type Metrics struct {
	reg *prometheus.Registry

	opened      *prometheus.CounterVec
	closed      *prometheus.CounterVec
	resumes     *prometheus.CounterVec
	replayed    prometheus.Counter
	queueWait   prometheus.Histogram
	published   prometheus.Counter
	deliveries  prometheus.Counter
	failures    prometheus.Counter
	publishTime prometheus.Histogram
	storeTime   *prometheus.HistogramVec
	storeErrors *prometheus.CounterVec
	authFailed  *prometheus.CounterVec
	limited     *prometheus.CounterVec
}

// latencyBuckets span 100 µs to 10 s: a delivery on an idle node is well
// under a millisecond, a store stall or a slow consumer is seconds.
func latencyBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

// New returns Herald's metrics over src.
func New(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		reg: reg,
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_connections_opened_total",
			Help: "Connections opened, by transport (websocket, sse)."}, []string{"transport"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_connections_closed_total",
			Help: "Connections closed, by transport and close code (1006: lost without a close frame; other: a client's own code outside Herald's list)."}, []string{"transport", "code"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_resumes_total",
			Help: "Resume requests carried out, by outcome (replayed, none, reset)."}, []string{"outcome"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_replayed_messages_total",
			Help: "Messages sent from the store to resuming clients."}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_send_queue_wait_seconds",
			Help: "How long frames waited in a connection's send queue before the socket took them (frames written at once are not observed).", Buckets: latencyBuckets()}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_messages_published_total",
			Help: "Messages accepted by the server API and stored (messages in)."}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_deliveries_total",
			Help: "Messages handed to this node's connections (messages out)."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_delivery_failures_total",
			Help: "Deliveries dropped because the connection was closing or its send queue overflowed (the client resumes them)."}),
		publishTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_publish_duration_seconds",
			Help: "Server API publish, from the request to the message stored and written to (or queued for) this node's sockets.", Buckets: latencyBuckets()}),
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_store_duration_seconds",
			Help: "Store operations, by operation.", Buckets: latencyBuckets()}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_store_errors_total",
			Help: "Store operations that failed for a reason other than the caller's, by operation."}, []string{"op"}),
		authFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_auth_failures_total",
			Help: "Refused credentials, by kind (expired, bad_signature, api_key, scope, origin, …)."}, []string{"kind"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_rate_limited_total",
			Help: "Requests, connects and client messages refused by a rate limit, by limit."}, []string{"limit"}),
	}
	for _, c := range []prometheus.Collector{m.opened, m.closed, m.resumes, m.replayed, m.queueWait, m.published, m.deliveries,
		m.failures, m.publishTime, m.storeTime, m.storeErrors, m.authFailed, m.limited} {
		f(c)
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_build_info", Help: "Always 1; the version is a label.",
		ConstLabels: prometheus.Labels{"version": src.Version}}, func() float64 { return 1 }))
	if src.Connections != nil {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_connections", Help: "Open connections on this node."},
			func() float64 { return float64(src.Connections()) }))
	}
	if src.Queues != nil {
		f(newQueueCollector(src.Queues))
	}
	if src.Ready != nil {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_ready", Help: "1 when /readyz answers 200: not draining, store healthy."},
			func() float64 {
				if src.Ready() {
					return 1
				}
				return 0
			}))
	}
	if src.ClusterCounts != nil {
		for _, source := range []string{"replica", "registry"} {
			f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_cluster_counts_total",
				Help:        "Times replies counted the other nodes' connections, by source: the node's replica of their counts, or the registry while the replica is incomplete.",
				ConstLabels: prometheus.Labels{"source": source}},
				func() float64 {
					replica, registry := src.ClusterCounts()
					if source == "replica" {
						return float64(replica)
					}
					return float64(registry)
				}))
		}
	}
	if src.ReplicaComplete != nil {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_cluster_replica_complete",
			Help: "1 when this node's replica of the other nodes' connection counts is complete and answers replies."},
			func() float64 {
				if src.ReplicaComplete() {
					return 1
				}
				return 0
			}))
	}
	// Series with labels appear once touched; give the ones alerts read a
	// zero from the start, so that rate() works from the first scrape.
	for _, tr := range []string{"websocket", "sse"} {
		m.opened.WithLabelValues(tr)
		m.closed.WithLabelValues(tr, "4008")
	}
	for _, o := range []string{"replayed", "none", "reset"} {
		m.resumes.WithLabelValues(o)
	}
	for _, k := range src.AuthKinds {
		m.authFailed.WithLabelValues(k)
	}
	for _, l := range append(src.RateLimits, "client_message") {
		m.limited.WithLabelValues(l)
	}
	for _, op := range src.StoreOps {
		m.storeTime.WithLabelValues(op)
		m.storeErrors.WithLabelValues(op)
	}
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// queueCollector reads the send queues once per scrape for its three
// gauges (one walk of the connections, not three).
type queueCollector struct {
	read                func() (frames, bytes, maxBytes int)
	frames, bytes, most *prometheus.Desc
}

func newQueueCollector(read func() (frames, bytes, maxBytes int)) *queueCollector {
	return &queueCollector{
		read:   read,
		frames: prometheus.NewDesc("herald_send_queue_frames", "Frames waiting in send queues, all connections.", nil, nil),
		bytes:  prometheus.NewDesc("herald_send_queue_bytes", "Bytes waiting in send queues, all connections.", nil, nil),
		most:   prometheus.NewDesc("herald_send_queue_max_bytes", "Bytes waiting for the most backed-up connection.", nil, nil),
	}
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.frames
	ch <- q.bytes
	ch <- q.most
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	frames, bytes, maxBytes := q.read()
	ch <- prometheus.MustNewConstMetric(q.frames, prometheus.GaugeValue, float64(frames))
	ch <- prometheus.MustNewConstMetric(q.bytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(q.most, prometheus.GaugeValue, float64(maxBytes))
}

// Opened counts a connection opened (session.Observer).
func (m *Metrics) Opened(transport string) { m.opened.WithLabelValues(transport).Inc() }

// Closed counts a connection closed (session.Observer). Codes outside
// the ones Herald sends or RFC 6455 defines are one "other" label, so a
// client cannot mint label values.
func (m *Metrics) Closed(transport string, code int, reason string) {
	m.closed.WithLabelValues(transport, codeLabel(code)).Inc()
	if code == 4030 { // a client over its message rate: a rate limit too
		m.limited.WithLabelValues("client_message").Inc()
	}
}

func codeLabel(code int) string {
	switch code {
	case 1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 1012, 4001, 4003, 4008, 4029, 4030:
		return strconv.Itoa(code)
	}
	return "other"
}

// Resumed counts a resume (session.Observer).
func (m *Metrics) Resumed(outcome string, messages int) {
	m.resumes.WithLabelValues(outcome).Inc()
	m.replayed.Add(float64(messages))
}

// QueueWait observes a send queue wait (session.Observer).
func (m *Metrics) QueueWait(d time.Duration) { m.queueWait.Observe(d.Seconds()) }

// Published records one publish through the server API: messages stored,
// deliveries and failed deliveries on this node, and how long it took.
func (m *Metrics) Published(messages, deliveries, failures int, d time.Duration) {
	m.published.Add(float64(messages))
	m.deliveries.Add(float64(deliveries))
	m.failures.Add(float64(failures))
	m.publishTime.Observe(d.Seconds())
}

// StoreOp records a store operation (the store watcher's observer).
func (m *Metrics) StoreOp(op string, d time.Duration, failed bool) {
	m.storeTime.WithLabelValues(op).Observe(d.Seconds())
	if failed {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// AuthFailed counts refused credentials (api.Observer, and token
// failures by their kind).
func (m *Metrics) AuthFailed(kind string) { m.authFailed.WithLabelValues(kind).Inc() }

// RateLimited counts a refusal by a rate limit (api.Observer, and the
// per-connection message limit).
func (m *Metrics) RateLimited(limit string) { m.limited.WithLabelValues(limit).Inc() }
