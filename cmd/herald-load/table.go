package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// -table turns the CSV files of a sweep (-csv, one per scenario) into
// markdown: per file, one table with one row per server per point —
// Herald, the raw baseline and the peer, as far as the file has their
// columns filled — so that the servers measured in the same run read side
// by side. scripts/bench.sh writes its table.md with it.

const tableUsage = `usage: herald-load -table FILE.csv...

Writes a markdown table per CSV file (as written by -csv: idle, fanout
or notify runs) to stdout, one row per server (Herald, raw baseline,
Centrifugo) per point, with the scenario's figures: RSS per connection
(idle), deliveries/s and time to the last delivery (fanout), messages/s
sent, p50/p99/max notify-to-deliver latency and server CPU per 1,000
messages (notify). Other scenarios' files are refused.
`

func runTable(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprint(stdout, tableUsage)
		if len(args) == 0 {
			return errors.New("-table: no CSV file given")
		}
		return nil
	}
	w := bufio.NewWriter(stdout)
	for k, path := range args {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("-table: %w", err)
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			return fmt.Errorf("-table %s: %w", path, err)
		}
		if k > 0 {
			fmt.Fprintln(w)
		}
		if err := writeTable(w, filepath.Base(path), rows); err != nil {
			return fmt.Errorf("-table %s: %w", path, err)
		}
	}
	return w.Flush()
}

// tableServer is one server's columns in a CSV file: its prefix and, per
// table column, the CSV column holding it ("" for none).
type tableServer struct {
	name   string
	prefix string // "", "baseline_" or "peer_"
}

var tableServers = []tableServer{{"Herald", ""}, {"raw baseline", "baseline_"}, {"Centrifugo", "peer_"}}

// tableLayout is a scenario's table: its point column and, per figure,
// the CSV column for each server (by prefix).
type tableLayout struct {
	scenario string
	point    string // CSV column and heading of the point
	heading  string
	figures  []tableFigure
}

type tableFigure struct {
	heading  string
	cols     map[string]string // server prefix → CSV column
	decimals int               // rounded to so many; -1 = as in the file
}

// same is a figure whose column is the prefix plus one name for every
// server.
func same(heading, name string) tableFigure {
	return tableFigure{heading, map[string]string{"": name, "baseline_": "baseline_" + name, "peer_": "peer_" + name}, -1}
}

var tableLayouts = []tableLayout{
	{scenario: "idle", point: "conns", heading: "connections", figures: []tableFigure{
		same("RSS per connection (KB)", "kb_per_conn"),
		{"RSS holding them (KB)", map[string]string{"": "server_rss_after_kb", "baseline_": "baseline_rss_after_kb", "peer_": "peer_rss_after_kb"}, -1},
		{"errors", map[string]string{"": "errors", "baseline_": "baseline_errors", "peer_": "peer_errors"}, -1},
	}},
	{scenario: "fanout", point: "conns", heading: "connections", figures: []tableFigure{
		same("deliveries/s", "deliveries_per_s"),
		same("last delivery (ms)", "last_ms"),
		{"errors", map[string]string{"": "errors", "baseline_": "baseline_errors", "peer_": "peer_errors"}, -1},
	}},
	{scenario: "notify", point: "target_rate", heading: "messages/s asked", figures: []tableFigure{
		{"messages/s sent", map[string]string{"": "rate", "baseline_": "baseline_rate", "peer_": "peer_rate"}, 0},
		same("p50 (ms)", "p50_ms"),
		same("p99 (ms)", "p99_ms"),
		same("max (ms)", "max_ms"),
		{"CPU ms per 1,000", map[string]string{"": "server_cpu_ms_per_1k_msgs", "baseline_": "baseline_cpu_ms_per_1k_msgs", "peer_": "peer_cpu_ms_per_1k_msgs"}, -1},
		{"errors", map[string]string{"": "errors", "baseline_": "baseline_errors", "peer_": "peer_errors"}, -1},
	}},
}

// layoutOf tells a file's scenario from its header: each scenario's -csv
// columns are fixed.
func layoutOf(header []string) (tableLayout, error) {
	has := func(c string) bool { return slices.Contains(header, c) }
	switch {
	case has("kb_per_conn"):
		return tableLayouts[0], nil
	case has("deliveries_per_s") && !has("target_rate"):
		return tableLayouts[1], nil
	case has("target_rate") && has("batch"):
		return tableLayouts[2], nil
	}
	return tableLayout{}, errors.New("not an idle, fanout or notify CSV (-csv) file")
}

// writeTable writes the markdown table of one CSV file, whose rows
// (header first) are given; title names it.
func writeTable(w io.Writer, title string, rows [][]string) error {
	if len(rows) == 0 {
		return errors.New("empty file")
	}
	header := rows[0]
	lay, err := layoutOf(header)
	if err != nil {
		return err
	}
	col := func(name string) int { return slices.Index(header, name) }
	get := func(row []string, name string) string {
		if k := col(name); k >= 0 && k < len(row) {
			return row[k]
		}
		return ""
	}
	extra := ""
	if lay.scenario == "notify" {
		if b := get(rows[min(1, len(rows)-1)], "batch"); b != "" && b != "1" && len(rows) > 1 {
			extra = fmt.Sprintf(", up to %s messages per request: POST /v1/batch, Centrifugo's POST /api/batch", b)
		} else if len(rows) > 1 {
			extra = ", one request per message"
		}
	}
	fmt.Fprintf(w, "**%s** (%s%s)\n\n", title, lay.scenario, extra)
	heads := []string{lay.heading, "server"}
	for _, f := range lay.figures {
		heads = append(heads, f.heading)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(heads, " | "))
	aligns := make([]string, len(heads))
	for k := range aligns {
		aligns[k] = "---:"
	}
	aligns[1] = "---"
	fmt.Fprintf(w, "|%s|\n", strings.Join(aligns, "|"))
	for _, row := range rows[1:] {
		point := get(row, lay.point)
		for _, s := range tableServers {
			cells := []string{point, s.name}
			filled := false
			for _, f := range lay.figures {
				v := get(row, f.cols[s.prefix])
				if v != "" && f.heading != "errors" {
					filled = true
				}
				cells = append(cells, tableCell(v, f.decimals))
			}
			if filled {
				fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
			}
		}
	}
	return nil
}

// tableCell formats a CSV value for reading: large numbers grouped by
// thousands, "–" for none.
func tableCell(v string, decimals int) string {
	if v == "" {
		return "–"
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return v
	}
	if decimals >= 0 {
		v = strconv.FormatFloat(f, 'f', decimals, 64)
	}
	if f < 10000 {
		return v
	}
	s := strconv.FormatFloat(f, 'f', 0, 64)
	var b strings.Builder
	for k, r := range s {
		if k > 0 && (len(s)-k)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// runPeerInfo is "-peer-info centrifugo [-peer-bin PATH]": it makes sure
// the peer's binary is there (installing it when missing, as -peer
// would) and prints its version and the configuration runs give it,
// without secrets. scripts/bench.sh records it, and learns from its exit
// status whether the peer can be measured at all.
func runPeerInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald-load -peer-info", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("peer-bin", "", "the peer's binary, instead of the cached (or installed) one")
	if len(args) == 0 || args[0] != dialectCentrifugo {
		return fmt.Errorf("usage: herald-load -peer-info %s [-peer-bin PATH]", dialectCentrifugo)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	path, err := ensureCentrifugo(ctx, *bin, stderr)
	if err != nil {
		return fmt.Errorf("-peer %s: %w", dialectCentrifugo, err)
	}
	s := centrifugoSettings{HistorySize: centrifugoHistorySize, HistoryTTL: centrifugoHistoryTTL}
	_, err = fmt.Fprintf(stdout, "peer:    Centrifugo %s, module %s@%s; config per run: %s\n",
		centrifugoBuildVersion(ctx, path), centrifugoModule, centrifugoVersion, centrifugoConfigSummary(s))
	return err
}
