package servicetest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// DefaultRedis and DefaultNATS are where tests look for Redis and NATS
// unless HERALD_TEST_REDIS / HERALD_TEST_NATS name others.
const (
	DefaultRedis = "redis://127.0.0.1:6379/0"
	DefaultNATS  = "nats://127.0.0.1:4222"
)

// Redis returns the URL of the test Redis and a key prefix of the test's
// own ("herald_test_<random>:"): code under test puts every key and channel
// under it, and the keys are deleted when the test ends.
func Redis(t testing.TB) (url, prefix string) {
	t.Helper()
	url = os.Getenv("HERALD_TEST_REDIS")
	if url == "" {
		url = DefaultRedis
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("servicetest: HERALD_TEST_REDIS: %v", err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		Missing(t, fmt.Sprintf("Redis is not reachable at %s: %v", redact(url), err))
		return "", ""
	}
	prefix = "herald_test_" + randomHex(6) + ":"
	t.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("servicetest: clean Redis keys %s*: %v", prefix, err)
		}
	})
	return url, prefix
}

// NATS returns the URL of the test NATS server (with JetStream) and a
// subject prefix of the test's own ("herald_test_<random>"); streams and
// key-value buckets whose names start with the prefix are deleted when
// the test ends.
func NATS(t testing.TB) (url, prefix string) {
	t.Helper()
	url = os.Getenv("HERALD_TEST_NATS")
	if url == "" {
		url = DefaultNATS
	}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second), nats.NoReconnect())
	if err != nil {
		Missing(t, fmt.Sprintf("NATS is not reachable at %s: %v", redact(url), err))
		return "", ""
	}
	prefix = "herald_test_" + randomHex(6)
	t.Cleanup(func() {
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return
		}
		for name := range js.StreamNames() {
			if len(name) >= len(prefix) && name[:len(prefix)] == prefix || len(name) > 3 && name[:3] == "KV_" && len(name[3:]) >= len(prefix) && name[3:3+len(prefix)] == prefix {
				_ = js.DeleteStream(name)
			}
		}
	})
	return url, prefix
}
