#!/usr/bin/env bash
# Checks of the Docker deployment files without a Docker engine (make check-deploy runs this):
#   1. docker-compose.yml against the compose-spec schema (check-jsonschema);
#   2. its consistency with itself and the Dockerfile (scripts/check_compose.py), and that checker's own tests on
#      broken copies;
#   3. deploy/env.example names every variable docker-compose.yml requires, with placeholders only;
#   4. the images' health probe (deploy/docker/probe.sh) against a real HTTP server;
#   5. the load balancer's configuration with HAProxy itself (haproxy -c), and a live HAProxy with no backend
#      answering the project's JSON 503 with Retry-After.
# Takes a few seconds once the tools are installed (scripts/ensure-tools.sh; HAProxy from Debian's package).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { echo "flashsale: check-compose: $*"; }
die() { echo "flashsale: check-compose: ERROR: $*" >&2; exit 1; }

BIN=$(scripts/ensure-tools.sh)
PY=$BIN/python
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# 1. Schema.
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

# 2. Consistency, and the checker's tests (each broken copy must be caught).
"$PY" scripts/check_compose.py docker-compose.yml Dockerfile
out=$("$PY" -m unittest -q scripts/test_check_compose.py 2>&1) || die "scripts/test_check_compose.py failed:
$out"
say "scripts/test_check_compose.py: ${out##*$'\n'}"

# 3. Every ${VAR:?...} compose requires is in deploy/env.example, and no secret there has a real value.
required=$(grep -oE '\$\{[A-Z0-9_]+:\?' docker-compose.yml | sed -E 's/^\$\{//; s/:\?$//' | sort -u)
for var in $required; do
    grep -qE "^$var=" deploy/env.example || die "docker-compose.yml requires $var, which deploy/env.example does not name"
done
while IFS='=' read -r key value; do
    if [[ $key =~ (SECRET|TOKEN|PASSWORD)$ && $value != replace-me ]]; then
        die "deploy/env.example: $key must be the placeholder replace-me, never a usable secret"
    fi
done < <(grep -E '^[A-Z0-9_]+=' deploy/env.example)
say "deploy/env.example names all $(wc -w <<<"$required") required variables, secrets as placeholders"

# free_port: a TCP port nothing listens on now, below the kernel's ephemeral range, so no outgoing connection
# can take it between this check and the bind.
free_port() {
    "$PY" - <<'PYEOF'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
while True:
    port = random.randrange(20000, low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
PYEOF
}
# wait_port PORT: until something accepts connections there (5 s at most).
wait_port() {
    local i
    for ((i = 0; i < 50; i++)); do
        timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# 4. The health probe: 200 passes; 404 and a closed port fail.
mkdir -p "$TMP/www" && echo ok >"$TMP/www/readyz"
port=$(free_port)
"$PY" -m http.server "$port" --bind 127.0.0.1 --directory "$TMP/www" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$port" || die "the test HTTP server did not start"
deploy/docker/probe.sh "$port" /readyz || die "probe.sh failed on a 200 answer"
! deploy/docker/probe.sh "$port" /missing || die "probe.sh passed on a 404 answer"
! deploy/docker/probe.sh "$(free_port)" /readyz 2>/dev/null || die "probe.sh passed on a closed port"
say "deploy/docker/probe.sh passes on 200, fails on 404 and on a closed port"

# 5. HAProxy: installed like the databases are (scripts/ensure-services.sh), then the real parser and a live run.
if ! command -v haproxy >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing haproxy with apt-get (missing; it checks deploy/haproxy/haproxy.cfg)"
        # Its package would start a daemon: keep it from doing so; this check runs its own.
        policy=/usr/sbin/policy-rc.d added=0
        [[ -e $policy ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1; }
        rc=0
        { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null; } || rc=$?
        [[ $added == 1 ]] && rm -f "$policy"
        [[ $rc == 0 ]] || die "apt-get install -y haproxy failed (exit $rc)"
    else
        die "haproxy is not installed (it checks deploy/haproxy/haproxy.cfg); install it with: sudo apt-get update && sudo apt-get install -y haproxy"
    fi
fi
# The container's paths, ports and file limit, moved to this machine's: the errorfiles' directory, two free ports,
# and a maxconn this shell's open-file limit allows (the container gets its own, see docker-compose.yml).
api=$(free_port) pay=$(free_port)
sed -e "s|/usr/local/etc/haproxy/errors|$ROOT/deploy/haproxy/errors|" -e "s|maxconn [0-9]*|maxconn 1000|" \
    -e "s|bind :8080|bind 127.0.0.1:$api|" -e "s|bind :8081|bind 127.0.0.1:$pay|" \
    deploy/haproxy/haproxy.cfg >"$TMP/haproxy.cfg"
haproxy -c -q -f "$TMP/haproxy.cfg" || die "haproxy -c refused deploy/haproxy/haproxy.cfg"
haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
wait_port "$api" || die "haproxy did not start: $(cat "$TMP/haproxy.log")"
for port in "$api" "$pay"; do
    "$PY" - "$port" <<'PYEOF' || die "haproxy with no backend did not answer the JSON 503 (log: $(cat "$TMP/haproxy.log"))"
import json, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/sales/1", timeout=5)
    sys.exit("expected 503, got a success")
except urllib.error.HTTPError as e:
    body = json.loads(e.read())
    assert e.code == 503, e.code
    assert e.headers["Retry-After"].isdigit(), e.headers["Retry-After"]
    assert e.headers["Content-Type"] == "application/json", e.headers["Content-Type"]
    assert body["error"]["code"] == "UNAVAILABLE", body
PYEOF
done
say "haproxy accepts deploy/haproxy/haproxy.cfg; with no backend it answers JSON 503 UNAVAILABLE with Retry-After"
say "ok"
