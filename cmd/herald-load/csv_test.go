package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAppendCSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latency.csv")
	for _, rate := range []float64{1000, 2000} {
		res := &result{Scenario: "notify", Users: 10, Connect: connectResult{Established: 10},
			Notify:  &notifyResult{TargetRate: rate, Rate: rate - 1, Sent: 100, Delivered: 100, Expected: 100},
			Latency: &latencyResult{P50: 1.5, P99: 12.25}}
		if err := appendCSV(path, res); err != nil {
			t.Fatal(err)
		}
	}
	rows := readCSVFile(t, path)
	if len(rows) != 3 {
		t.Fatalf("rows %q", rows)
	}
	if got := csvField(t, rows, "target_rate"); got != "1000" {
		t.Errorf("target_rate %q", got)
	}
	if got := csvField(t, rows, "p99_ms"); got != "12.25" {
		t.Errorf("p99_ms %q", got)
	}
	if rows[2][1] != "10" || rows[2][2] != "2000" {
		t.Errorf("second row %q", rows[2])
	}

	// Another scenario's row does not go into this file.
	err := appendCSV(path, &result{Scenario: "idle"})
	if err == nil || !strings.Contains(err.Error(), "one file per scenario") {
		t.Fatalf("err = %v", err)
	}
	if rows := readCSVFile(t, path); len(rows) != 3 {
		t.Fatalf("file changed: %q", rows)
	}
}

// An idle run without -baseline leaves the baseline columns empty, so
// that -plot skips them rather than drawing zeros.
func TestCSVColumnsIdle(t *testing.T) {
	header, row := csvColumns(&result{Scenario: "idle", Connect: connectResult{Established: 5},
		Server: serverResult{RSSBeforeKB: 100, RSSAfterKB: 110, Conns: 5, PerConnKB: 2}})
	if len(header) != len(row) {
		t.Fatalf("%d columns, %d values", len(header), len(row))
	}
	for i, h := range header {
		if strings.HasPrefix(h, "baseline_") || strings.HasPrefix(h, "ratio_") {
			if row[i] != "" {
				t.Errorf("%s = %q, want empty", h, row[i])
			}
		}
	}
}
