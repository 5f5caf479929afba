#!/usr/bin/env bash
# `make bench`: release build, a fresh gateway and order-writer against the local services, then ceiling, race,
# flood, sustain and writer, redis-benchmark on an EVALSHA of the reservation script, and one table.
# Reports land in .run/bench/<scenario>.json; service logs in .run/bench/<service>.log.
# Knobs (environment): BENCH_DURATION (s, default 10), BENCH_CONCURRENCY (default 500),
# BENCH_WRITER_ORDERS (default 200000), BENCH_REDIS_REQUESTS (default 300000).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release
OUT=.run/bench
GATEWAY=http://127.0.0.1:8080
DURATION=${BENCH_DURATION:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-500}
WRITER_ORDERS=${BENCH_WRITER_ORDERS:-200000}
REDIS_REQUESTS=${BENCH_REDIS_REQUESTS:-300000}
mkdir -p "$OUT"
rm -f "$OUT"/*.json

command -v redis-benchmark >/dev/null || {
    echo "bench: redis-benchmark is missing (Debian: apt-get install redis-tools)" >&2
    exit 1
}
for port in 8080 8082; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "bench: port $port is taken (is \`make run\` still running?); stop it first" >&2
        exit 1
    fi
done

# Logging at warn: the bench measures the services, not their log lines.
export FLASHSALE__TELEMETRY__LOG_LEVEL=${FLASHSALE__TELEMETRY__LOG_LEVEL:-warn}
"$BIN/flashsale-migrate"

pids=()
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
}
trap stop EXIT INT TERM
for svc in gateway order-writer; do
    "$BIN/$svc" >"$OUT/$svc.log" 2>&1 &
    pids+=($!)
done
ready() { curl -fsS "$1/readyz" >/dev/null 2>&1; }
for url in "$GATEWAY" http://127.0.0.1:8082; do
    for _ in $(seq 1 100); do ready "$url" && break; sleep 0.2; done
    ready "$url" || { echo "bench: $url/readyz is not ready; see $OUT/*.log" >&2; exit 1; }
done

lt() { "$BIN/flashsale-loadtest" --gateway "$GATEWAY" "$@"; }
run() {
    local name=$1
    shift
    echo "bench: $name $*" >&2
    lt --json "$name" "$@" >"$OUT/$name.json" || { cat "$OUT/$name.json" >&2; exit 1; }
}

run ceiling -c "$CONCURRENCY" -d "$DURATION"
run race -c "$CONCURRENCY"
run flood -c "$CONCURRENCY" -d "$DURATION"
run sustain -c "$CONCURRENCY" -d "$DURATION"
run writer -n "$WRITER_ORDERS"

echo "bench: redis-benchmark EVALSHA of the reservation script" >&2
mapfile -t evalsha < <(lt evalsha-args)
redis_rps=$(redis-benchmark -h 127.0.0.1 -p 6379 -c 50 -n "$REDIS_REQUESTS" -r 100000000 --csv "${evalsha[@]}" |
    awk -F'"' 'NR == 2 { print $4 }')
prefix=$(cut -d'{' -f1 <<<"${evalsha[3]}")
redis-cli --scan --pattern "${prefix}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
echo "$redis_rps" >"$OUT/redis.txt"

echo
lt table "$OUT" --evalsha "$redis_rps"
