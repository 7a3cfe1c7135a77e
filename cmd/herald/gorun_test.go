package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// "go run ./cmd/herald" is the README's first command. go run does not pass
// a SIGTERM on to the program it built, so before Herald watched its parent
// a "kill" of go run left Herald running, holding its port and database.
func TestGoRunStopsWithParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("finds the child through /proc")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	if testing.Short() {
		t.Skip("builds Herald with go run")
	}
	cmd := exec.Command(goBin, "run", ".")
	env := testEnv(t, "HERALD_DRAIN_TIMEOUT", "0s", "HERALD_DB", filepath.Join(t.TempDir(), "gorun.db"))
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				started <- true
			}
		}
		started <- false
	}()
	select {
	case ok := <-started:
		if !ok {
			t.Fatal("go run ended before Herald listened")
		}
	case <-time.After(5 * time.Minute):
		t.Fatal("go run did not start Herald")
	}
	child := childOf(t, cmd.Process.Pid)
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for deadline := time.Now().Add(30 * time.Second); alive(child); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Herald (pid %d) outlived go run", child)
		}
	}
}

// childOf returns the pid of the one child of parent.
func childOf(t *testing.T, parent int) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := procStat(pid); ppid == parent {
			return pid
		}
	}
	t.Fatalf("go run (pid %d) has no child", parent)
	return 0
}

// procStat returns a process's parent and state from /proc/PID/stat.
func procStat(pid int) (ppid int, state string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	// The command name is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0]
}

// alive reports a process that exists and is not a zombie.
func alive(pid int) bool {
	_, state := procStat(pid)
	return state != "" && state != "Z"
}
