#!/usr/bin/env bash
# `make bench`: the four services (release build), fresh, on prefixes and a database of their own, then
# ceiling, flood and shed (BENCH_ROUNDS interleaved rounds, default 3), burst and race (5 interleaved rounds),
# each scenario's median run reported, then sustain (closed loop, then open loop at half its rate),
# writer (3 runs, the median reported), expiry, pay, sse (10,000 live stock
# streams during a race), redis-benchmark on an EVALSHA of the reservation script, and one table.
# Reports land in .run/bench/<scenario>.json; service logs in .run/bench/<service>.log.
# Knobs (environment): BENCH_DURATION (s, default 10), BENCH_CONCURRENCY (default 500),
# BENCH_WRITER_ORDERS (default 100000), BENCH_REDIS_REQUESTS (default 300000), BENCH_EXPIRY_ORDERS and
# BENCH_PAY_ORDERS (default 10000 each), BENCH_SSE_STREAMS (default 10000), BENCH_ONLY (scenario names separated by spaces, e.g. "pay expiry":
# run only those and print their reports and CPU instead of the table; for working on one figure), BENCH_BIN
# (where the release binaries are; default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BENCH_BIN:-target/release}
OUT=.run/bench
GATEWAY=http://127.0.0.1:8080
DURATION=${BENCH_DURATION:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-500}
WRITER_ORDERS=${BENCH_WRITER_ORDERS:-100000}
REDIS_REQUESTS=${BENCH_REDIS_REQUESTS:-300000}
EXPIRY_ORDERS=${BENCH_EXPIRY_ORDERS:-10000}
PAY_ORDERS=${BENCH_PAY_ORDERS:-10000}
SSE_STREAMS=${BENCH_SSE_STREAMS:-10000}
# Every live stock stream is a connection, at both ends: the services and the load tool inherit the hard limit.
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/redis.txt

command -v redis-benchmark >/dev/null || {
    echo "bench: redis-benchmark is missing (Debian: apt-get install redis-tools)" >&2
    exit 1
}
for port in 8080 8081 8082 8083; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "bench: port $port is taken (is \`make run\` still running?); stop it first" >&2
        exit 1
    fi
done

# The bench's own database (empty at every run, so figures do not drift with leftovers), Redis prefix and AMQP
# prefix: it never touches the data of `make run`, and `teardown` removes its queues and keys afterwards.
export FLASHSALE__POSTGRES__URL=postgres://postgres@127.0.0.1:5432/flashsale_bench
export FLASHSALE__REDIS__KEY_PREFIX=fsbench:
export FLASHSALE__AMQP__PREFIX=flashsale-bench.
# Development mode: the bench runs on the development secrets of config/default.toml, which the services refuse
# otherwise.
export FLASHSALE__DEV=1
# Logging at warn: the bench measures the services, not their log lines.
export FLASHSALE__TELEMETRY__LOG_LEVEL=${FLASHSALE__TELEMETRY__LOG_LEVEL:-warn}
psql -q -h 127.0.0.1 -U postgres -d postgres -c 'DROP DATABASE IF EXISTS flashsale_bench' \
    -c 'CREATE DATABASE flashsale_bench' >/dev/null
"$BIN/flashsale-migrate"

lt() { "$BIN/flashsale-loadtest" --gateway "${LT_GATEWAY:-$GATEWAY}" "$@"; }
# Leftovers of an interrupted run: the new database issues the same sale ids again.
lt teardown
LOGS=$OUT
# shellcheck source=scripts/stack.sh
. scripts/stack.sh
stop() {
    stop_stack
    lt teardown || true
}
trap stop EXIT INT TERM
start_stack

# CPU seconds (user + system) used so far by each process of the stack, one "name seconds" a line.
ticks_per_s=$(getconf CLK_TCK)
cpu_snapshot() {
    local name pid total f procs
    for name in gateway order-writer payment expiry redis-server beam.smp postgres; do
        total=0
        # The bench's own services by pid (an earlier gateway still shutting down must not count).
        case $name in
            gateway) procs=${pids[0]} ;;
            order-writer) procs=${pids[1]} ;;
            payment) procs=${pids[2]} ;;
            expiry) procs=${pids[3]} ;;
            *) procs=$(pgrep -x "$name") ;;
        esac
        for pid in $procs; do
            read -r -a f <"/proc/$pid/stat" 2>/dev/null || continue
            total=$((total + f[13] + f[14]))
        done
        echo "$name $total"
    done
}
run() {
    local file=$1 name=$2 before
    shift 2
    echo "bench: $name $*" >&2
    before=$(cpu_snapshot)
    lt --json "$name" "$@" >"$OUT/$file.json" || { cat "$OUT/$file.json" >&2; exit 1; }
    # Where the CPU went during the run: seconds per process (PostgreSQL: all its backends that lived through it).
    paste -d' ' <(echo "$before") <(cpu_snapshot) |
        awk -v hz="$ticks_per_s" '{ printf "%s %.3f\n", $1, ($4 - $2) / hz }' >"$OUT/$file.cpu"
    # The client's own CPU during the load (not while it minted tokens or verified), as it measured it.
    echo "loadtest $(sed -nE 's/.*"client_cpu_s":([0-9.]+).*/\1/p' "$OUT/$file.json")" >>"$OUT/$file.cpu"
}
# Peak resident memory (VmHWM) of each of the four services so far, one "name MiB" a line.
peak_rss() {
    local i name=(gateway order-writer payment expiry)
    for i in 0 1 2 3; do
        awk -v n="${name[$i]}" '/^VmHWM:/ { printf "%s %.1f\n", n, $2 / 1024 }' "/proc/${pids[$i]}/status"
    done
}
rate_of() { sed -E 's/.*"req_per_s":([0-9.]+).*/\1/' "$OUT/$1.json"; }

# What a refusal at admission costs: a second gateway whose request-rate bound (1/s) sheds nearly everything.
shed_flood() {
    local pid file=${1:-shed}
    FLASHSALE__GATEWAY__LISTEN=127.0.0.1:8084 FLASHSALE__GATEWAY__MAX_REQUESTS_PER_SEC=1 \
        "$BIN/gateway" >"$LOGS/gateway-shed.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do ready http://127.0.0.1:8084 && break; sleep 0.2; done
    LT_GATEWAY=http://127.0.0.1:8084 run "$file" shed -c "$CONCURRENCY" -d "$DURATION"
    kill -TERM "$pid"
    wait "$pid" || true
}
if [[ -n ${BENCH_ONLY:-} ]]; then
    for name in $BENCH_ONLY; do
        case $name in
            expiry) run expiry expiry -c "$CONCURRENCY" -n "$EXPIRY_ORDERS" ;;
            pay) run pay pay --payment "$PAYMENT" -c "$CONCURRENCY" -n "$PAY_ORDERS" ;;
            writer) run writer writer -n "$WRITER_ORDERS" ;;
            race | burst) run "$name" "$name" -c "$CONCURRENCY" ;;
            shed) shed_flood ;;
            sse) run sse sse -c "$CONCURRENCY" --streams "$SSE_STREAMS" --gateway-pid "${pids[0]}" ;;
            ceiling | flood | sustain) run "$name" "$name" -c "$CONCURRENCY" -d "$DURATION" ;;
            *) echo "bench: BENCH_ONLY names an unknown scenario: $name" >&2; exit 1 ;;
        esac
        echo "== $name"; cat "$OUT/$name.json"; echo; cat "$OUT/$name.cpu"
    done
    echo "== peak RSS (VmHWM, MiB)"
    peak_rss
    exit 0
fi
# The machine's speed drifts by tens of percent within minutes (a shared VM), and the edge's targets are ratios
# between scenarios. So each pair is measured in interleaved rounds (ceiling, flood, shed, ceiling, ...; burst,
# race, burst, ...), and each scenario's run with the median req/s is the one reported: both sides of a ratio
# then come from the same stretch of time.
# median NAME N: copies the median (by req/s) of NAME-1..NAME-N to NAME.json.
median() {
    local name=$1 n=$2 pick
    pick=$(for i in $(seq 1 "$n"); do echo "$(rate_of "$name-$i") $name-$i"; done | sort -n |
        sed -n "$(((n + 1) / 2))p" | cut -d' ' -f2)
    cp "$OUT/$pick.json" "$OUT/$name.json"
    cp "$OUT/$pick.cpu" "$OUT/$name.cpu"
}
ROUNDS=${BENCH_ROUNDS:-3}
for i in $(seq 1 "$ROUNDS"); do
    run "ceiling-$i" ceiling -c "$CONCURRENCY" -d "$DURATION"
    run "flood-$i" flood -c "$CONCURRENCY" -d "$DURATION"
    shed_flood "shed-$i"
done
for name in ceiling flood shed; do median "$name" "$ROUNDS"; done
# A race lasts about 0.3 s, so one run is noisy: five rounds of a burst of the same shape (7,000 requests, same
# concurrency) against /healthz, the race's yardstick, then the race.
for i in 1 2 3 4 5; do
    run "burst-$i" burst -c "$CONCURRENCY"
    run "race-$i" race -c "$CONCURRENCY"
done
median burst 5
median race 5
# Broker messages per reservation (group commit): the gateway's confirmed publishes and reservations, before
# and after sustain.
amqp_counts() {
    curl -fsS "$GATEWAY/metrics" | awk '
        /^flashsale_publish_total\{outcome="confirmed"\}/ { m = $2 }
        /^flashsale_reservations_total\{outcome="RESERVED"\}/ { r = $2 }
        END { printf "%d %d\n", m, r }'
}
amqp_before=$(amqp_counts)
run sustain sustain -c "$CONCURRENCY" -d "$DURATION"
paste -d' ' <(echo "$amqp_before") <(amqp_counts) |
    awk '{ printf "messages %d\nreservations %d\n", $3 - $1, $4 - $2 }' >"$OUT/sustain.amqp"
# Closed-loop latency at saturation is just concurrency / throughput; the open loop at half the closed-loop rate
# shows the latency of a load the stack carries.
half=$(awk -v r="$(rate_of sustain)" 'BEGIN { printf "%d", r / 2 }')
run sustain-open sustain -c "$CONCURRENCY" -d "$DURATION" --rate "$half"
# The writer's figure also swings between runs (cold pages, autovacuum of the previous scenarios' rows): three
# runs, the median reported.
for i in 1 2 3; do run "writer-$i" writer -n "$WRITER_ORDERS"; done
median writer 3
# The end of an order's life: unpaid reservations released at their deadline, then orders paid by webhooks.
run expiry expiry -c "$CONCURRENCY" -n "$EXPIRY_ORDERS"
run pay pay --payment "$PAYMENT" -c "$CONCURRENCY" -n "$PAY_ORDERS"
# Peak resident memory of each service over every scenario so far (VmHWM), before the live feed's 10,000
# streams (which the sse line reports on its own): the "RSS per service" figure.
peak_rss >"$OUT/rss.txt"
# The live stock feed: 10,000 streams on the gateway while a race sells the sale out.
run sse sse -c "$CONCURRENCY" --streams "$SSE_STREAMS" --gateway-pid "${pids[0]}"

echo "bench: redis-benchmark EVALSHA of the reservation script" >&2
mapfile -t evalsha < <(lt evalsha-args)
redis_rps=$(redis-benchmark -h 127.0.0.1 -p 6379 -c 50 -n "$REDIS_REQUESTS" -r 100000000 --csv "${evalsha[@]}" |
    awk -F'"' 'NR == 2 { print $4 }')
echo "$redis_rps" >"$OUT/redis.txt"

echo
lt table "$OUT" --evalsha "$redis_rps"
echo
echo "peak RSS per service over ceiling .. pay (VmHWM, MiB; target <= 50 each):"
awk '{ printf "  %-13s %6.1f %s\n", $1, $2, ($2 <= 50 ? "ok" : "above 50") }' "$OUT/rss.txt"
