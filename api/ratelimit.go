package api

import (
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/herald-gw/herald"
)

// The abuse limits: a token bucket per client address for connects (/ws,
// /sse), and one per API key for the server API. Each is golang.org/x/time/rate
// fed with the server's clock, passed in, so tests step time rather than
// sleep.

const (
	// limiterShards splits the address limiter's map so that connects from
	// many addresses do not queue on one lock.
	limiterShards = 64
	// maxLimitedAddrs bounds the addresses the connect limit remembers at
	// once: about 200 bytes each, so some 13 MiB at most, whatever a flood
	// of distinct (IPv6) addresses does. Past it, entries are forgotten
	// (see addrLimiter.admit); forgetting one only hands its address a
	// fresh burst.
	maxLimitedAddrs = 1 << 16
	// ipv6LimitBits is the prefix an IPv6 client is counted by: a host
	// usually holds a whole /64 and can pick a new address in it for each
	// connect, so counting single addresses would limit nothing.
	ipv6LimitBits = 64
)

// bucket is one limited address's token bucket.
type bucket struct {
	lim  *rate.Limiter
	last time.Time // when the address was last seen
}

// addrShard is one part of the address limiter's map.
type addrShard struct {
	mu    sync.Mutex
	m     map[netip.Prefix]*bucket
	swept time.Time // when idle buckets were last dropped
}

// addrLimiter is a token bucket per client address (an IPv4 address or an
// IPv6 /64), in a bounded map. A bucket untouched for idle (the time it
// takes to refill from empty) is full again, indistinguishable from a new
// one, so it is dropped: periodically, when an address is added, and at
// once when a shard is full. When a shard is still full, it forgets an
// eighth of its entries, whichever the map hands out first: under a flood
// of distinct addresses the limit then errs towards letting a connect
// through rather than towards holding memory or refusing a stranger.
type addrLimiter struct {
	limit    rate.Limit
	burst    int
	idle     time.Duration // a bucket untouched this long is full
	sweep    time.Duration // how often a shard drops its idle buckets
	perShard int
	seed     maphash.Seed
	shards   [limiterShards]addrShard
}

// newAddrLimiter returns a limiter of perSecond connects with bursts of
// burst, remembering at most maxEntries addresses; nil when perSecond is
// 0 (no limit).
func newAddrLimiter(perSecond float64, burst, maxEntries int) *addrLimiter {
	if perSecond <= 0 {
		return nil
	}
	burst = burstOf(perSecond, burst)
	idle := time.Duration(math.Ceil(float64(burst) / perSecond * float64(time.Second)))
	l := &addrLimiter{
		limit:    rate.Limit(perSecond),
		burst:    burst,
		idle:     idle,
		sweep:    max(idle, time.Second),
		perShard: max(1, maxEntries/limiterShards),
		seed:     maphash.MakeSeed(),
	}
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Prefix]*bucket)
	}
	return l
}

// burstOf is the burst a limit of perSecond gets: burst, or one second's
// worth (at least 1) when unset, since a bucket of 0 would refuse all.
func burstOf(perSecond float64, burst int) int {
	if burst >= 1 {
		return burst
	}
	return max(1, int(math.Ceil(perSecond)))
}

// admit takes a token for key at now. It returns 0 when the request may
// go ahead, else how long until it may.
func (l *addrLimiter) admit(key netip.Prefix, now time.Time) time.Duration {
	sh := &l.shards[maphash.Comparable(l.seed, key)%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[key]
	if b == nil {
		if now.Sub(sh.swept) >= l.sweep || len(sh.m) >= l.perShard {
			sh.dropIdle(now, l.idle)
			sh.swept = now
		}
		if len(sh.m) >= l.perShard {
			sh.forget(len(sh.m) - l.perShard + max(1, l.perShard/8))
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		sh.m[key] = b
	}
	b.last = now
	return reserve(b.lim, now)
}

func (sh *addrShard) dropIdle(now time.Time, idle time.Duration) {
	for k, b := range sh.m {
		if now.Sub(b.last) >= idle {
			delete(sh.m, k)
		}
	}
}

func (sh *addrShard) forget(n int) {
	for k := range sh.m {
		if n <= 0 {
			return
		}
		delete(sh.m, k)
		n--
	}
}

// len reports how many addresses the limiter remembers.
func (l *addrLimiter) len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// reserve takes a token from lim at now, or, when there is none, takes
// nothing and returns how long until there is one.
func reserve(lim *rate.Limiter, now time.Time) time.Duration {
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Hour // a burst below 1; burstOf never makes one
	}
	d := r.DelayFrom(now)
	if d > 0 {
		r.CancelAt(now)
	}
	return d
}

// newKeyLimiters returns a bucket per API key name, or nil for no limit.
// The keys are known in advance, so the map never grows.
func newKeyLimiters(keys *KeySet, perSecond float64, burst int) map[string]*rate.Limiter {
	if perSecond <= 0 || keys == nil {
		return nil
	}
	m := make(map[string]*rate.Limiter, len(keys.keys))
	for _, k := range keys.keys {
		m[k.name] = rate.NewLimiter(rate.Limit(perSecond), burstOf(perSecond, burst))
	}
	return m
}

// tooMany is the 429 of a limit, with Retry-After in whole seconds (at
// least 1: 0 would invite an immediate retry).
func tooMany(w http.ResponseWriter, wait time.Duration, what string) error {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return herald.Errorf(herald.ETooManyRequests, "too many %s; retry in %d s", what, secs)
}

// connectKey returns what the connect limit counts r against: the client's
// address, an IPv6 one as its /64. The client is the TCP peer, or, when
// the peer is a trusted proxy, the nearest address in X-Forwarded-For
// that is not one. ok is false when r is not limited: the client is on
// loopback, a private network or link-local — in practice a reverse
// proxy or load balancer speaking for many clients (limiting it would
// limit the whole site; trust it to limit the clients behind it) or a
// client of an internal network — or its address cannot be read.
func connectKey(r *http.Request, trusted []netip.Prefix) (key netip.Prefix, ok bool) {
	a, ok := peerAddr(r)
	if !ok {
		return netip.Prefix{}, false
	}
	if isTrusted(a, trusted) {
		a = forwardedFor(r, a, trusted)
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
		return netip.Prefix{}, false
	}
	bits := 32
	if a.Is6() {
		bits = ipv6LimitBits
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// peerAddr is r's TCP peer address.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(r.RemoteAddr)
	return a.Unmap(), err == nil
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor walks X-Forwarded-For from the right — the entries the
// trusted proxies appended — and returns the first address that is not a
// trusted proxy: the client as the outermost trusted proxy saw it.
// Entries further left were written by the client and could be anything.
// When all are trusted, it is the leftmost; when one does not parse, the
// last good one (peer when there is none).
func forwardedFor(r *http.Request, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	values := r.Header.Values("X-Forwarded-For")
	a := peer
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			next, ok := parseForwarded(strings.TrimSpace(parts[j]))
			if !ok {
				return a
			}
			a = next
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	return a
}

// parseForwarded parses one X-Forwarded-For entry: an address, with a
// port for some proxies ("203.0.113.7:41234", "[2001:db8::1]:41234").
func parseForwarded(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
