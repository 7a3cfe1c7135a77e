package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
)

// A run can measure up to three servers with the same load, one after
// the other, in one invocation: the target (-url, Herald), the raw
// baseline (-baseline: the least any server must do) and the peer (-peer
// centrifugo: what a user would pick instead). The baseline and the peer
// are children of this process, each started for its run and stopped
// before the next run starts, so that none holds CPU, memory or sockets
// while another is measured. Every run uses the same worker machinery,
// the same flags and the same users.

// sideServer is a server measured next to the target.
type sideServer struct {
	label string // "baseline" or "peer": progress lines are prefixed with it
	run   func(ctx context.Context, cfg config, stderr io.Writer) (*result, error)
}

// runSideBySide runs cfg's load against the baseline and/or the peer and
// against cfg.URL, and returns the latter's result with the others' and
// the comparisons attached. By default the others run first (baseline,
// then peer), so that Herald's run is the last thing the machine did, as
// in a run without them; -baseline-after puts them after the target,
// because on a small shared machine a later run can measure slower.
func runSideBySide(ctx context.Context, cfg config, peerBin string, stderr io.Writer) (*result, error) {
	var sides []sideServer
	if cfg.Baseline {
		sides = append(sides, sideServer{label: "baseline", run: runBaselineOnce})
	}
	if cfg.Peer != "" {
		sides = append(sides, sideServer{label: "peer", run: func(ctx context.Context, cfg config, stderr io.Writer) (*result, error) {
			return runPeerOnce(ctx, cfg, peerBin, stderr)
		}})
	}
	got := map[string]*result{}
	var errs []error
	runSides := func() {
		for _, s := range sides {
			if ctx.Err() != nil {
				return
			}
			r, err := s.run(ctx, cfg, stderr)
			got[s.label] = r
			errs = append(errs, err)
		}
	}
	attach := func(res *result) {
		res.Baseline, res.Peer = got["baseline"], got["peer"]
		res.VsBaseline, res.VsPeer = compare(res, res.Baseline), compare(res, res.Peer)
	}
	if !cfg.BaselineAfter {
		if runSides(); ctx.Err() != nil {
			res := &result{Scenario: cfg.Scenario, URL: cfg.URL.String(), Requested: cfg.Conns, Aborted: context.Cause(ctx).Error()}
			attach(res)
			return res, errors.Join(errs...)
		}
	}
	fmt.Fprintf(stderr, "target at %s: %s with %d connections\n", cfg.URL, cfg.Scenario, cfg.Conns)
	res, err := (&runner{cfg: cfg, stderr: stderr}).run(ctx)
	if res == nil {
		res = &result{Scenario: cfg.Scenario, URL: cfg.URL.String(), Requested: cfg.Conns}
	}
	errs = append(errs, err)
	if cfg.BaselineAfter && ctx.Err() == nil {
		runSides()
	}
	attach(res)
	return res, errors.Join(errs...)
}

// runBaselineOnce starts the baseline server, runs cfg's load against it
// and stops it again.
func runBaselineOnce(ctx context.Context, cfg config, stderr io.Writer) (*result, error) {
	fmt.Fprintln(stderr, "starting the raw baseline server")
	bp, err := startBaseline(ctx, stderr)
	if err != nil {
		return nil, err
	}
	res, err := runOnChild(ctx, cfg, bp, stderr, func(c *config) {
		if c.APIKey == "" {
			c.APIKey = "baseline" // it accepts any key; idle needs none
		}
	})
	if err != nil {
		err = fmt.Errorf("baseline run: %w", err)
	}
	return res, err
}

// runPeerOnce starts the peer (Centrifugo) with fresh secrets, runs cfg's
// load against it over its own protocol and API, and stops it again.
func runPeerOnce(ctx context.Context, cfg config, bin string, stderr io.Writer) (*result, error) {
	s, err := newCentrifugoSettings()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "starting the peer, Centrifugo %s (%s)\n", centrifugoVersion, bin)
	pp, err := startCentrifugo(ctx, bin, s, stderr)
	if err != nil {
		return nil, err
	}
	res, err := runOnChild(ctx, cfg, pp, stderr, func(c *config) {
		c.Dialect = dialectCentrifugo
		// Its own secret and key: Herald's never reach its config file.
		// Tokens are minted for the same users, with its secret.
		c.Secret, c.APIKey, c.TokenFile = s.Secret, s.APIKey, ""
	})
	if res != nil {
		res.Software = fmt.Sprintf("Centrifugo %s: %s", centrifugoBuildVersion(context.WithoutCancel(ctx), bin), centrifugoConfigSummary(s))
	}
	if err != nil {
		err = fmt.Errorf("peer run: %w", err)
	}
	return res, err
}

// runOnChild runs cfg's load against p (adjust sets what differs from
// the target's run) and stops p.
func runOnChild(ctx context.Context, cfg config, p *childProc, stderr io.Writer, adjust func(*config)) (*result, error) {
	defer p.stop() // on every path, Ctrl-C and panics included
	c := cfg
	u, err := url.Parse(p.url)
	if err != nil {
		return nil, fmt.Errorf("%s address %q: %w", p.name, p.url, err)
	}
	c.URL, c.URLs, c.PID = u, []*url.URL{u}, p.pid
	// One process: Herald's nodes and the processes behind them (its
	// database, its broker) are not its.
	c.PIDs, c.CPUProcs = nil, nil
	if c.LocalAddrs, err = localAddrs(cfg.localFlag, u.Hostname(), cfg.Conns); err != nil {
		return nil, err
	}
	adjust(&c)
	fmt.Fprintf(stderr, "%s at %s (pid %d): %s with %d connections\n", p.name, p.url, p.pid, cfg.Scenario, cfg.Conns)
	res, err := (&runner{cfg: c, stderr: &prefixWriter{w: stderr, prefix: p.name + " "}}).run(ctx)
	p.stop()
	return res, err
}
