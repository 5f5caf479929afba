# shellcheck shell=bash
# Sourced by run.sh and bench.sh: start the four services in the background and stop them again.
# Needs BIN (where the binaries are), GATEWAY (its base URL) and LOGS (a directory for <service>.log).

pids=()

stop_stack() {
    trap - EXIT INT TERM # once: an interrupt also ends the script, which would run the EXIT trap again
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
}

# The services in start order (bench.sh finds their pids by this position), and their ops addresses.
SERVICES=(gateway order-writer payment expiry)
PAYMENT=http://127.0.0.1:8081

# Starts the services and waits (at most 20 s each) until their /readyz answers 200.
start_stack() {
    local svc url
    for svc in "${SERVICES[@]}"; do
        "$BIN/$svc" >"$LOGS/$svc.log" 2>&1 &
        pids+=($!)
    done
    for url in "$GATEWAY" http://127.0.0.1:8082 "$PAYMENT" http://127.0.0.1:8083; do
        for _ in $(seq 1 100); do ready "$url" && break; sleep 0.2; done
        ready "$url" || { echo "flashsale: $url/readyz is not ready; see $LOGS/*.log" >&2; exit 1; }
    done
}

ready() { curl -fsS "$1/readyz" >/dev/null 2>&1; }
