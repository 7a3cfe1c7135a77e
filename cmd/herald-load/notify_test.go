package main

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"
)

func TestParseStatCPUms(t *testing.T) {
	// A command name with spaces and a ')' of its own; utime 250, stime 37.
	line := "4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 12 0 100 123456 789 18446744073709551615\n"
	got, err := parseStatCPUms([]byte(line))
	if err != nil || got != 2870 {
		t.Fatalf("got %d, %v; want 2870", got, err)
	}
	if _, err := parseStatCPUms([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("short line parsed")
	}
}

func TestReadCPUmsSelf(t *testing.T) {
	if ms, err := readCPUms(os.Getpid()); err != nil || ms < 0 {
		t.Fatalf("own CPU: %d, %v", ms, err)
	}
	if _, err := readCPUms(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

// The notify CSV row carries the batch size, requests/s and the server's
// CPU per 1,000 messages (empty when not measured).
func TestCSVColumnsNotify(t *testing.T) {
	n := &notifyResult{TargetRate: 5000, Batch: 100, RequestRate: 1234.5, Sent: 50000,
		ServerCPU: &cpuResult{Ms: 4000, MsPer1000Msgs: 80}}
	header, row := csvColumns(&result{Scenario: "notify", Notify: n})
	rows := [][]string{header, row}
	for col, want := range map[string]string{"batch": "100", "requests_per_s": "1234.50", "server_cpu_ms": "4000", "server_cpu_ms_per_1k_msgs": "80.00"} {
		if got := csvField(t, rows, col); got != want {
			t.Errorf("%s = %q, want %q", col, got, want)
		}
	}
	n.ServerCPU = nil
	header, row = csvColumns(&result{Scenario: "notify", Notify: n})
	if got := csvField(t, [][]string{header, row}, "server_cpu_ms_per_1k_msgs"); got != "" {
		t.Errorf("unmeasured CPU = %q, want empty", got)
	}
}

func TestBatchBody(t *testing.T) {
	users := []string{"a", `we"ird`}
	quoted := make([][]byte, len(users))
	for i, u := range users {
		quoted[i], _ = json.Marshal(u)
	}
	body := batchBody([]notifyMsg{{seq: 1, t: 10}, {seq: 2, t: 20}, {seq: 3, t: 30}}, quoted)
	var req struct {
		Messages []struct {
			User string `json:"user"`
			Data struct {
				T   int64 `json:"t"`
				Seq int64 `json:"seq"`
			} `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(req.Messages) != 3 {
		t.Fatalf("%s", body)
	}
	for i, m := range req.Messages {
		if m.User != users[i%2] || m.Data.Seq != int64(i+1) || m.Data.T != int64(10*(i+1)) {
			t.Fatalf("message %d: %+v in %s", i, m, body)
		}
	}
}

// pace hands out every message of the schedule exactly once, in order,
// in batches of at most -batch, each stamped. Counts only: how the
// messages fall into batches depends on the machine's timers.
func TestPaceBatches(t *testing.T) {
	for _, batch := range []int{1, 7} {
		r := &runner{cfg: config{MsgRate: 5000, Duration: 100 * time.Millisecond, Batch: batch, BatchWait: time.Millisecond}}
		jobs := make(chan []notifyMsg, 1000)
		r.pace(context.Background(), time.Now(), jobs)
		close(jobs)
		var seq int64
		for msgs := range jobs {
			if len(msgs) == 0 || len(msgs) > batch {
				t.Fatalf("batch %d: a job of %d messages", batch, len(msgs))
			}
			for _, m := range msgs {
				seq++
				if m.seq != seq {
					t.Fatalf("batch %d: seq %d, want %d", batch, m.seq, seq)
				}
				if (batch == 1) != (m.t == 0) { // batch 1: the sender stamps
					t.Fatalf("batch %d: message %+v", batch, m)
				}
			}
		}
		if seq != 500 {
			t.Fatalf("batch %d: %d messages, want 500", batch, seq)
		}
	}
}
