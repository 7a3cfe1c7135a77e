#!/usr/bin/env bash
# cluster.sh measures Herald as a cluster beside one node, with the same
# load tool (cmd/herald-load): it starts Herald processes on loopback, one
# node on SQLite or NODES nodes sharing PostgreSQL and a broker, runs a
# scenario with the clients spread over the nodes (-url a,b,c: client i on
# node i mod NODES), prints the tool's table, and stops the nodes.
#
# The first numbers (docs/benchmarks.md, "Three nodes (issue 13): first
# numbers"): fan-out and notify with CONNS (3000) connections at MSG_RATE
# (1000/s) on one setup:
#
#   scripts/cluster.sh one                        # 1 node, SQLite, in-process bus
#   scripts/cluster.sh redis [postgres-dsn]       # NODES nodes, PostgreSQL + Redis
#   scripts/cluster.sh nats  [postgres-dsn]       # NODES nodes, PostgreSQL + NATS
#
# Issue 13's measurements, each setup one after the other in one run so
# that their ratios mean something (BROKERS, "redis nats" by default, says
# which clusters):
#
#   scripts/cluster.sh idle     # CONNS (45000) idle connections on NODES nodes, RSS per connection per
#                               # node and the CPU the cluster spends on them (nodes, broker, PostgreSQL);
#                               # first CONNS/NODES on one node (SQLite), the same per-node load
#   scripts/cluster.sh fanout   # MESSAGES (10) broadcasts to CONNS (15000) connections: one node, then
#                               # the clusters
#   scripts/cluster.sh notify   # MSG_RATE (5000/s) for DURATION (15s) to CONNS (10000) users, one
#                               # connection each: one node, then the clusters, whose server CPU is summed
#                               # over the nodes, the broker and every PostgreSQL process (-cpu-procs)
#   scripts/cluster.sh scale    # idle, fanout and notify
#
# Without a DSN, every cluster gets a schema of its own in PG_URL's
# database (postgres://postgres@127.0.0.1:5432/test), created before its
# nodes start and dropped after they stop (psql must be on PATH). The one
# node keeps its SQLite file in a temporary directory.
#
# Before each measurement it waits until the 1-minute load average is
# below LOAD_MAX (1.5), polling every 10 s for LOAD_WAIT seconds at most
# (900) and then measuring anyway, and prints the load average it measured
# at: on a shared machine the other work is the largest error. It prints
# the machine, the commit and every herald-load command it runs.
#
# Other knobs: NODES (3), RATE (connects/s: 1000 for idle, 3000 otherwise),
# HOLD (idle, 60s: past two of Herald's 25 s pings), PER_WORKER (9000: each
# load-tool process stays well under the 20,000 open-file limit), REDIS_URL
# and NATS_URL (the local defaults), REV (build Herald from this commit,
# e.g. HEAD, through git archive, rather than from the working tree, whose
# uncommitted changes would otherwise be measured too; the load tool is
# always the working tree's), OUT (a directory to keep each run's table,
# progress and node logs in), PROFILE=1 (the nodes get admin listeners on
# 127.0.0.1:19081 and up, and a 10-second CPU profile of node 1 is taken
# during each notify run, through /debug/pprof/profile, into OUT), BATCH (notify: send
# through POST /v1/batch, up to BATCH messages a request, a partial batch
# going after BATCH_WAIT, 3ms; the wait counts in the latency).
#
# Everything runs on this machine: the nodes, the broker, PostgreSQL and
# the load tool share its cores, so compare rows of one run, not absolute
# numbers across machines.
set -euo pipefail
mode=${1:?usage: cluster.sh one|redis|nats [postgres-dsn] | idle|fanout|notify|scale}
dsn_arg=${2:-}
nodes=${NODES:-3}
brokers=${BROKERS:-redis nats}
pg_url=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
load_max=${LOAD_MAX:-1.5}
load_wait=${LOAD_WAIT:-900}
per_worker=${PER_WORKER:-9000}

work=$(mktemp -d)
out=${OUT:-$work/out}
mkdir -p "$out"
node_pids=()
schemas=()
cleanup() {
	stop_nodes
	for s in "${schemas[@]}"; do drop_schema "$s"; done
	rm -rf "$work"
}
trap cleanup EXIT

# --- build -------------------------------------------------------------

# Herald from REV when it is set, else from the working tree; the load
# tool always from the working tree, beside this script.
src=.
rev_note="working tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -n "$(git status --porcelain -- . 2>/dev/null | grep -v '^??' || true)" ]; then
	rev_note="$rev_note, with uncommitted changes"
fi
if [ -n "${REV:-}" ]; then
	src=$work/src
	mkdir -p "$src"
	git archive "$REV" | tar -x -C "$src"
	rev_note="$(git rev-parse --short "$REV") ($(git log -1 --format='%cd' --date=iso "$REV"))"
fi
(cd "$src" && go build -o "$work/herald" ./cmd/herald)
go build -o "$work/herald-load" ./cmd/herald-load

export HERALD_TOKEN_SECRET=cluster-bench-secret-0123456789abcdef0123
export HERALD_API_KEY=cluster-bench-api-key-0123456789abcdef

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'): scripts/cluster.sh $mode"
echo "# herald: $rev_note; herald-load: $(git log -1 --format=%h -- cmd/herald-load 2>/dev/null)$(git status --porcelain -- cmd/herald-load 2>/dev/null | grep -q . && echo ' + uncommitted changes'); $(go version | cut -d' ' -f3)"
echo "# machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), ulimit -n $(ulimit -n)"

# --- machine load --------------------------------------------------------

# wait_quiet waits for the 1-minute load average to drop below load_max
# (giving up after load_wait seconds) and prints the one measured at.
wait_quiet() {
	local waited=0 l1
	while :; do
		read -r l1 _ </proc/loadavg
		awk -v l="$l1" -v m="$load_max" 'BEGIN { exit !(l < m) }' && break
		if [ "$waited" -ge "$load_wait" ]; then
			echo "# load average still $l1 after ${waited}s of waiting: measuring anyway"
			break
		fi
		sleep 10
		waited=$((waited + 10))
	done
	echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (waited ${waited}s)"
}

# --- PostgreSQL schemas ----------------------------------------------------

psql_cmd() { psql "$pg_url" -v ON_ERROR_STOP=1 -q "$@"; }

# new_dsn creates a fresh schema and sets dsn to pg_url with it.
new_dsn() {
	local s="herald_bench_$$_${#schemas[@]}_$(date +%s)"
	psql_cmd -c "create schema $s" >/dev/null
	schemas+=("$s")
	dsn="$pg_url?sslmode=disable&search_path=$s"
}

drop_schema() { psql_cmd -c "drop schema if exists $1 cascade" >/dev/null 2>&1 || true; }

# --- nodes -------------------------------------------------------------------

# start_nodes LABEL N STORE BROKER starts N nodes (STORE empty: SQLite
# files; BROKER empty: the in-process bus) and sets urls and list.
start_nodes() {
	local label=$1 n=$2 store=$3 broker=$4 i port admin
	urls=()
	node_pids=()
	for i in $(seq 1 "$n"); do
		port=$((18080 + i))
		admin=""
		[ "${PROFILE:-0}" = 1 ] && admin=127.0.0.1:$((19080 + i))
		HERALD_ADDR=127.0.0.1:$port HERALD_DB="$work/$label-node$i.db" HERALD_STORE=$store HERALD_BROKER=$broker \
			HERALD_CLUSTER=bench$$-$label HERALD_NODE_ID=node$i HERALD_LOG_LEVEL=warn HERALD_CONNECT_RATE=0 \
			HERALD_ADMIN_ADDR=$admin HERALD_DRAIN_TIMEOUT=1s \
			"$work/herald" serve >"$out/$label-node$i.log" 2>&1 &
		node_pids+=($!)
		urls+=("http://127.0.0.1:$port")
	done
	for u in "${urls[@]}"; do
		for _ in $(seq 1 300); do curl -sf "$u/readyz" >/dev/null && break; sleep 0.1; done
		curl -sf "$u/readyz" >/dev/null || { echo "node $u is not ready; its log:" >&2; cat "$out/$label"-node*.log >&2; exit 1; }
	done
	list=$(IFS=,; echo "${urls[*]}")
}

stop_nodes() {
	[ "${#node_pids[@]}" -gt 0 ] || return 0
	kill "${node_pids[@]}" 2>/dev/null || true
	wait "${node_pids[@]}" 2>/dev/null || true
	node_pids=()
}

# setup LABEL starts LABEL's nodes: "one" (1 node, SQLite, in-process
# bus), "redis" or "nats" (NODES nodes, a fresh PostgreSQL schema and that
# broker). It sets cpu_procs to the processes other than the nodes whose
# CPU counts in the server's, and name to a label for the table.
setup() {
	local label=$1 broker=""
	dsn=""
	cpu_procs=""
	case $label in
	one)
		start_nodes one 1 "" ""
		name="1 node, SQLite"
		return
		;;
	redis)
		broker=${REDIS_URL:-redis://127.0.0.1:6379/0}
		cpu_procs=postgres,redis-server
		name="$nodes nodes, PostgreSQL + Redis"
		;;
	nats)
		broker=${NATS_URL:-nats://127.0.0.1:4222}
		cpu_procs=postgres,nats-server
		name="$nodes nodes, PostgreSQL + NATS"
		;;
	*) echo "unknown setup $label" >&2; exit 2 ;;
	esac
	if [ -n "$dsn_arg" ]; then dsn=$dsn_arg; else new_dsn; fi
	start_nodes "$label" "$nodes" "$dsn" "$broker"
}

teardown() {
	stop_nodes
	if [ -z "$dsn_arg" ] && [ -n "$dsn" ]; then
		drop_schema "${schemas[-1]}"
	fi
}

# --- the load tool ---------------------------------------------------------------

run_no=0
# sources CONNS N sets addrs to source addresses for CONNS connections to
# N nodes, fresh for every run (127.<run>.0.x), so that no run finds its
# ports still in TIME_WAIT from the one before; about 7,000 connections
# each, a multiple of N of them so that every node gets its share of each.
sources() {
	local conns=$1 n=$2 k i a=()
	k=$(((conns + 6999) / 7000))
	k=$(((k + n - 1) / n * n))
	run_no=$((run_no + 1))
	for i in $(seq 1 "$k"); do a+=("127.$((run_no % 250 + 1)).0.$i"); done
	addrs=$(IFS=,; echo "${a[*]}")
}

# load TAG ARGS... runs herald-load against the current nodes, printing
# the command and its table; its progress goes to OUT.
load() {
	local tag=$1 n=${#urls[@]}
	shift
	local args=(-url "$list" -per-worker "$per_worker" "$@") prof=""
	echo "\$ herald-load ${args[*]}"
	if [ "${PROFILE:-0}" = 1 ] && [[ " $* " == *" notify "* ]]; then
		(sleep "${PROFILE_DELAY:-8}" && curl -sf -o "$out/$tag.cpu.pprof" \
			"http://127.0.0.1:19081/debug/pprof/profile?seconds=${PROFILE_SECONDS:-10}") &
		prof=$!
	fi
	"$work/herald-load" "${args[@]}" 2>"$out/$tag.progress" | tee "$out/$tag.txt" || {
		echo "(herald-load failed; the end of its progress:)"
		tail -5 "$out/$tag.progress"
	}
	[ -z "$prof" ] || wait "$prof" || true
	if [ "${PROFILE:-0}" = 1 ]; then
		# Where node 1's replies took the other nodes' counts from.
		curl -sf http://127.0.0.1:19081/metrics | grep '^herald_cluster_' | sed 's/^/# node 1: /' || true
	fi
	echo "# $n node(s); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# --- measurements ------------------------------------------------------------------

first_numbers() {
	local conns=${CONNS:-3000} rate=${MSG_RATE:-1000} duration=${DURATION:-10s}
	setup "$1"
	echo "== $name: fanout to $conns connections"
	load "$1-fanout" -scenario fanout -conns "$conns" -messages 5 -workers 3 |
		grep -E '^(\$ |broadcast|connect latency|errors)'
	echo "== $name: notify at $rate/s"
	load "$1-notify" -scenario notify -conns "$conns" -msg-rate "$rate" -duration "$duration" -workers 3 -cpu-procs "$cpu_procs" |
		grep -E '^(\$ |notify|server cpu|  |delivery latency|errors|connect latency)'
	teardown
}

idle() {
	local conns=${CONNS:-45000} rate=${RATE:-1000} hold=${HOLD:-60s} b
	local per=$(((conns + nodes - 1) / nodes))
	echo
	echo "== idle: one node with $per connections (one node's share of $conns)"
	wait_quiet
	setup one
	sources "$per" 1
	load one-idle -scenario idle -conns "$per" -rate "$rate" -hold "$hold" -local-addrs "$addrs"
	teardown
	for b in $brokers; do
		echo
		echo "== idle: $conns connections on $nodes nodes, PostgreSQL + $b"
		wait_quiet
		setup "$b"
		sources "$conns" "$nodes"
		load "$b-idle" -scenario idle -conns "$conns" -rate "$rate" -hold "$hold" -local-addrs "$addrs" -cpu-procs "$cpu_procs"
		teardown
	done
}

fanout() {
	local conns=${CONNS:-15000} rate=${RATE:-3000} msgs=${MESSAGES:-10} b
	for b in one $brokers; do
		echo
		wait_quiet
		setup "$b"
		echo "== fanout: $name, $msgs broadcasts to $conns connections"
		sources "$conns" "${#urls[@]}"
		load "$b-fanout" -scenario fanout -conns "$conns" -rate "$rate" -messages "$msgs" -local-addrs "$addrs"
		teardown
	done
}

notify() {
	local conns=${CONNS:-10000} rate=${RATE:-3000} msg_rate=${MSG_RATE:-5000} duration=${DURATION:-15s} b
	for b in one $brokers; do
		echo
		wait_quiet
		setup "$b"
		echo "== notify: $name, $msg_rate/s for $duration to $conns users${BATCH:+, in POST /v1/batch of up to $BATCH}"
		local extra=()
		[ -n "$cpu_procs" ] && extra=(-cpu-procs "$cpu_procs")
		[ -n "${BATCH:-}" ] && extra+=(-batch "$BATCH" -batch-wait "${BATCH_WAIT:-3ms}")
		sources "$conns" "${#urls[@]}"
		load "$b-notify" -scenario notify -conns "$conns" -rate "$rate" -msg-rate "$msg_rate" -duration "$duration" \
			-local-addrs "$addrs" "${extra[@]}"
		teardown
	done
}

case $mode in
one | redis | nats) first_numbers "$mode" ;;
idle) idle ;;
fanout) fanout ;;
notify) notify ;;
scale) idle; fanout; notify ;;
*) echo "unknown mode $mode (want one, redis, nats, idle, fanout, notify or scale)" >&2; exit 2 ;;
esac
echo "# finished $(date -u '+%H:%M UTC')"
