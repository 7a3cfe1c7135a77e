// Command herald-load is a load generator for Herald deployments: it holds
// many WebSocket connections, or Server-Sent Events streams with
// -transport sse (spread over worker processes and source addresses), and
// measures the server's memory per idle connection, broadcast fan-out,
// notification latency, connect/disconnect churn and a storm of clients
// reconnecting at once with resume.
//
//	herald-load -scenario idle -conns 19000 -hold 20s
//
// Run "herald-load -h" for every flag. main only wires: the coordinator
// lives in run, which tests call directly; a worker process (the same
// binary re-executed with -worker) lives in runWorker; the raw baseline
// server that -baseline compares with ("-serve-baseline ADDR", also the
// same binary re-executed) in serveBaseline; the peer that -peer
// compares with in peer.go; "-plot" in runPlot; "-table" in runTable;
// "-peer-info" in runPeerInfo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	if isWorker(os.Args, os.Getenv) {
		os.Exit(workerMain())
	}
	if isBaseline(os.Args) {
		os.Exit(baselineMain(os.Args, os.Getenv))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "herald-load:", err)
		os.Exit(1)
	}
}

func isWorker(args []string, getenv func(string) string) bool {
	return getenv(workerEnv) == "1" || len(args) > 1 && args[1] == "-worker"
}

// workerMain runs a worker process. Ctrl-C reaches the whole process group;
// workers ignore it and let the coordinator stop them in order (they also
// stop when their stdin closes, so a killed coordinator leaves nothing).
func workerMain() int {
	signal.Ignore(os.Interrupt)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := runWorker(ctx, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "herald-load worker:", err)
		return 1
	}
	return 0
}

// run is the coordinator: it parses args, starts the workers, drives the
// scenario and prints the result to stdout. Progress goes to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "-plot":
			return runPlot(args[2:], stderr)
		case "-table":
			return runTable(args[2:], stdout)
		case "-peer-info":
			return runPeerInfo(ctx, args[2:], stdout, stderr)
		}
	}
	stderr = &syncWriter{w: stderr} // progress and worker output interleave
	cfg, err := parseConfig(args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var peerBin string
	if cfg.Peer != "" {
		// Before the run's timeout starts: the first install takes minutes.
		if peerBin, err = ensureCentrifugo(ctx, cfg.PeerBin, stderr); err != nil {
			return fmt.Errorf("-peer %s: %w", cfg.Peer, err)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("run took longer than -timeout %v", cfg.Timeout))
	defer cancel()

	var res *result
	var runErr error
	if cfg.Baseline || cfg.Peer != "" {
		res, runErr = runSideBySide(ctx, cfg, peerBin, stderr)
	} else {
		res, runErr = (&runner{cfg: cfg, stderr: stderr}).run(ctx)
	}
	if res != nil {
		if err := writeResult(stdout, res, cfg.JSON); err != nil {
			return errors.Join(runErr, fmt.Errorf("write result: %w", err))
		}
		// A sweep's CSV gets only complete runs: a run that was cut short
		// would plot as a point that measured something else.
		if cfg.CSV != "" && runErr == nil {
			if err := appendCSV(cfg.CSV, res); err != nil {
				return err
			}
		}
	}
	if runErr != nil && ctx.Err() != nil {
		return fmt.Errorf("stopped early: %w", context.Cause(ctx))
	}
	return runErr
}

// syncWriter serializes writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// stopGrace is how long workers get to close their connections and report
// before they are killed.
const stopGrace = 20 * time.Second
