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
	t, err := readProcTimes(pid)
	return t.self, err
}

// procTimes is a process's CPU time so far, in milliseconds: its own
// (utime+stime) and that of the children it has waited for
// (cutime+cstime, their own descendants' included).
type procTimes struct {
	self, children int64
}

func readProcTimes(pid int) (procTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procTimes{}, fmt.Errorf("read CPU time: %w", err)
	}
	return parseStatTimes(b)
}

// cpuSource is a process, or a set of processes, whose CPU time counts in
// the server's: a node of the target (its own time), a process named by
// its pid in -cpu-procs, or every process whose command name (comm) is a
// given one, looked up afresh at each reading.
//
// A named process counts its own time and its waited-for children's, and
// so does every process of a name: the sum over the processes alive at a
// reading then holds everything that ever ran below them, because a
// process that exits passes its time (its children's included) to its
// parent's children times when the parent waits for it. That is how
// PostgreSQL's backends, which come and go with the pool's connections,
// are counted exactly: the postmaster waits for each. Only a process of
// the name whose parent is not of the name and that exits inside the
// window loses its ticks, and every process of that name counts, whoever
// it serves (other databases' backends, another test's).
type cpuSource struct {
	name string // for the report: "node 1", "postgres", "pid 123"
	pid  int    // a fixed process, or 0 for comm
	comm string // every process of this name (truncated by the kernel to 15 bytes)
	// children: count the pid's waited-for children too (comm sources
	// always do); nodes, which fork nothing, keep the old utime+stime.
	children bool
}

// cpuSample is a source's CPU time at one reading and the processes it
// found.
type cpuSample struct {
	ms    int64
	procs int
}

// read reads the source's CPU time now. Processes in skip (the nodes,
// already counted by pid) are left out of a comm source.
func (s cpuSource) read(skip map[int]bool) (cpuSample, error) {
	if s.pid != 0 {
		t, err := readProcTimes(s.pid)
		if err != nil {
			return cpuSample{}, fmt.Errorf("%s: %w", s.name, err)
		}
		ms := t.self
		if s.children {
			ms += t.children
		}
		return cpuSample{ms: ms, procs: 1}, nil
	}
	pids, err := pidsNamed(s.comm, skip)
	if err != nil {
		return cpuSample{}, err
	}
	var out cpuSample
	for _, pid := range pids {
		t, err := readProcTimes(pid)
		if err != nil {
			continue // it exited between the listing and the read
		}
		out.ms += t.self + t.children
		out.procs++
	}
	return out, nil
}

// pidsNamed lists the processes whose comm (/proc/<pid>/comm) is name,
// leaving out those in skip.
func pidsNamed(name string, skip map[int]bool) ([]int, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []int
	for _, pr := range procs {
		pid, err := strconv.Atoi(pr.Name())
		if err != nil || skip[pid] {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", pr.Name(), "comm"))
		if err != nil {
			continue // gone
		}
		if string(bytes.TrimSuffix(b, []byte("\n"))) == name {
			out = append(out, pid)
		}
	}
	return out, nil
}

// cpuWindow is the server's CPU time over a window, read at both ends so
// that what happens outside it (the connect phase, say) does not count:
// the sum over its sources, the target's nodes first.
type cpuWindow struct {
	sources    []cpuSource // none: the server's pid is not known, nothing is read
	skip       map[int]bool
	start, end []cpuSample
	err        error
}

// startCPU reads the sources' CPU time at the start of a window.
func startCPU(sources []cpuSource) *cpuWindow {
	w := &cpuWindow{sources: sources, skip: map[int]bool{}}
	for _, s := range sources {
		if s.pid != 0 {
			w.skip[s.pid] = true
		}
	}
	w.start, w.err = w.read()
	return w
}

func (w *cpuWindow) read() ([]cpuSample, error) {
	out := make([]cpuSample, len(w.sources))
	for i, s := range w.sources {
		var err error
		if out[i], err = s.read(w.skip); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stop reads the CPU time at the end of the window.
func (w *cpuWindow) stop() {
	if w.err == nil {
		w.end, w.err = w.read()
	}
}

// result is the CPU time of a stopped window that lasted d, with its cost
// per 1,000 of msgs messages, or else a note saying why it is missing.
// With more than one source it lists each one's share.
func (w *cpuWindow) result(d time.Duration, msgs int64) (*cpuResult, string) {
	switch {
	case len(w.sources) == 0:
		return nil, "server CPU not measured: its pid is not known"
	case w.err != nil:
		return nil, "server CPU not measured: " + w.err.Error()
	}
	per1000 := func(ms int64) float64 {
		if msgs <= 0 {
			return 0
		}
		return float64(ms) * 1000 / float64(msgs)
	}
	c := &cpuResult{PID: w.sources[0].pid, WindowS: d.Seconds()}
	for i, s := range w.sources {
		ms := w.end[i].ms - w.start[i].ms
		c.Ms += ms
		if len(w.sources) > 1 {
			c.Parts = append(c.Parts, cpuPart{Name: s.name, PID: s.pid, Comm: s.comm,
				ProcsStart: w.start[i].procs, ProcsEnd: w.end[i].procs, Ms: ms, MsPer1000Msgs: per1000(ms)})
		}
	}
	c.Cores = float64(c.Ms) / 1000 / c.WindowS
	c.MsPer1000Msgs = per1000(c.Ms)
	return c, ""
}

// parseStatCPUms parses utime+stime out of a /proc/<pid>/stat line.
func parseStatCPUms(b []byte) (int64, error) {
	t, err := parseStatTimes(b)
	return t.self, err
}

// parseStatTimes parses utime+stime and cutime+cstime out of a
// /proc/<pid>/stat line.
func parseStatTimes(b []byte) (procTimes, error) {
	// "pid (comm) state ppid …": comm may hold spaces and parentheses, so
	// the fields are counted from the last ')'. After it come field 3
	// (state) onwards; utime, stime, cutime and cstime are fields 14 to 17.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procTimes{}, errors.New("read CPU time: /proc/<pid>/stat has no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procTimes{}, fmt.Errorf("read CPU time: /proc/<pid>/stat has %d fields after the command", len(f))
	}
	var ticks [4]int64
	for k, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return procTimes{}, fmt.Errorf("read CPU time: %w", err)
		}
		ticks[k] = v
	}
	return procTimes{
		self:     (ticks[0] + ticks[1]) * 1000 / clockTicks,
		children: (ticks[2] + ticks[3]) * 1000 / clockTicks,
	}, nil
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
