package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
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

func TestParseStatTimes(t *testing.T) {
	// utime 250, stime 37, cutime 1000, cstime 5.
	line := "4242 (postgres) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 1000 5 20 0 12 0 100 123456 789\n"
	got, err := parseStatTimes([]byte(line))
	if err != nil || got != (procTimes{self: 2870, children: 10050}) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// A child's CPU time passes to its parent's children times once the
// parent has waited for it: what lets -cpu-procs postgres count the
// backends that exit during a window.
func TestChildTimesPassToParent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child that spins for 50ms of CPU")
	}
	before, err := readProcTimes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), spinEnv+"=50")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	after, err := readProcTimes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := after.children - before.children; got < 50 {
		t.Fatalf("children's CPU time grew by %d ms, want at least the child's 50", got)
	}
}

// spinEnv makes this test binary (see TestMain) burn the given number of
// milliseconds of its own CPU time, then exit.
const spinEnv = "HERALD_LOAD_TEST_SPIN_MS"

// spin burns CPU until the process has used ms milliseconds of it, by
// its own /proc reading (reading it is the work): a count, not a
// wall-clock wait.
func spin(ms int64) {
	for {
		if t, err := readProcTimes(os.Getpid()); err != nil || t.self >= ms {
			return
		}
	}
}

func TestCPUWindowSources(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc/self/comm:", err)
	}
	self := os.Getpid()
	name := strings.TrimSpace(string(comm))
	// This process by pid and by its name: the name leaves it out, since
	// it is counted by pid already.
	sources := []cpuSource{{name: "node 1", pid: self}, {name: name, comm: name}, {name: "none", comm: "no-such-process"}}
	w := startCPU(sources)
	w.stop()
	c, note := w.result(time.Second, 1000)
	if c == nil || len(c.Parts) != 3 || c.PID != self {
		t.Fatalf("result %+v, %s", c, note)
	}
	if p := c.Parts[2]; p.ProcsStart != 0 || p.ProcsEnd != 0 || p.Ms != 0 {
		t.Fatalf("no-such-process: %+v", p)
	}
	pids, err := pidsNamed(name, map[int]bool{self: true})
	if err != nil || slices.Contains(pids, self) {
		t.Fatalf("pidsNamed(%q) = %v, %v: holds the skipped pid", name, pids, err)
	}
	if pids, _ := pidsNamed(name, nil); !slices.Contains(pids, self) {
		t.Fatalf("pidsNamed(%q) = %v: misses this process %d", name, pids, self)
	}
	if c, note := startCPU(nil).result(time.Second, 1); c != nil || note == "" {
		t.Fatalf("no sources: %+v %q", c, note)
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
