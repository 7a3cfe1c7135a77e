#!/usr/bin/env bash
# cluster.sh measures Herald as a cluster beside one node, with the same
# load tool: it starts NODES Herald processes on loopback sharing a store
# and a broker, runs herald-load's fanout and notify scenarios with its
# clients spread over the nodes (-url a,b,c), prints the summaries, and
# stops the nodes.
#
#   scripts/cluster.sh one                                  # 1 node, SQLite, in-process bus
#   scripts/cluster.sh redis  postgres://…?search_path=s    # NODES nodes, PostgreSQL + Redis
#   scripts/cluster.sh nats   postgres://…?search_path=s    # NODES nodes, PostgreSQL + NATS
#
# CONNS (3000), MSG_RATE (1000/s), DURATION (10s), NODES (3), REDIS_URL and
# NATS_URL (the local defaults) tune it. The schema in the DSN must exist
# and be empty or Herald's. Everything runs on this machine: the nodes,
# the broker, PostgreSQL and the load tool share its cores, so compare
# rows of one run, not absolute numbers across machines.
set -euo pipefail
mode=${1:?usage: cluster.sh one|redis|nats [postgres-dsn]}
dsn=${2:-}
conns=${CONNS:-3000}; rate=${MSG_RATE:-1000}; duration=${DURATION:-10s}
nodes=${NODES:-3}; broker=""
case $mode in
one) nodes=1 ;;
redis) broker=${REDIS_URL:-redis://127.0.0.1:6379/0} ;;
nats) broker=${NATS_URL:-nats://127.0.0.1:4222} ;;
*) echo "unknown mode $mode (want one, redis or nats)" >&2; exit 2 ;;
esac
if [ "$mode" != one ] && [ -z "$dsn" ]; then echo "$mode needs a postgres:// DSN" >&2; exit 2; fi
[ "$mode" = one ] && dsn=""

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/herald" ./cmd/herald
go build -o "$work/herald-load" ./cmd/herald-load
export HERALD_TOKEN_SECRET=cluster-bench-secret-0123456789abcdef0123
export HERALD_API_KEY=cluster-bench-api-key-0123456789abcdef
urls=()
for i in $(seq 1 "$nodes"); do
	port=$((18080 + i))
	HERALD_ADDR=127.0.0.1:$port HERALD_DB="$work/node$i.db" HERALD_STORE=$dsn HERALD_BROKER=$broker \
		HERALD_CLUSTER=bench$$ HERALD_NODE_ID=node$i HERALD_LOG_LEVEL=warn HERALD_CONNECT_RATE=0 \
		"$work/herald" serve >"$work/node$i.log" 2>&1 &
	urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
	for _ in $(seq 1 100); do curl -sf "$u/readyz" >/dev/null && break; sleep 0.1; done
done
list=$(IFS=,; echo "${urls[*]}")
echo "== $mode, $nodes node(s): fanout to $conns connections"
"$work/herald-load" -url "$list" -scenario fanout -conns "$conns" -messages 5 -workers 3 2>&1 |
	grep -E '^(broadcast|connect latency|errors)'
echo "== $mode, $nodes node(s): notify at $rate/s"
"$work/herald-load" -url "$list" -scenario notify -conns "$conns" -msg-rate "$rate" -duration "$duration" -workers 3 2>&1 |
	grep -E '^(notify|server cpu|delivery latency|errors|connect latency)'
