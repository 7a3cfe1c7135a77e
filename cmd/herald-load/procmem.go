package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// readRSSKB returns a process's resident set size in KiB (VmRSS).
func readRSSKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest)) // "12345 kB"
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat:
// 100 on every Linux architecture Go runs on (sysconf(_SC_CLK_TCK) would
// need cgo).
const clockTicks = 100

// readCPUms returns the CPU time a process has used so far, user plus
// system (utime+stime in /proc/<pid>/stat), in milliseconds, to the
// resolution of a clock tick (10ms).
func readCPUms(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	return parseStatCPUms(b)
}

// cpuWindow is a server's CPU time over a window, read at both ends so
// that what happens outside it (the connect phase, say) does not count.
type cpuWindow struct {
	pid        int // 0: not known, nothing is read
	start, end int64
	err        error
}

// startCPU reads pid's CPU time at the start of a window.
func startCPU(pid int) *cpuWindow {
	w := &cpuWindow{pid: pid}
	if pid != 0 {
		w.start, w.err = readCPUms(pid)
	}
	return w
}

// stop reads the CPU time at the end of the window.
func (w *cpuWindow) stop() {
	if w.pid != 0 && w.err == nil {
		w.end, w.err = readCPUms(w.pid)
	}
}

// result is the CPU time of a stopped window that lasted d, with its cost
// per 1,000 of msgs messages, or else a note saying why it is missing.
func (w *cpuWindow) result(d time.Duration, msgs int64) (*cpuResult, string) {
	switch {
	case w.pid == 0:
		return nil, "server CPU not measured: its pid is not known"
	case w.err != nil:
		return nil, "server CPU not measured: " + w.err.Error()
	}
	c := &cpuResult{PID: w.pid, Ms: w.end - w.start, WindowS: d.Seconds()}
	c.Cores = float64(c.Ms) / 1000 / c.WindowS
	if msgs > 0 {
		c.MsPer1000Msgs = float64(c.Ms) * 1000 / float64(msgs)
	}
	return c, ""
}

// parseStatCPUms parses utime+stime out of a /proc/<pid>/stat line.
func parseStatCPUms(b []byte) (int64, error) {
	// "pid (comm) state ppid …": comm may hold spaces and parentheses, so
	// the fields are counted from the last ')'. After it come field 3
	// (state) onwards; utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("read CPU time: /proc/<pid>/stat has no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time: /proc/<pid>/stat has %d fields after the command", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU time: %w", err)
		}
		ticks += v
	}
	return ticks * 1000 / clockTicks, nil
}

// serverPID finds the process listening on target's port, when target is
// on this machine: a socket in /proc/net/tcp{,6} in state LISTEN on that
// port, then the process holding that socket's inode among /proc/*/fd.
// Only processes we may inspect (our own user's, or all as root) are seen.
func serverPID(target *url.URL) (int, error) {
	host := target.Hostname()
	if !isLocalHost(host) {
		return 0, fmt.Errorf("%s is not this machine; pass -pid to measure the server's memory", host)
	}
	port := target.Port()
	if port == "" {
		port = map[string]string{"https": "443"}[target.Scheme]
		if port == "" {
			port = "80"
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0, fmt.Errorf("port %q: %w", port, err)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listenInodes(f, p, inodes); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no socket listens on port %d", p)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("find server process: %w", err)
	}
	self := os.Getpid()
	for _, pr := range procs {
		pid, err := strconv.Atoi(pr.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", pr.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // not ours to look at, or gone
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue
			}
			if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("a socket listens on port %d but no process we may inspect holds it; pass -pid", p)
}

// listenInodes adds the inodes of the LISTEN sockets on port found in a
// /proc/net/tcp-format file to inodes.
func listenInodes(file string, port int, inodes map[string]bool) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "0A" { // 0A = TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(fs[1], ":")
		if !ok {
			continue
		}
		if lp, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(lp) == port {
			inodes[fs[9]] = true
		}
	}
	return sc.Err()
}

// isLocalHost reports whether host names this machine.
func isLocalHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
