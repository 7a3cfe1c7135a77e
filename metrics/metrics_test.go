package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestSeries(t *testing.T) {
	m := New(Sources{
		Version:     "v-test",
		Connections: func() int { return 3 },
		Queues:      func() (int, int, int) { return 5, 700, 400 },
		Ready:       func() bool { return true },

		ClusterCounts:   func() (uint64, uint64) { return 40, 2 },
		ReplicaComplete: func() bool { return true },
	})
	m.Opened("websocket")
	m.Closed("websocket", 4008, "send queue full")
	m.Closed("sse", 3999, "") // a client's own code: bucketed
	m.Resumed("replayed", 7)
	m.QueueWait(3 * time.Millisecond)
	m.Published(2, 5, 1, time.Millisecond)
	m.StoreOp("append", time.Millisecond, true)
	m.AuthFailed("expired")
	m.RateLimited("connect")
	out := scrape(t, m)
	for _, want := range []string{
		`herald_build_info{version="v-test"} 1`,
		`herald_connections 3`,
		`herald_connections_opened_total{transport="websocket"} 1`,
		`herald_connections_closed_total{code="4008",transport="websocket"} 1`,
		`herald_connections_closed_total{code="other",transport="sse"} 1`,
		`herald_resumes_total{outcome="replayed"} 1`,
		`herald_replayed_messages_total 7`,
		`herald_send_queue_wait_seconds_count 1`,
		`herald_messages_published_total 2`,
		`herald_deliveries_total 5`,
		`herald_delivery_failures_total 1`,
		`herald_publish_duration_seconds_count 1`,
		`herald_store_duration_seconds_count{op="append"} 1`,
		`herald_store_errors_total{op="append"} 1`,
		`herald_auth_failures_total{kind="expired"} 1`,
		`herald_rate_limited_total{limit="connect"} 1`,
		`herald_send_queue_frames 5`,
		`herald_send_queue_bytes 700`,
		`herald_send_queue_max_bytes 400`,
		`herald_ready 1`,
		`herald_cluster_counts_total{source="replica"} 40`,
		`herald_cluster_counts_total{source="registry"} 2`,
		`herald_cluster_replica_complete 1`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// Two Heralds in one process keep their own counters.
func TestNoSharedState(t *testing.T) {
	a, b := New(Sources{}), New(Sources{})
	a.Published(1, 0, 0, 0)
	if out := scrape(t, b); !strings.Contains(out, "herald_messages_published_total 0") {
		t.Fatal("b sees a's counter")
	}
}
