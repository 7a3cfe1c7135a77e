package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
)

// Sweeps run the tool once per point (each memory point needs a fresh
// server, which only a script can give) and collect one CSV row per run
// with -csv; -plot draws the file. The columns are fixed per scenario so
// that a file is one table, whatever flags each run had.

// csvColumns returns the header and the row of res.
func csvColumns(res *result) (header, row []string) {
	add := func(name, value string) {
		header = append(header, name)
		row = append(row, value)
	}
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	f0 := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	f2 := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	lat := func(prefix string, l *latencyResult) {
		if l == nil {
			l = &latencyResult{}
		}
		add(prefix+"p50_ms", f2(l.P50))
		add(prefix+"p90_ms", f2(l.P90))
		add(prefix+"p99_ms", f2(l.P99))
		add(prefix+"p999_ms", f2(l.P999))
		add(prefix+"max_ms", f2(l.Max))
	}
	// cpu adds the server's CPU columns; empty when its pid was not known,
	// so -plot skips them. perName names the per-1,000 column.
	cpu := func(perName string, c *cpuResult) {
		if c == nil {
			add("server_cpu_ms", "")
			add(perName, "")
			return
		}
		add("server_cpu_ms", i(c.Ms))
		add(perName, f2(c.MsPer1000Msgs))
	}
	base := res.Baseline
	vs := res.VsBaseline
	if vs == nil {
		vs = &comparison{}
	}
	peer := res.Peer
	vsPeer := res.VsPeer
	if vsPeer == nil {
		vsPeer = &comparison{}
	}
	// The peer's columns (peer_*, ratio_peer_*: Herald/peer) come after
	// the baseline's; empty without -peer, so a file is one table.
	peerCols := func(names []string, values func(p *result) []string) {
		var vals []string
		if peer != nil {
			vals = values(peer)
		}
		for k, name := range names {
			v := ""
			if k < len(vals) {
				v = vals[k]
			}
			add(name, v)
		}
	}
	errCols := func() {
		var be, pe string
		if base != nil {
			be = i(base.Errors)
		}
		if peer != nil {
			pe = i(peer.Errors)
		}
		add("baseline_errors", be)
		add("peer_errors", pe)
	}

	add("conns", i(res.Connect.Established))
	switch res.Scenario {
	case "idle":
		s := res.Server
		add("server_rss_before_kb", i(s.RSSBeforeKB))
		add("server_rss_after_kb", i(s.RSSAfterKB))
		add("kb_per_conn", f2(s.PerConnKB))
		add("client_kb_per_conn", f2(res.Client.PerConnKB))
		if base != nil {
			add("baseline_rss_before_kb", i(base.Server.RSSBeforeKB))
			add("baseline_rss_after_kb", i(base.Server.RSSAfterKB))
			add("baseline_kb_per_conn", f2(base.Server.PerConnKB))
		} else {
			add("baseline_rss_before_kb", "")
			add("baseline_rss_after_kb", "")
			add("baseline_kb_per_conn", "")
		}
		add("ratio_kb_per_conn", ratio(vs.KBPerConn))
		peerCols([]string{"peer_rss_before_kb", "peer_rss_after_kb", "peer_kb_per_conn"}, func(p *result) []string {
			return []string{i(p.Server.RSSBeforeKB), i(p.Server.RSSAfterKB), f2(p.Server.PerConnKB)}
		})
		add("ratio_peer_kb_per_conn", ratio(vsPeer.KBPerConn))
		errCols()
	case "fanout":
		fo := res.Fanout
		if fo == nil {
			fo = &fanoutResult{}
		}
		add("broadcasts", i(int64(len(fo.Messages))))
		add("delivered", i(fo.Delivered))
		add("expected", i(fo.Expected))
		add("deliveries_per_s", f0(fo.MedianPerSec))
		add("last_ms", f2(fo.MedianLastMs))
		add("first_ms", f2(fo.MedianFirstMs))
		add("api_ms", f2(fo.MedianAPIMs))
		if base != nil && base.Fanout != nil {
			add("baseline_deliveries_per_s", f0(base.Fanout.MedianPerSec))
			add("baseline_last_ms", f2(base.Fanout.MedianLastMs))
		} else {
			add("baseline_deliveries_per_s", "")
			add("baseline_last_ms", "")
		}
		add("ratio_deliveries_per_s", ratio(vs.DeliveriesPerSec))
		add("ratio_last_ms", ratio(vs.LastDelivery))
		peerCols([]string{"peer_deliveries_per_s", "peer_last_ms"}, func(p *result) []string {
			if p.Fanout == nil {
				return nil
			}
			return []string{f0(p.Fanout.MedianPerSec), f2(p.Fanout.MedianLastMs)}
		})
		add("ratio_peer_deliveries_per_s", ratio(vsPeer.DeliveriesPerSec))
		add("ratio_peer_last_ms", ratio(vsPeer.LastDelivery))
		errCols()
	case "notify":
		n := res.Notify
		if n == nil {
			n = &notifyResult{}
		}
		add("users", i(int64(res.Users)))
		add("target_rate", f(n.TargetRate))
		add("batch", i(int64(n.Batch)))
		add("rate", f2(n.Rate))
		add("requests_per_s", f2(n.RequestRate))
		add("sent", i(n.Sent))
		add("delivered", i(n.Delivered))
		add("expected", i(n.Expected))
		add("api_errors", i(n.APIErrors))
		lat("", res.Latency)
		cpu("server_cpu_ms_per_1k_msgs", n.ServerCPU)
		if base != nil && base.Notify != nil && base.Notify.ServerCPU != nil && base.Latency != nil {
			add("baseline_p99_ms", f2(base.Latency.P99))
			add("baseline_cpu_ms_per_1k_msgs", f2(base.Notify.ServerCPU.MsPer1000Msgs))
		} else {
			add("baseline_p99_ms", "")
			add("baseline_cpu_ms_per_1k_msgs", "")
		}
		add("ratio_cpu_per_1k_msgs", ratio(vs.CPUPer1000))
		// Each server's rate and latency summary, for the side-by-side table.
		notifyCols := func(p *result) []string {
			if p.Notify == nil || p.Latency == nil {
				return nil
			}
			cpu := ""
			if p.Notify.ServerCPU != nil {
				cpu = f2(p.Notify.ServerCPU.MsPer1000Msgs)
			}
			return []string{f2(p.Notify.Rate), f2(p.Latency.P50), f2(p.Latency.P99), f2(p.Latency.Max), cpu}
		}
		var bv []string
		if base != nil {
			bv = notifyCols(base)
		}
		for k, name := range []string{"baseline_rate", "baseline_p50_ms", "baseline_max_ms"} {
			v := ""
			if len(bv) > 0 {
				v = bv[[]int{0, 1, 3}[k]]
			}
			add(name, v)
		}
		peerCols([]string{"peer_rate", "peer_p50_ms", "peer_p99_ms", "peer_max_ms", "peer_cpu_ms_per_1k_msgs"}, notifyCols)
		add("ratio_peer_cpu_per_1k_msgs", ratio(vsPeer.CPUPer1000))
		add("ratio_peer_p99_ms", ratio(vsPeer.P99Latency))
		errCols()
	case "churn":
		c := res.Churn
		if c == nil {
			c = &churnResult{}
		}
		add("target_rate", f(c.TargetRate))
		add("rate", f2(c.Rate))
		add("closed", i(c.Closed))
		add("reconnected", i(c.Reconnected))
		add("failed", i(c.Failed))
		lat("reconnect_", c.Reconnect)
	case "resume":
		rs := res.Resume
		if rs == nil {
			rs = &resumeResult{}
		}
		add("users", i(int64(res.Users)))
		add("messages_per_user", i(int64(rs.Messages)))
		add("stored", i(rs.Stored))
		add("reconnected", i(rs.Reconnected))
		add("reconnect_failed", i(rs.Failed))
		add("reconnects_per_s", f2(rs.ReconnectRate))
		add("expected", i(rs.Expected))
		add("replayed", i(rs.Replayed))
		add("storm_s", strconv.FormatFloat(rs.Seconds, 'f', 3, 64))
		add("replayed_per_s", f0(rs.ReplayRate))
		add("gaps", i(rs.Gaps))
		add("duplicates", i(rs.Duplicates))
		add("resets", i(rs.Resets))
		lat("catchup_", rs.CatchUp)
		cpu("server_cpu_ms_per_1k_replayed", rs.ServerCPU)
	}
	add("errors", i(res.Errors))
	add("missing", i(res.Missing))
	add("transport", res.Transport) // ws or sse
	return header, row
}

// ratio formats a comparison ratio, empty when it was not computed.
func ratio(v float64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// appendCSV appends res as one row to path, writing the header first when
// the file is new or empty. A file whose header differs (another scenario,
// or an older version of this tool) is refused rather than mixed.
func appendCSV(path string, res *result) error {
	header, row := csvColumns(res)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("-csv: %w", err)
	}
	defer f.Close()
	have, err := csv.NewReader(bufio.NewReader(f)).Read()
	switch {
	case errors.Is(err, io.EOF):
		have = nil
	case err != nil:
		return fmt.Errorf("-csv %s: read header: %w", path, err)
	case !slices.Equal(have, header):
		return fmt.Errorf("-csv %s: its columns are %v, a %s run writes %v: use one file per scenario", path, have, res.Scenario, header)
	}
	w := csv.NewWriter(f) // O_APPEND: writes go to the end whatever was read
	if have == nil {
		_ = w.Write(header)
	}
	_ = w.Write(row)
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("-csv %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("-csv %s: %w", path, err)
	}
	return nil
}
