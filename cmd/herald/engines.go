package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/api"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/nats"
	"github.com/herald-gw/herald/postgres"
	"github.com/herald-gw/herald/redis"
	"github.com/herald-gw/herald/sqlite"
)

// openStore opens the store cfg names: PostgreSQL (HERALD_STORE), the
// SQLite file (HERALD_DB), or memory (":memory:").
func openStore(ctx context.Context, cfg config, log *slog.Logger) (herald.Store, error) {
	switch {
	case cfg.Store != "":
		s, err := postgres.Open(ctx, cfg.Store, postgres.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", redactURL(cfg.Store), err)
		}
		return s, nil
	case cfg.DB == ":memory:":
		return memory.New(), nil
	}
	s, err := sqlite.Open(ctx, cfg.DB, sqlite.WithCheckTimeout(cfg.DBCheck), sqlite.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// openRegistry returns the cluster's connection registry — in PostgreSQL,
// beside the store — when the node has a broker, that is when it is one
// of a cluster; nil for a node alone, whose hub is the whole registry.
func openRegistry(cfg config, store herald.Store) herald.Registry {
	pg, ok := store.(*postgres.Store)
	if cfg.Broker == "" || !ok {
		return nil
	}
	return pg.Registry(cfg.RegistryTTL)
}

// broker is a Broker that can also say whether its connection works.
type broker interface {
	herald.Broker
	Ready() error
}

// openBroker connects to the bus cfg names, or returns the in-process
// one: a single node has no other node to carry messages to.
func openBroker(ctx context.Context, cfg config, node string, log *slog.Logger) (broker, error) {
	switch {
	case strings.HasPrefix(cfg.Broker, "redis://"), strings.HasPrefix(cfg.Broker, "rediss://"):
		redis.LogTo(log)
		b, err := redis.New(ctx, cfg.Broker, redis.Options{Prefix: cfg.Cluster + ":", Node: node, Log: log})
		if err != nil {
			return nil, fmt.Errorf("broker %s: %w", redactURL(cfg.Broker), err)
		}
		return b, nil
	case cfg.Broker != "":
		b, err := nats.New(ctx, cfg.Broker, nats.Options{Prefix: cfg.Cluster, Node: node, Log: log})
		if err != nil {
			return nil, fmt.Errorf("broker %s: %w", redactURL(cfg.Broker), err)
		}
		return b, nil
	}
	return alwaysReady{memory.NewBus().Node()}, nil
}

type alwaysReady struct{ *memory.Broker }

func (alwaysReady) Ready() error { return nil }

// nodeName is this node's name in the cluster: HERALD_NODE_ID, or the
// host name and a random suffix, so two processes on one host differ.
func nodeName(cfg config) string {
	if cfg.NodeID != "" {
		return cfg.NodeID
	}
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, host)
	if len(name) > 48 {
		name = name[:48]
	}
	return strings.TrimLeft(name+"-", "-") + hex.EncodeToString(b[:])
}

// readiness is /readyz's question put to the store and the broker.
type readiness struct {
	store  interface{ Ready() error }
	broker broker
}

func (r readiness) Ready() error {
	if err := r.store.Ready(); err != nil {
		return err
	}
	if err := r.broker.Ready(); err != nil {
		return &api.Unready{What: "broker", Err: err}
	}
	return nil
}

// redactURL hides a URL's password, for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// storeName names the store in the banner and logs: the PostgreSQL URL
// without its password, or the SQLite file.
func storeName(cfg config) string {
	if cfg.Store != "" {
		return redactURL(cfg.Store)
	}
	return cfg.DB
}
