#!/usr/bin/env bash
# bench.sh runs Herald's measurement suite end to end and writes CSV files,
# PNG charts and a record of the run into OUT_DIR (default docs/bench):
#
#   memory    idle server RSS per connection at MEM_CONNS connections,
#             Herald, the raw baseline and the peer  memory.csv  memory.png  memory-rss.png
#   fanout    broadcast deliveries/s and time to the last delivery at
#             FANOUT_CONNS, Herald, the raw baseline and the peer
#                                                    fanout.csv  fanout.png  fanout-last.png
#   latency   notify latency p50/p90/p99 at LAT_RATES messages/s to
#             LAT_CONNS connected users, one POST per message, and the
#             server's CPU per 1,000 messages, Herald, the raw
#             baseline and the peer                  latency.csv latency.png latency-cpu.png
#             the same through POST /v1/batch (-batch LAT_BATCH, partial
#             batches sent after LAT_BATCH_WAIT)     latency-batch.csv latency-batch.png
#                                                    latency-batch-cpu.png
#   resume    RESUME_CONNS clients reconnecting at once, each missing
#             RESUME_MESSAGES messages               resume.csv
#   table.md  one markdown table per scenario, one row per server per point:
#             Herald, raw baseline and peer side by side (herald-load -table)
#   results.txt  every run's table;  run.txt  the machine and every command
#
# usage: scripts/bench.sh [OUT_DIR]   (from anywhere; a relative OUT_DIR is
#                                      relative to the repository root)
#
# It builds herald and herald-load with "go build", and for every point
# starts a fresh herald on a free loopback port (a new SQLite file in a
# temporary directory, the default store), because memory per connection
# is only honest on a server that has not served anything before. The raw
# baseline (herald-load -serve-baseline) and the peer (Centrifugo, -peer
# centrifugo, built with the Go toolchain into the user's cache folder the
# first time) are started and stopped by herald-load itself, in the same
# invocation as Herald's run of each point. Everything it starts is stopped when it
# exits, Ctrl-C included; every run is bounded by a timeout and the whole
# suite by SUITE_TIMEOUT seconds.
#
# Knobs (environment variables, defaults in brackets):
#   MEM_CONNS [1000 2000 5000 10000 19000]  HOLD [30s]
#   FANOUT_CONNS [1000 5000 10000 19000]    FANOUT_MESSAGES [10]
#   LAT_CONNS [10000]  LAT_RATES [1000 2000 5000 10000]  LAT_DURATION [10s]
#   LAT_BATCH [100]  LAT_BATCH_WAIT [3ms]  RESUME_CONNS [10000]  RESUME_MESSAGES [10]
#   CONNECT_RATE [2000]  SENDERS [256]  SUITE_TIMEOUT [2700]
#   PEER [centrifugo]: the peer measured next to Herald at every memory,
#     fanout and latency point (herald-load -peer); empty to leave it out.
#     If it cannot be installed, run.txt says why and the suite goes on
#     without it. PEER_BIN: its binary, instead of the cached one
#   TRANSPORT [ws]: or sse, to run every point over Server-Sent Events
#     (herald-load -transport sse; the baseline serves SSE the same way);
#     give such a run its own OUT_DIR, e.g. docs/bench-sse
#   BUILD_FROM [worktree]: or a git ref (e.g. HEAD) to build herald from
#     that commit (git archive), e.g. while others edit the working tree;
#     herald-load, the measuring tool, is always built from the working tree
#
# The numbers are only as quiet as the machine: the client fleet shares
# the cores with the server (that is what the baseline accounts for), and
# anything else running skews both; each point records the load average.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-docs/bench}
MEM_CONNS=${MEM_CONNS:-1000 2000 5000 10000 19000}
HOLD=${HOLD:-30s}
FANOUT_CONNS=${FANOUT_CONNS:-1000 5000 10000 19000}
FANOUT_MESSAGES=${FANOUT_MESSAGES:-10}
LAT_CONNS=${LAT_CONNS:-10000}
LAT_RATES=${LAT_RATES:-1000 2000 5000 10000}
LAT_DURATION=${LAT_DURATION:-10s}
LAT_BATCH=${LAT_BATCH:-100}
LAT_BATCH_WAIT=${LAT_BATCH_WAIT:-3ms}
RESUME_CONNS=${RESUME_CONNS:-10000}
RESUME_MESSAGES=${RESUME_MESSAGES:-10}
CONNECT_RATE=${CONNECT_RATE:-2000}
SENDERS=${SENDERS:-256}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-2700}
BUILD_FROM=${BUILD_FROM:-worktree}
TRANSPORT=${TRANSPORT:-ws}
PEER=${PEER-centrifugo}
PEER_BIN=${PEER_BIN:-}
if [ "$TRANSPORT" != ws ] && [ -n "$PEER" ]; then
	PEER= # the peer is measured over WebSocket only
	PEER_NOTE="not measured: TRANSPORT=$TRANSPORT (the peer is measured over WebSocket only)"
fi

cd "$ROOT" # every command below runs here, so recorded paths stay short
mkdir -p "$OUT"

# 19,000 connections need as many descriptors in one server process.
if ! ulimit -n 20000 2>/dev/null; then
	echo "bench.sh: cannot raise the open-file limit to 20000 (hard limit $(ulimit -Hn)); MEM_CONNS and FANOUT_CONNS must stay below it" >&2
	ulimit -n "$(ulimit -Hn)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-bench.XXXXXX")
HERALD_PID=
LOAD_PID=
FAILED=

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# stop_herald sends SIGTERM (Herald drains and exits 0), SIGKILL after 30s.
stop_herald() {
	[ -n "$HERALD_PID" ] || return 0
	kill -TERM "$HERALD_PID" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$HERALD_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$HERALD_PID" 2>/dev/null || true
	wait "$HERALD_PID" 2>/dev/null || true
	HERALD_PID=
}

cleanup() {
	trap - EXIT INT TERM
	if [ -n "$LOAD_PID" ]; then
		# timeout(1) passes SIGTERM on; herald-load then stops its workers
		# and its baseline child in order.
		kill -TERM "$LOAD_PID" 2>/dev/null || true
		wait "$LOAD_PID" 2>/dev/null || true
	fi
	stop_herald
	if [ -n "$FAILED" ]; then
		log "failed; logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'FAILED=1; log interrupted; exit 130' INT TERM

fail() {
	FAILED=1
	log "$*"
	exit 1
}

# start_herald NAME starts a fresh herald and sets HERALD_URL.
start_herald() {
	local name=$1 url=
	mkdir -p "$WORK/$name"
	HERALD_ADDR=127.0.0.1:0 HERALD_DB="$WORK/$name/herald.db" HERALD_LOG_LEVEL=warn HERALD_DRAIN_TIMEOUT=1s \
		"$WORK/herald" >"$WORK/$name/herald.out" 2>"$WORK/$name/herald.err" &
	HERALD_PID=$!
	for _ in $(seq 300); do
		url=$(grep -o 'listening on https\?://[^ ]*' "$WORK/$name/herald.out" 2>/dev/null | head -1 | cut -d' ' -f3) || true
		[ -n "$url" ] && break
		kill -0 "$HERALD_PID" 2>/dev/null || fail "herald exited at start: $(cat "$WORK/$name/herald.err")"
		sleep 0.1
	done
	[ -n "$url" ] || fail "herald did not report its address within 30s"
	HERALD_URL=${url/localhost/127.0.0.1}
}

# Each run binds its own source addresses (127.R.0.1, 127.R.0.2, …, one
# per 5,000 connections): a client address's ephemeral ports stay in
# TIME_WAIT for a minute after a run, and consecutive runs on the same
# addresses would run out of them.
RUN_NO=0
local_addrs() {
	local n=$1 k addrs=
	RUN_NO=$((RUN_NO + 1))
	for k in $(seq $(((n + 4999) / 5000))); do
		addrs="${addrs:+$addrs,}127.$((10 + RUN_NO)).0.$k"
	done
	echo "$addrs"
}

# load NAME LIMIT ARGS... runs herald-load against HERALD_URL for at most
# LIMIT seconds; its table goes to results.txt, its progress to a log. A
# run that fails is reported and leaves no CSV row; the suite goes on, so
# one bad point does not cost the others, and exits 1 at the end.
POINT_FAILURES=0
load() {
	local name=$1 limit=$2 rc=0
	shift 2
	((SECONDS + limit < SUITE_TIMEOUT)) || fail "suite timeout (${SUITE_TIMEOUT}s) would pass during $name; stopping"
	echo "herald-load -url $HERALD_URL -transport $TRANSPORT $(printf '%q ' "$@")" >>"$OUT/run.txt"
	printf '\n## %s (load average before: %s)\n$ herald-load -url %s -transport %s %s\n' "$name" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" \
		"$HERALD_URL" "$TRANSPORT" "$(printf '%q ' "$@")" >>"$OUT/results.txt"
	timeout --kill-after=30 "$limit" "$WORK/herald-load" -url "$HERALD_URL" -transport "$TRANSPORT" "$@" \
		>>"$OUT/results.txt" 2>"$WORK/$name/load.log" &
	LOAD_PID=$!
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=
	if [ "$rc" != 0 ]; then
		tail -n 30 "$WORK/$name/load.log" >&2
		log "$name: herald-load exited with status $rc; no row for this point"
		echo "(failed: exit status $rc)" >>"$OUT/results.txt"
		POINT_FAILURES=$((POINT_FAILURES + 1))
		FAILED=1
	fi
	return "$rc"
}

# point NAME LIMIT ARGS... is one measurement on a fresh server; the last
# two ARGS are -csv FILE.
point() {
	local name=$1 csv=${*: -1}
	log "$name"
	start_herald "$name"
	if load "$@"; then
		stop_herald
		log "$name: $(tail -n 1 "$csv")"
	else
		stop_herald
	fi
}

log "building into $WORK (from $BUILD_FROM)"
if [ "$BUILD_FROM" = worktree ]; then
	SRC=$ROOT
	REV="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
	# Name the exact sources measured: a hash of the uncommitted changes to
	# what goes into the binaries (Go files, go.mod, go.sum).
	gosrc=('*.go' go.mod go.sum)
	if ! git diff --quiet HEAD -- "${gosrc[@]}" 2>/dev/null || [ -n "$(git ls-files --others --exclude-standard -- "${gosrc[@]}" 2>/dev/null)" ]; then
		fp=$({
			git diff HEAD -- "${gosrc[@]}"
			git ls-files --others --exclude-standard -z -- "${gosrc[@]}" | xargs -0 -r cat
		} | sha256sum | cut -c1-12)
		REV="$REV + uncommitted changes to the Go sources (fingerprint $fp; 'git diff HEAD' and new files)"
	fi
else
	SRC=$WORK/src
	mkdir -p "$SRC"
	git archive "$BUILD_FROM" | tar -x -C "$SRC"
	REV="$(git rev-parse "$BUILD_FROM")"
fi
(cd "$SRC" && go build -o "$WORK/herald" ./cmd/herald)
go build -o "$WORK/herald-load" ./cmd/herald-load

# The peer: installed (once) and described before any point, so that a
# peer that cannot be had is recorded and left out, not failed at every
# point.
PEER_ARGS=()
PEER_INFO=${PEER_NOTE:-not measured (PEER is empty)}
if [ -n "$PEER" ]; then
	log "peer: $PEER (installing it if this is the first time)"
	PEER_BIN_ARGS=()
	[ -z "$PEER_BIN" ] || PEER_BIN_ARGS=(-peer-bin "$PEER_BIN")
	if PEER_INFO=$("$WORK/herald-load" -peer-info "$PEER" "${PEER_BIN_ARGS[@]}" 2>"$WORK/peer-info.log"); then
		PEER_INFO=${PEER_INFO#peer:    }
		PEER_ARGS=(-peer "$PEER" "${PEER_BIN_ARGS[@]}")
	else
		PEER_INFO="not measured: $(tail -n 5 "$WORK/peer-info.log" | tr '\n' ' ')"
		log "peer $PEER $PEER_INFO"
	fi
fi
PEERS=${PEER_ARGS[*]:+1} # non-empty when the peer is measured
# Every point but resume measures the servers one after the other.
SERVERS=$((2 + ${PEERS:-0}))

# A throwaway secret and key for this suite only.
HERALD_TOKEN_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
HERALD_API_KEY=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
export HERALD_TOKEN_SECRET HERALD_API_KEY

rm -f "$OUT"/memory.csv "$OUT"/fanout.csv "$OUT"/latency.csv "$OUT"/latency-batch.csv "$OUT"/resume.csv "$OUT"/results.txt \
	"$OUT"/memory.png "$OUT"/memory-rss.png "$OUT"/fanout.png "$OUT"/fanout-last.png "$OUT"/latency.png \
	"$OUT"/latency-cpu.png "$OUT"/latency-batch.png "$OUT"/latency-batch-cpu.png "$OUT"/table.md
{
	echo "# Herald measurement suite: scripts/bench.sh $*"
	echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "herald:  built from $REV"
	echo "go:      $(go version)"
	echo "kernel:  $(uname -sr)"
	echo "cpu:     $(nproc) x $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
	echo "memory:  $(grep -m1 MemTotal /proc/meminfo 2>/dev/null | awk '{printf "%.1f GiB", $2/1048576}')"
	echo "files:   ulimit -n $(ulimit -n)"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (load average at the start; each point's is in results.txt)"
	echo "peer:    ${PEER:-none}: $PEER_INFO"
	echo "knobs:   PEER=$PEER TRANSPORT=$TRANSPORT MEM_CONNS='$MEM_CONNS' HOLD=$HOLD FANOUT_CONNS='$FANOUT_CONNS' FANOUT_MESSAGES=$FANOUT_MESSAGES LAT_CONNS=$LAT_CONNS LAT_RATES='$LAT_RATES' LAT_DURATION=$LAT_DURATION LAT_BATCH=$LAT_BATCH LAT_BATCH_WAIT=$LAT_BATCH_WAIT RESUME_CONNS=$RESUME_CONNS RESUME_MESSAGES=$RESUME_MESSAGES CONNECT_RATE=$CONNECT_RATE SENDERS=$SENDERS"
	echo "server:  fresh herald process per point, HERALD_ADDR=127.0.0.1:0 HERALD_DB=<new file> HERALD_LOG_LEVEL=warn HERALD_DRAIN_TIMEOUT=1s, defaults otherwise"
	echo "# herald-load runs, in order (-url is each point's fresh server):"
} >"$OUT/run.txt"

secs() { echo "${1%s}"; } # "30s" -> 30 (whole seconds only)

for n in $MEM_CONNS; do
	limit=$((SERVERS * (n / CONNECT_RATE + $(secs "$HOLD")) + 90 * SERVERS))
	point "memory-$n" "$limit" -scenario idle -conns "$n" -rate "$CONNECT_RATE" -hold "$HOLD" -baseline "${PEER_ARGS[@]}" \
		-local-addrs "$(local_addrs "$n")" -csv "$OUT/memory.csv"
done

for n in $FANOUT_CONNS; do
	limit=$((SERVERS * (n / CONNECT_RATE + 2 * FANOUT_MESSAGES) + 90 * SERVERS))
	point "fanout-$n" "$limit" -scenario fanout -conns "$n" -rate "$CONNECT_RATE" -messages "$FANOUT_MESSAGES" -baseline "${PEER_ARGS[@]}" \
		-local-addrs "$(local_addrs "$n")" -csv "$OUT/fanout.csv"
done

for r in $LAT_RATES; do
	limit=$((SERVERS * (LAT_CONNS / CONNECT_RATE + $(secs "$LAT_DURATION")) + 90 * SERVERS))
	point "latency-$r" "$limit" -scenario notify -conns "$LAT_CONNS" -rate "$CONNECT_RATE" -msg-rate "$r" \
		-duration "$LAT_DURATION" -senders "$SENDERS" -baseline "${PEER_ARGS[@]}" -local-addrs "$(local_addrs "$LAT_CONNS")" -csv "$OUT/latency.csv"
done

# The same rates through POST /v1/batch: the sender groups up to LAT_BATCH
# messages per request and sends a partial batch after LAT_BATCH_WAIT, so a
# batch holds rate × wait messages or so.
for r in $LAT_RATES; do
	limit=$((SERVERS * (LAT_CONNS / CONNECT_RATE + $(secs "$LAT_DURATION")) + 90 * SERVERS))
	point "latency-batch-$r" "$limit" -scenario notify -conns "$LAT_CONNS" -rate "$CONNECT_RATE" -msg-rate "$r" \
		-duration "$LAT_DURATION" -senders "$SENDERS" -batch "$LAT_BATCH" -batch-wait "$LAT_BATCH_WAIT" -baseline "${PEER_ARGS[@]}" \
		-local-addrs "$(local_addrs "$LAT_CONNS")" -csv "$OUT/latency-batch.csv"
done

limit=$((2 * RESUME_CONNS / CONNECT_RATE + 180))
point "resume-$RESUME_CONNS" "$limit" -scenario resume -conns "$RESUME_CONNS" -rate "$CONNECT_RATE" -messages "$RESUME_MESSAGES" \
	-local-addrs "$(local_addrs "$RESUME_CONNS")" -csv "$OUT/resume.csv"

log "plotting"
plot() {
	[ -f "$1" ] || { log "no $1: nothing to plot"; return 0; }
	echo "herald-load -plot $(printf '%q ' "$@")" >>"$OUT/run.txt"
	"$WORK/herald-load" -plot "$@"
}
# plotc CSV COLUMNS NAMES ARGS... plots COLUMNS (-y) named NAMES (-names);
# the columns and names after a "|" are the peer's, left out when it was
# not measured.
plotc() {
	local csv=$1 cols=$2 names=$3
	shift 3
	if [ -z "$PEERS" ]; then
		cols=${cols%%|*} names=${names%%|*}
	fi
	plot "$csv" -y "${cols//|/,}" -names "${names//|/,}" "$@"
}
plotc "$OUT/memory.csv" "kb_per_conn,baseline_kb_per_conn|peer_kb_per_conn" "Herald,raw baseline|Centrifugo" -x conns \
	-title "Server memory per idle connection" -xlabel "idle connections" -ylabel "RSS growth per connection (KB)" -o "$OUT/memory.png"
plotc "$OUT/memory.csv" "server_rss_after_kb,baseline_rss_after_kb|peer_rss_after_kb" "Herald,raw baseline|Centrifugo" -x conns \
	-title "Server RSS holding the connections" -xlabel "idle connections" -ylabel "RSS (KB)" -o "$OUT/memory-rss.png"
plotc "$OUT/fanout.csv" "deliveries_per_s,baseline_deliveries_per_s|peer_deliveries_per_s" "Herald,raw baseline|Centrifugo" -x conns \
	-title "Broadcast fan-out throughput (median of $FANOUT_MESSAGES)" -xlabel "connections" -ylabel "deliveries per second" -o "$OUT/fanout.png"
plotc "$OUT/fanout.csv" "last_ms,baseline_last_ms|peer_last_ms" "Herald,raw baseline|Centrifugo" -x conns \
	-title "Broadcast: time to the last connection (median of $FANOUT_MESSAGES)" -xlabel "connections" -ylabel "ms" -o "$OUT/fanout-last.png"
plotc "$OUT/latency.csv" "p50_ms,p90_ms,p99_ms,baseline_p99_ms|peer_p50_ms,peer_p99_ms" "Herald p50,Herald p90,Herald p99,raw baseline p99|Centrifugo p50,Centrifugo p99" -x target_rate \
	-title "Notify latency, $LAT_CONNS connected users" -xlabel "notifications per second (asked)" -ylabel "API call to delivery (ms)" -o "$OUT/latency.png"
plotc "$OUT/latency-batch.csv" "p50_ms,p90_ms,p99_ms,baseline_p99_ms|peer_p50_ms,peer_p99_ms" "Herald p50,Herald p90,Herald p99,raw baseline p99|Centrifugo p50,Centrifugo p99" -x target_rate \
	-title "Notify latency via POST /v1/batch (up to $LAT_BATCH, $LAT_BATCH_WAIT wait), $LAT_CONNS connected users" \
	-xlabel "notifications per second (asked)" -ylabel "message created to delivery (ms)" -o "$OUT/latency-batch.png"
plotc "$OUT/latency.csv" "server_cpu_ms_per_1k_msgs,baseline_cpu_ms_per_1k_msgs|peer_cpu_ms_per_1k_msgs" "Herald,raw baseline|Centrifugo" -x target_rate \
	-title "Server CPU per 1,000 notifications, one POST per message (send window)" -xlabel "notifications per second (asked)" \
	-ylabel "server CPU ms per 1,000 messages" -o "$OUT/latency-cpu.png" || log "latency-cpu.png: no server CPU figures (pid not found?)"
plotc "$OUT/latency-batch.csv" "server_cpu_ms_per_1k_msgs,baseline_cpu_ms_per_1k_msgs|peer_cpu_ms_per_1k_msgs" "Herald,raw baseline|Centrifugo" -x target_rate \
	-title "Server CPU per 1,000 notifications via POST /v1/batch (send window)" -xlabel "notifications per second (asked)" \
	-ylabel "server CPU ms per 1,000 messages" -o "$OUT/latency-batch-cpu.png" || log "latency-batch-cpu.png: no server CPU figures (pid not found?)"

# The side-by-side table: one row per server per point, from the CSVs.
log "table"
tables=()
for f in memory fanout latency latency-batch; do
	[ -f "$OUT/$f.csv" ] && tables+=("$OUT/$f.csv")
done
if [ ${#tables[@]} -gt 0 ]; then
	{
		echo "<!-- written by scripts/bench.sh from the CSV files beside it (herald-load -table); see run.txt -->"
		echo "Same machine, same run, same load; peer: ${PEER:-none} ($PEER_INFO)."
		echo
		"$WORK/herald-load" -table "${tables[@]}"
	} >"$OUT/table.md"
	echo "herald-load -table $(printf '%q ' "${tables[@]}")" >>"$OUT/run.txt"
fi

# The record is committed: keep this machine's paths out of it.
sed -i "s#$ROOT/##g" "$OUT/run.txt" "$OUT/results.txt"
[ ! -f "$OUT/table.md" ] || sed -i "s#$ROOT/##g; s#$HOME/#~/#g" "$OUT/table.md"
sed -i "s#$HOME/#~/#g" "$OUT/run.txt" "$OUT/results.txt"

if [ "$POINT_FAILURES" != 0 ]; then
	log "$POINT_FAILURES point(s) failed (see results.txt); the charts show the others"
	exit 1
fi
log "done in ${SECONDS}s: $OUT"
