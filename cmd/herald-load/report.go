package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result is what a run prints: the table, or with -json this as-is.
type result struct {
	Scenario   string   `json:"scenario"`
	Transport  string   `json:"transport"` // ws or sse
	URL        string   `json:"url"`
	Requested  int      `json:"connections_requested"`
	Users      int      `json:"users"`
	Workers    int      `json:"workers"`
	ClientIO   string   `json:"client_io"`
	LocalAddrs []string `json:"local_addrs,omitempty"`

	Connect connectResult `json:"connect"`
	Server  serverResult  `json:"server"`
	Client  clientResult  `json:"client"`

	Idle    *idleResult    `json:"idle,omitempty"`
	Fanout  *fanoutResult  `json:"fanout,omitempty"`
	Notify  *notifyResult  `json:"notify,omitempty"`
	Churn   *churnResult   `json:"churn,omitempty"`
	Resume  *resumeResult  `json:"resume,omitempty"`
	Latency *latencyResult `json:"delivery_latency_ms,omitempty"`

	Deliveries int64 `json:"deliveries"`     // messages with our timestamp, all connections
	Other      int64 `json:"other_messages"` // messages without one (not ours)
	OutOfOrder int64 `json:"out_of_order"`   // informational: concurrent senders may reorder

	// Errors counts everything that went wrong: failed connects and
	// reconnects, connections the server or network dropped, protocol
	// violations, failed API calls, deliveries that never came, server
	// registry mismatches, gaps, duplicates and resets in resumed streams,
	// workers that did not report.
	Errors       int64    `json:"errors"`
	Dropped      int64    `json:"dropped"`
	BadFrames    int64    `json:"bad_frames"`
	Missing      int64    `json:"missing_deliveries"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	Aborted      string   `json:"aborted,omitempty"`
	Elapsed      float64  `json:"elapsed_s"`

	// With -baseline: the same load against the raw baseline server, and
	// how this run compares with it.
	Baseline   *result     `json:"baseline,omitempty"`
	VsBaseline *comparison `json:"vs_baseline,omitempty"`
	// With -peer: the same load against the peer (Centrifugo), and how
	// this run compares with it (ratios Herald/peer).
	Peer   *result     `json:"peer,omitempty"`
	VsPeer *comparison `json:"vs_peer,omitempty"`
	// Software names the server measured when it is not the target: the
	// peer's version and configuration (no secrets).
	Software string `json:"software,omitempty"`
}

// comparison holds ratios Herald/baseline of the same load in the same
// run. Absent fields could not be computed (a run failed, or the scenario
// does not measure them).
type comparison struct {
	// Fanout, from the medians over the broadcasts. Below 1 Herald
	// delivers slower than the baseline.
	DeliveriesPerSec float64 `json:"deliveries_per_second,omitempty"`
	// Above 1 Herald takes longer to reach its last connection.
	LastDelivery float64 `json:"time_to_last_delivery,omitempty"`
	// Idle: server memory per connection, as a ratio and as Herald's
	// extra KB per connection over the baseline's.
	KBPerConn      float64  `json:"kb_per_connection,omitempty"`
	ExtraKBPerConn *float64 `json:"extra_kb_per_connection,omitempty"`
	// Notify: server CPU per 1,000 messages and p99 delivery latency as
	// ratios (above 1 Herald costs more), and Herald's extra CPU per 1,000
	// messages over the baseline's: what Herald itself adds to the HTTP
	// requests and socket writes that any server pays.
	CPUPer1000      float64  `json:"cpu_per_1000_messages,omitempty"`
	ExtraCPUPer1000 *float64 `json:"extra_cpu_ms_per_1000_messages,omitempty"`
	P99Latency      float64  `json:"p99_latency,omitempty"`
}

type connectResult struct {
	Established int64          `json:"established"`
	Failed      int64          `json:"failed"`
	Seconds     float64        `json:"seconds"`
	Rate        float64        `json:"per_second"`
	Latency     *latencyResult `json:"latency_ms,omitempty"`
}

// serverResult is the server's memory. PerConnKB is (after-before)/Conns:
// everything the server gained while our connections were open, divided
// among them. With several nodes (-url a,b,c) the RSS figures are sums
// over the nodes whose pid is known, PID is the first node's, and Nodes
// has each one's own.
type serverResult struct {
	PID         int          `json:"pid,omitempty"`
	RSSBeforeKB int64        `json:"rss_before_kb,omitempty"`
	RSSAfterKB  int64        `json:"rss_after_kb,omitempty"`
	Conns       int64        `json:"connections,omitempty"`
	PerConnKB   float64      `json:"kb_per_connection,omitempty"`
	Nodes       []nodeResult `json:"nodes,omitempty"`
	Note        string       `json:"note,omitempty"`
}

// nodeResult is one node's memory, as serverResult is the server's: Conns
// are our connections open on that node.
type nodeResult struct {
	URL         string  `json:"url"`
	PID         int     `json:"pid,omitempty"`
	RSSBeforeKB int64   `json:"rss_before_kb,omitempty"`
	RSSAfterKB  int64   `json:"rss_after_kb,omitempty"`
	Conns       int64   `json:"connections,omitempty"`
	PerConnKB   float64 `json:"kb_per_connection,omitempty"`
	Note        string  `json:"note,omitempty"`
}

// clientResult is the workers' own memory while holding the connections.
type clientResult struct {
	RSSKB     int64   `json:"rss_kb"`
	PerConnKB float64 `json:"kb_per_connection"`
}

// idleResult is what the server did while the connections sat idle: its
// CPU time over the hold (pings, timers, and in a cluster the connection
// registry's upkeep), as cpuResult without the per-message figure.
type idleResult struct {
	ServerCPU     *cpuResult `json:"server_cpu,omitempty"`
	ServerCPUNote string     `json:"server_cpu_note,omitempty"`
}

type fanoutResult struct {
	Messages  []fanoutMsg `json:"messages"`
	Expected  int64       `json:"expected"`
	Delivered int64       `json:"delivered"`
	APIErrors []string    `json:"api_errors,omitempty"`

	// Medians over the broadcasts that reached anyone: the first one also
	// pays for warming up (goroutine stacks, buffers), which the median
	// does not let dominate, while a mean over a few would.
	MedianPerSec  float64 `json:"median_deliveries_per_second"`
	MedianLastMs  float64 `json:"median_last_ms"`
	MedianFirstMs float64 `json:"median_first_ms"`
	MedianAPIMs   float64 `json:"median_api_ms"`
}

// fanoutMsg is one broadcast; times are from just before the API call.
type fanoutMsg struct {
	Seq         int64   `json:"seq"`
	Expected    int64   `json:"expected"`     // our connections open when it was sent
	ServerConns int     `json:"server_conns"` // what the server says it queued to
	Delivered   int64   `json:"delivered"`
	APIMs       float64 `json:"api_ms"`
	FirstMs     float64 `json:"first_ms"`
	LastMs      float64 `json:"last_ms"`
	PerSec      float64 `json:"deliveries_per_second"`
}

type notifyResult struct {
	TargetRate  float64 `json:"target_rate"` // messages/s asked
	Rate        float64 `json:"rate"`        // messages/s the server accepted
	Batch       int     `json:"batch"`       // messages per request at most (1: POST /v1/users/{u}/messages)
	BatchWaitMs float64 `json:"batch_wait_ms,omitempty"`
	Sent        int64   `json:"sent"`       // messages the server accepted
	APIErrors   int64   `json:"api_errors"` // messages that failed (a failed batch request counts all of its messages)
	Expected    int64   `json:"expected"`   // connections the server queued the sent messages to
	Delivered   int64   `json:"delivered"`
	Requests    int64   `json:"requests"` // API requests made
	RequestRate float64 `json:"requests_per_second"`
	SendSeconds float64 `json:"send_seconds"` // the send window: first message due to last reply

	// The server's CPU time over the send window; nil, with a note, when
	// its pid is not known.
	ServerCPU     *cpuResult `json:"server_cpu,omitempty"`
	ServerCPUNote string     `json:"server_cpu_note,omitempty"`

	APIErrorSamples []string `json:"api_error_samples,omitempty"`
}

// cpuResult is the server's CPU time (user plus system, from
// /proc/<pid>/stat, 10ms resolution) over a window: one process's, or the
// sum over the target's nodes and the processes -cpu-procs names, each
// listed in Parts.
type cpuResult struct {
	PID           int       `json:"pid"` // the (first) node's
	Ms            int64     `json:"ms"`
	WindowS       float64   `json:"window_s"`
	Cores         float64   `json:"cores"`                // Ms over the window: the cores busy on average
	MsPer1000Msgs float64   `json:"ms_per_1000_messages"` // per 1,000 messages sent (accepted)
	Parts         []cpuPart `json:"parts,omitempty"`      // with more than one source: each one's share
}

// cpuPart is one source's share of cpuResult: a node, a process given by
// pid, or every process of a name (how many were found at either end of
// the window).
type cpuPart struct {
	Name          string  `json:"name"`
	PID           int     `json:"pid,omitempty"`
	Comm          string  `json:"comm,omitempty"`
	ProcsStart    int     `json:"processes_at_start"`
	ProcsEnd      int     `json:"processes_at_end"`
	Ms            int64   `json:"ms"`
	MsPer1000Msgs float64 `json:"ms_per_1000_messages"`
}

type churnResult struct {
	TargetRate    float64        `json:"target_rate"`
	Rate          float64        `json:"rate"`
	Closed        int64          `json:"closed"`
	Reconnected   int64          `json:"reconnected"`
	Failed        int64          `json:"failed"`
	Reconnect     *latencyResult `json:"reconnect_latency_ms,omitempty"`
	HubCheck      string         `json:"hub_check"`
	HubChecked    int            `json:"hub_checked"`
	HubMismatches []string       `json:"hub_mismatches,omitempty"`
}

// resumeResult is the resume storm: priming, the clients away while
// messages are stored, and their reconnecting with resume.
type resumeResult struct {
	Messages       int   `json:"messages_per_user"` // stored per user while the clients were away
	Primed         int64 `json:"primed"`            // connections that knew an offset before leaving
	PrimeExpected  int64 `json:"prime_expected"`    // priming deliveries the server queued
	PrimeDelivered int64 `json:"prime_delivered"`
	Disconnected   int64 `json:"disconnected"`

	Stored       int64   `json:"stored"`      // messages stored while the clients were away
	StoredLive   int64   `json:"stored_live"` // deliveries of those to connections the server still had (0 in a clean run)
	StoreSeconds float64 `json:"store_s"`
	StoreRate    float64 `json:"stored_per_second"`

	// From the first reconnect dial to the last handshake, by the workers'
	// clocks.
	Reconnected      int64          `json:"reconnected"`
	Failed           int64          `json:"failed"`
	ReconnectSeconds float64        `json:"reconnect_s"`
	ReconnectRate    float64        `json:"reconnects_per_second"`
	Reconnect        *latencyResult `json:"reconnect_latency_ms,omitempty"` // dial to handshake

	// Seconds runs from the first reconnect dial until the last client
	// had every message it missed; ReplayRate is Replayed over it.
	Expected   int64          `json:"expected"` // messages the reconnected clients had missed
	Replayed   int64          `json:"replayed"` // of those, received (each offset once)
	CaughtUp   int64          `json:"caught_up"`
	Behind     int64          `json:"behind"` // missed messages never replayed (counted as missing deliveries)
	Gaps       int64          `json:"gaps"`   // offsets skipped
	Duplicates int64          `json:"duplicates"`
	Resets     int64          `json:"resets"`
	Seconds    float64        `json:"seconds"`
	ReplayRate float64        `json:"replayed_per_second"`
	CatchUp    *latencyResult `json:"catch_up_ms,omitempty"` // per client: its dial to its last missed message

	// The server's CPU time from the resume commands to the last client
	// caught up, per 1,000 replayed messages.
	ServerCPU     *cpuResult `json:"server_cpu,omitempty"`
	ServerCPUNote string     `json:"server_cpu_note,omitempty"`

	Note            string   `json:"note,omitempty"`
	APIErrorSamples []string `json:"api_error_samples,omitempty"`
}

// latencyResult is a histogram summary in milliseconds.
type latencyResult struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func summarize(h *histogram) *latencyResult {
	if h == nil || h.count() == 0 {
		return nil
	}
	return &latencyResult{
		Count: h.count(), Min: ms(h.min), Mean: h.mean() / 1e6,
		P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)), P99: ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)), Max: ms(h.max),
	}
}

// finish fills the totals in from the workers' final reports.
func (res *result) finish(t workerStats, finals []*event, apiErrs int64) {
	lat, con, recon, catchUp := newHistogram(), newHistogram(), newHistogram(), newHistogram()
	for _, f := range finals {
		lat.merge(f.Latency)
		con.merge(f.Connect)
		recon.merge(f.Reconnect)
		catchUp.merge(f.CatchUp)
	}
	res.Latency = summarize(lat)
	res.Connect.Latency = summarize(con)
	res.Deliveries, res.Other, res.OutOfOrder = t.Delivered, t.Other, t.OutOfOrder
	res.Dropped, res.BadFrames = t.Dropped, t.BadFrames
	res.Errors = t.ConnectFailed + t.Dropped + t.BadFrames + t.ChurnFailed + t.ResumeFailed + apiErrs
	res.ErrorSamples = t.Errors
	if missing := res.Workers - len(finals); missing > 0 {
		res.Errors += int64(missing)
		res.ErrorSamples = append(res.ErrorSamples, fmt.Sprintf("%d worker(s) did not report their final numbers", missing))
	}
	if f := res.Fanout; f != nil {
		var perSec, last, first, api []float64
		for _, m := range f.Messages {
			f.Expected += m.Expected
			f.Delivered += m.Delivered
			res.Missing += max(0, m.Expected-m.Delivered)
			if m.Delivered > 0 {
				perSec, last, first, api = append(perSec, m.PerSec), append(last, m.LastMs), append(first, m.FirstMs), append(api, m.APIMs)
			}
		}
		f.MedianPerSec, f.MedianLastMs, f.MedianFirstMs, f.MedianAPIMs = median(perSec), median(last), median(first), median(api)
		res.ErrorSamples = append(res.ErrorSamples, f.APIErrors...)
	}
	if n := res.Notify; n != nil {
		res.Missing += max(0, n.Expected-n.Delivered)
		res.ErrorSamples = append(res.ErrorSamples, n.APIErrorSamples...)
	}
	if c := res.Churn; c != nil {
		c.Reconnect = summarize(recon)
		res.Errors += int64(len(c.HubMismatches))
		res.ErrorSamples = append(res.ErrorSamples, c.HubMismatches...)
	}
	if rs := res.Resume; rs != nil {
		rs.Reconnect, rs.CatchUp = summarize(recon), summarize(catchUp)
		res.Missing += max(0, rs.PrimeExpected-rs.PrimeDelivered) + rs.Behind
		res.Errors += rs.Gaps + rs.Duplicates + rs.Resets
		res.ErrorSamples = append(res.ErrorSamples, rs.APIErrorSamples...)
	}
	res.Errors += res.Missing
}

// median returns the median of vs (the mean of the middle two for an even
// count), 0 for none. vs is reordered.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// compare returns how res compares with base (its VsBaseline), nil when
// nothing could be compared.
func compare(res, base *result) *comparison {
	if res == nil || base == nil {
		return nil
	}
	c := &comparison{}
	if f, b := res.Fanout, base.Fanout; f != nil && b != nil {
		if b.MedianPerSec > 0 {
			c.DeliveriesPerSec = f.MedianPerSec / b.MedianPerSec
		}
		if b.MedianLastMs > 0 {
			c.LastDelivery = f.MedianLastMs / b.MedianLastMs
		}
	}
	if s, b := res.Server, base.Server; s.Conns > 0 && b.Conns > 0 {
		if s.PerConnKB > 0 && b.PerConnKB > 0 { // a server that shrank has no meaningful ratio
			c.KBPerConn = s.PerConnKB / b.PerConnKB
		}
		extra := s.PerConnKB - b.PerConnKB
		c.ExtraKBPerConn = &extra
	}
	if n, b := res.Notify, base.Notify; n != nil && b != nil && n.ServerCPU != nil && b.ServerCPU != nil && b.ServerCPU.MsPer1000Msgs > 0 {
		c.CPUPer1000 = n.ServerCPU.MsPer1000Msgs / b.ServerCPU.MsPer1000Msgs
		extra := n.ServerCPU.MsPer1000Msgs - b.ServerCPU.MsPer1000Msgs
		c.ExtraCPUPer1000 = &extra
	}
	if l, b := res.Latency, base.Latency; res.Notify != nil && l != nil && b != nil && b.P99 > 0 {
		c.P99Latency = l.P99 / b.P99
	}
	if c.DeliveriesPerSec == 0 && c.LastDelivery == 0 && c.ExtraKBPerConn == nil && c.ExtraCPUPer1000 == nil && c.P99Latency == 0 {
		return nil
	}
	return c
}

func writeResult(w io.Writer, res *result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	if b := res.Baseline; b != nil {
		row("BASELINE", "raw %s server (herald-load -serve-baseline), same load, same run", transportName(res.Transport))
		writeRows(row, b)
		row("", "")
	}
	if p := res.Peer; p != nil {
		row("PEER", "%s, same load, same run", p.Software)
		writeRows(row, p)
		row("", "")
	}
	if res.Baseline != nil || res.Peer != nil {
		row("TARGET", "%s", res.URL)
	}
	writeRows(row, res)
	writeComparison(row, "baseline", res, res.Baseline, res.VsBaseline)
	writeComparison(row, "Centrifugo", res, res.Peer, res.VsPeer)
	if res.Baseline != nil || res.Peer != nil {
		row("", "")
		writeSideBySide(row, res)
	}
	return tw.Flush()
}

// writeComparison writes the "vs NAME" rows: how res compares with
// other (c = compare(res, other)), ratios Herald/NAME.
func writeComparison(row func(label, format string, args ...any), name string, res, other *result, c *comparison) {
	if c == nil || other == nil {
		return
	}
	label, own := "vs "+name, "Herald's own"
	if name != "baseline" {
		label, own = "vs peer", "difference"
	}
	row("", "")
	if c.DeliveriesPerSec > 0 {
		row(label, "fanout deliveries/s: Herald %.0f, %s %.0f, ratio Herald/%s %.2f (medians over the broadcasts)",
			res.Fanout.MedianPerSec, name, other.Fanout.MedianPerSec, name, c.DeliveriesPerSec)
	}
	if c.LastDelivery > 0 {
		row(label, "time to last delivery: Herald %.1fms, %s %.1fms, ratio Herald/%s %.2f",
			res.Fanout.MedianLastMs, name, other.Fanout.MedianLastMs, name, c.LastDelivery)
	}
	if c.ExtraKBPerConn != nil {
		row(label, "server memory per connection: Herald %.2f KB, %s %.2f KB, ratio Herald/%s %s (%s: %+.2f KB)",
			res.Server.PerConnKB, name, other.Server.PerConnKB, name, ratioText(c.KBPerConn), own, *c.ExtraKBPerConn)
	}
	if c.ExtraCPUPer1000 != nil {
		row(label, "server cpu per 1,000 messages: Herald %.1f ms, %s %.1f ms, ratio Herald/%s %s (%s: %+.1f ms)",
			res.Notify.ServerCPU.MsPer1000Msgs, name, other.Notify.ServerCPU.MsPer1000Msgs, name, ratioText(c.CPUPer1000), own, *c.ExtraCPUPer1000)
	}
	if c.P99Latency > 0 {
		row(label, "delivery latency p99: Herald %.2f ms, %s %.2f ms, ratio Herald/%s %.2f",
			res.Latency.P99, name, other.Latency.P99, name, c.P99Latency)
	}
}

// writeSideBySide writes one row per server with the scenario's headline
// figures, so that the servers read as a column each.
func writeSideBySide(row func(label, format string, args ...any), res *result) {
	servers := []struct {
		name string
		r    *result
	}{{"Herald", res}, {"raw baseline", res.Baseline}, {"Centrifugo", res.Peer}}
	for _, s := range servers {
		if s.r == nil {
			continue
		}
		row("side by side", "%-12s %s", s.name, headline(s.r))
	}
}

// headline is a run's figures in one line: what the side-by-side table
// (-table) shows of it.
func headline(r *result) string {
	lat := func() string {
		if r.Latency == nil {
			return "latency n/a"
		}
		return fmt.Sprintf("p50 %s p99 %s max %s", fmtMs(r.Latency.P50), fmtMs(r.Latency.P99), fmtMs(r.Latency.Max))
	}
	var out string
	switch {
	case r.Idle != nil || r.Scenario == "idle":
		out = fmt.Sprintf("%.2f KB per connection (RSS %s with %d connections)", r.Server.PerConnKB, mib(r.Server.RSSAfterKB), r.Server.Conns)
	case r.Fanout != nil:
		out = fmt.Sprintf("%.0f deliveries/s, last delivery %.1fms, %s", r.Fanout.MedianPerSec, r.Fanout.MedianLastMs, lat())
	case r.Notify != nil:
		cpu := "cpu n/a"
		if c := r.Notify.ServerCPU; c != nil {
			cpu = fmt.Sprintf("%.1f ms cpu per 1,000", c.MsPer1000Msgs)
		}
		out = fmt.Sprintf("%.0f messages/s sent, %d/%d delivered, %s, %s", r.Notify.Rate, r.Notify.Delivered, r.Notify.Expected, lat(), cpu)
	default:
		out = "no figures (the run did not get that far)"
	}
	return fmt.Sprintf("%s; errors %d", out, r.Errors)
}

// transportName names a run's transport for the table.
func transportName(t string) string {
	if t == "sse" {
		return "Server-Sent Events"
	}
	return "WebSocket"
}

func ratioText(r float64) string {
	if r <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", r)
}

// writeRows writes one run's table rows.
func writeRows(row func(label, format string, args ...any), res *result) {
	row("scenario", "%s against %s", res.Scenario, res.URL)
	src := "kernel's choice"
	if len(res.LocalAddrs) > 0 {
		src = strings.Join(res.LocalAddrs, " ")
	}
	row("clients", "%d worker process(es), %s, %s I/O, source addresses %s; %d users", res.Workers, transportName(res.Transport), res.ClientIO, src, res.Users)
	c := res.Connect
	row("connections", "%d established of %d, %d failed, in %.1fs (%.0f/s)", c.Established, res.Requested, c.Failed, c.Seconds, c.Rate)
	if c.Latency != nil {
		row("connect latency", "%s", c.Latency)
	}
	s := res.Server
	who := fmt.Sprintf("pid %d", s.PID)
	if len(s.Nodes) > 1 {
		who = fmt.Sprintf("%d nodes together", len(s.Nodes))
	}
	switch {
	case s.RSSAfterKB > 0 && s.Conns > 0:
		row("server rss", "%s: %s before, %s after, with %d connections open: %.2f KB per connection", who, mib(s.RSSBeforeKB), mib(s.RSSAfterKB), s.Conns, s.PerConnKB)
	case s.RSSAfterKB > 0:
		row("server rss", "%s: %s before, %s after", who, mib(s.RSSBeforeKB), mib(s.RSSAfterKB))
	}
	if s.Note != "" {
		row("server rss", "%s", s.Note)
	}
	if len(s.Nodes) > 1 {
		for k, n := range s.Nodes {
			label := fmt.Sprintf("node %d rss", k+1)
			switch {
			case n.RSSAfterKB > 0 && n.Conns > 0:
				row(label, "%s pid %d: %s before, %s after, with %d connections open: %.2f KB per connection", n.URL, n.PID, mib(n.RSSBeforeKB), mib(n.RSSAfterKB), n.Conns, n.PerConnKB)
			case n.RSSAfterKB > 0:
				row(label, "%s pid %d: %s before, %s after", n.URL, n.PID, mib(n.RSSBeforeKB), mib(n.RSSAfterKB))
			}
			if n.Note != "" {
				row(label, "%s: %s", n.URL, n.Note)
			}
		}
	}
	row("client rss", "%s over all workers, %.2f KB per connection", mib(res.Client.RSSKB), res.Client.PerConnKB)
	if id := res.Idle; id != nil {
		if c := id.ServerCPU; c != nil {
			writeCPU(row, c, "hold", "")
		} else if id.ServerCPUNote != "" {
			row("server cpu", "%s", id.ServerCPUNote)
		}
	}
	if f := res.Fanout; f != nil {
		for _, m := range f.Messages {
			queued := strconv.Itoa(m.ServerConns)
			if m.ServerConns < 0 {
				queued = "n/a"
			}
			row(fmt.Sprintf("broadcast %d", m.Seq), "%d/%d delivered (server queued %s), API call %.1fms, first %.1fms, last %.1fms, %.0f deliveries/s",
				m.Delivered, m.Expected, queued, m.APIMs, m.FirstMs, m.LastMs, m.PerSec)
		}
		row("fanout", "%d/%d deliveries; medians: %.0f deliveries/s, last %.1fms, first %.1fms, API call %.1fms",
			f.Delivered, f.Expected, f.MedianPerSec, f.MedianLastMs, f.MedianFirstMs, f.MedianAPIMs)
	}
	if n := res.Notify; n != nil {
		row("notify", "%d sent (%.0f/s of %.0f/s asked), %d API errors, %d/%d delivered", n.Sent, n.Rate, n.TargetRate, n.APIErrors, n.Delivered, n.Expected)
		if n.Batch > 1 {
			perReq := 0.0
			if n.Requests > 0 {
				perReq = float64(n.Sent+n.APIErrors) / float64(n.Requests)
			}
			row("requests", "%d POST /v1/batch (%.0f/s), %.1f messages each on average (at most %d, partial batches sent after %s)",
				n.Requests, n.RequestRate, perReq, n.Batch, fmtMs(n.BatchWaitMs))
		} else {
			row("requests", "%d POST /v1/users/{user}/messages (%.0f/s), one message each", n.Requests, n.RequestRate)
		}
		if c := n.ServerCPU; c != nil {
			writeCPU(row, c, "send window", "messages")
		} else if n.ServerCPUNote != "" {
			row("server cpu", "%s", n.ServerCPUNote)
		}
	}
	if ch := res.Churn; ch != nil {
		row("churn", "%d closed and %d reopened (%.0f/s of %.0f/s asked), %d failed", ch.Closed, ch.Reconnected, ch.Rate, ch.TargetRate, ch.Failed)
		if ch.Reconnect != nil {
			row("reconnect latency", "%s", ch.Reconnect)
		}
		row("server registry", "%s", ch.HubCheck)
	}
	if rs := res.Resume; rs != nil {
		row("prime", "%d connections knew their offset (%d/%d priming messages delivered)", rs.Primed, rs.PrimeDelivered, rs.PrimeExpected)
		row("away", "%d disconnected at once; %d messages stored meanwhile (%d per user) in %.1fs (%.0f/s)",
			rs.Disconnected, rs.Stored, rs.Messages, rs.StoreSeconds, rs.StoreRate)
		if rs.StoredLive > 0 {
			row("", "the server still queued %d of those to connections it had not yet seen close", rs.StoredLive)
		}
		row("reconnect", "%d reconnected with resume, %d failed, in %.1fs (%.0f reconnects/s)", rs.Reconnected, rs.Failed, rs.ReconnectSeconds, rs.ReconnectRate)
		if rs.Reconnect != nil {
			row("reconnect latency", "%s", rs.Reconnect)
		}
		row("replay", "%d/%d missed messages replayed, %d/%d clients caught up; the last %.2fs after the first reconnect (%.0f replayed messages/s)",
			rs.Replayed, rs.Expected, rs.CaughtUp, rs.Reconnected, rs.Seconds, rs.ReplayRate)
		row("replay integrity", "gaps %d, duplicates %d, resets %d, never replayed %d", rs.Gaps, rs.Duplicates, rs.Resets, rs.Behind)
		if rs.CatchUp != nil {
			row("catch-up time", "%s (per client: its dial to its last missed message)", rs.CatchUp)
		}
		if c := rs.ServerCPU; c != nil {
			writeCPU(row, c, "storm", "replayed messages")
		} else if rs.ServerCPUNote != "" {
			row("server cpu", "%s", rs.ServerCPUNote)
		}
		if rs.Note != "" {
			row("note", "%s", rs.Note)
		}
	}
	if res.Latency != nil {
		row("delivery latency", "%s", res.Latency)
	}
	row("deliveries", "%d (other messages %d, out of order %d)", res.Deliveries, res.Other, res.OutOfOrder)
	if rs := res.Resume; rs != nil {
		row("errors", "%d (dropped connections %d, bad frames %d, missing deliveries %d, failed reconnects %d, gaps %d, duplicates %d, resets %d)",
			res.Errors, res.Dropped, res.BadFrames, res.Missing, rs.Failed, rs.Gaps, rs.Duplicates, rs.Resets)
	} else {
		row("errors", "%d (dropped connections %d, bad frames %d, missing deliveries %d)", res.Errors, res.Dropped, res.BadFrames, res.Missing)
	}
	for _, e := range res.ErrorSamples {
		row("", "%s", e)
	}
	if res.Aborted != "" {
		row("aborted", "%s", res.Aborted)
	}
	row("elapsed", "%.1fs", res.Elapsed)
}

// writeCPU writes the server's CPU rows: the total over the window, and
// each part's share when it was summed over several. what names the
// messages the cost is per 1,000 of; "" leaves that figure out (idle).
func writeCPU(row func(label, format string, args ...any), c *cpuResult, window, what string) {
	per := func(ms float64) string {
		if what == "" {
			return ""
		}
		return fmt.Sprintf(": %.1f ms per 1,000 %s", ms, what)
	}
	if len(c.Parts) == 0 {
		row("server cpu", "pid %d: %d ms over the %.1fs %s (%.2f cores)%s", c.PID, c.Ms, c.WindowS, window, c.Cores, per(c.MsPer1000Msgs))
		return
	}
	names := make([]string, len(c.Parts))
	for i, p := range c.Parts {
		names[i] = p.Name
	}
	row("server cpu", "%d ms over the %.1fs %s (%.2f cores)%s, summed over %s",
		c.Ms, c.WindowS, window, c.Cores, per(c.MsPer1000Msgs), strings.Join(names, ", "))
	for _, p := range c.Parts {
		who := fmt.Sprintf("pid %d", p.PID)
		if p.Comm != "" {
			who = fmt.Sprintf("%d processes named %s at the start, %d at the end", p.ProcsStart, p.Comm, p.ProcsEnd)
		}
		share := fmt.Sprintf("%.2f cores", float64(p.Ms)/1000/c.WindowS)
		if what != "" {
			share = fmt.Sprintf("%.1f ms per 1,000 %s", p.MsPer1000Msgs, what)
		}
		row("  "+p.Name, "%d ms (%s), %s", p.Ms, share, who)
	}
}

func (l *latencyResult) String() string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, n %d)",
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean), l.Count)
}

func fmtMs(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.1fms", v)
}

// ms converts nanoseconds to milliseconds.
func ms(ns int64) float64 { return float64(ns) / 1e6 }

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
