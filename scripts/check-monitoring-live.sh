# shellcheck shell=bash
# The live part of check-monitoring.sh (sourced by it: TMP, ok, fail and scripts/prometheus-local.sh are set).
# A Prometheus scrapes the four services, the exporters and rabbitmq_prometheus; every rule and panel must
# name only metrics that some target exports.

BIN=${FLASHSALE_BIN:-${CARGO_TARGET_DIR:-target}/debug}
for b in gateway order-writer payment expiry flashsale-migrate flashsale-mint-token flashsale-loadtest; do
    [[ -x $BIN/$b ]] || fail "$BIN/$b is missing: run cargo build --workspace --bins (or set FLASHSALE_BIN)"
done

# A free loopback port (bash's /dev/tcp: nothing listening there now), below the kernel's ephemeral range
# (ip_local_port_range, 32768 and up by default): a port in that range can be taken by any outgoing connection
# between this check and the bind (seen: the Redis exporter failed with "address already in use").
used_ports=" "
ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % (ephemeral_low - 20000)))
        [[ $used_ports == *" $p "* ]] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        used_ports+="$p "
        echo "$p"
        return
    done
}
# shellcheck disable=SC2034 # GATEWAY_ADDR & co are read by mon_write_config
{
    GATEWAY_ADDR=127.0.0.1:$(free_port); ORDER_WRITER_ADDR=127.0.0.1:$(free_port)
    PAYMENT_ADDR=127.0.0.1:$(free_port); EXPIRY_ADDR=127.0.0.1:$(free_port)
    REDIS_EXPORTER_ADDR=127.0.0.1:$(free_port); POSTGRES_EXPORTER_ADDR=127.0.0.1:$(free_port)
    PROMETHEUS_ADDR=127.0.0.1:$(free_port)
}

# A database and prefixes of its own (the pid keeps two runs apart); teardown refuses the default prefixes.
DB=flashsale_moncheck_$$
export FLASHSALE__DEV=1 FLASHSALE__TELEMETRY__LOG_LEVEL=warn
export FLASHSALE__POSTGRES__URL=postgres://postgres@127.0.0.1:5432/$DB
export FLASHSALE__REDIS__KEY_PREFIX=fsmon$$: FLASHSALE__AMQP__PREFIX=flashsale-mon$$.
export FLASHSALE__GATEWAY__LISTEN=$GATEWAY_ADDR FLASHSALE__ORDER_WRITER__LISTEN=$ORDER_WRITER_ADDR
export FLASHSALE__PAYMENT__LISTEN=$PAYMENT_ADDR FLASHSALE__EXPIRY__LISTEN=$EXPIRY_ADDR
export FLASHSALE__PAYMENT__CHECKOUT_BASE_URL=http://$PAYMENT_ADDR/psp/checkout/
export FLASHSALE__PAYMENT__SIMULATOR__WEBHOOK_URL=http://$PAYMENT_ADDR/webhooks/psp
# A per-address limit that the traffic below passes and then exceeds, so flashsale_requests_shed_total has a series.
export FLASHSALE__GATEWAY__ADDRESS_RATE_PER_SEC=1 FLASHSALE__GATEWAY__ADDRESS_RATE_BURST=3
psql=(psql -X -w -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1)

svc_pids=()
cleanup() {
    trap - EXIT INT TERM
    mon_stop
    local pid
    for pid in "${svc_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${svc_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    "$BIN/flashsale-loadtest" teardown >/dev/null 2>&1 || echo "check-monitoring: teardown of its queues/keys failed" >&2
    "${psql[@]}" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"${psql[@]}" -c "CREATE DATABASE $DB" >/dev/null || fail "cannot create database $DB"
"$BIN/flashsale-migrate" >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log" >&2; fail "flashsale-migrate"; }
for svc in gateway order-writer payment expiry; do
    "$BIN/$svc" >"$TMP/$svc.log" 2>&1 &
    svc_pids+=($!)
done
# wait_until SECONDS DESCRIPTION COMMAND...: poll every 0.2 s.
wait_until() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { tail -n 20 "$TMP"/*.log >&2 2>/dev/null; fail "$what"; }
        sleep 0.2
    done
}
for addr in "$GATEWAY_ADDR" "$ORDER_WRITER_ADDR" "$PAYMENT_ADDR" "$EXPIRY_ADDR"; do
    wait_until 30 "$addr/readyz is not ready" curl -fsS "http://$addr/readyz"
done
ok "the four services are ready"

# Traffic so that every labelled metric has a series: a sale with a 5 s payment window (the window that
# teardown knows), one reservation left unpaid so that it expires, a webhook with a forged signature, and
# more reservations than the per-address burst (409 LIMIT_EXCEEDED, then 429).
starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
ends=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
sale=$(curl -fsS -X POST "http://$GATEWAY_ADDR/api/v1/admin/sales" \
    -H "Authorization: Bearer ${FLASHSALE__AUTH__ADMIN_TOKEN:-dev-only-admin-token-change-me}" \
    -H 'Content-Type: application/json' \
    -d "{\"product_name\":\"Monitoring check\",\"price\":\"1.00\",\"stock\":10,\"per_user_limit\":1,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\",\"payment_window_secs\":5}") ||
    fail "cannot create a sale"
sale_id=$(jq -r .id <<<"$sale")
token=$("$BIN/flashsale-mint-token" monitoring-check 600)
curl -fsS -o /dev/null -X POST "http://$GATEWAY_ADDR/api/v1/sales/$sale_id/reservations" \
    -H "Authorization: Bearer $token" || fail "the reservation was refused"
curl -sS -o /dev/null -X POST "http://$PAYMENT_ADDR/webhooks/psp" -H 'Content-Type: application/json' \
    -H 'Psp-Signature: t=1,v1=00' -d '{}'
for _ in 1 2 3; do
    curl -sS -o /dev/null -X POST "http://$GATEWAY_ADDR/api/v1/sales/$sale_id/reservations" -H "Authorization: Bearer $token"
done
expired() { curl -fsS "http://$EXPIRY_ADDR/metrics" | grep -q '^flashsale_expiry_release_lag_seconds_count'; }

# Meanwhile (the window is 5 s): exporters, rabbitmq_prometheus and Prometheus, scraping every second.
mon_enable_rabbitmq_prometheus
mon_start_exporters "$TMP" "$DB"
SCRAPE_INTERVAL=1s mon_write_config "$TMP/prometheus.yml"
promtool check config "$TMP/prometheus.yml" >/dev/null || fail "the local prometheus.yml (scripts/prometheus-local.sh)"
mon_start_prometheus "$TMP/prometheus.yml" "$TMP/data" "$PROMETHEUS_ADDR" "$TMP/prometheus.log"
wait_until 30 "the reservation did not expire (no flashsale_expiry_release_lag_seconds)" expired
API=http://$PROMETHEUS_ADDR/api/v1
all_up() {
    curl -fsS "$API/targets" |
        jq -e '.data.activeTargets | length == 8 and all(.health == "up")' >/dev/null
}
wait_until 30 "not every target is up (the logs above name the one that failed)" all_up
ok "all 8 targets up"

# Names exported after the traffic: wait for one scrape that saw the expiry.
has_name() { curl -fsS "$API/label/__name__/values" | jq -e --arg n "$1" '.data | index($n)' >/dev/null; }
wait_until 10 "Prometheus never saw flashsale_expiry_release_lag_seconds_bucket" has_name flashsale_expiry_release_lag_seconds_bucket
curl -fsS "$API/label/__name__/values" | jq -r '.data[]' | sort -u >"$TMP/names.txt"

# Every expression: the rules as Prometheus loaded them, and the dashboard panels.
curl -fsS "$API/rules" | jq -r '.data.groups[].rules[].query | @json' >"$TMP/rules.jsonl"
[[ -s $TMP/rules.jsonl ]] || fail "Prometheus loaded no rules"
cat "$TMP/rules.jsonl" "$TMP/panels.jsonl" | python3 scripts/promql-names.py >"$TMP/used.tsv"
missing=$(cut -f1 "$TMP/used.tsv" | sort -u | comm -23 - "$TMP/names.txt")
if [[ -n $missing ]]; then
    for name in $missing; do grep -P "^$name\t" "$TMP/used.tsv" | head -n 1 | sed 's/^/  not exported: /' >&2; done
    fail "rules or panels name metrics that no target exports"
fi
ok "$(cut -f1 "$TMP/used.tsv" | sort -u | wc -l) metric names used by $(wc -l <"$TMP/rules.jsonl") rules and $(wc -l <"$TMP/panels.jsonl") panels are all exported"

for addr in "$GATEWAY_ADDR" "$ORDER_WRITER_ADDR" "$PAYMENT_ADDR" "$EXPIRY_ADDR"; do
    curl -fsS "http://$addr/metrics" >"$TMP/metrics.txt"
    promtool check metrics <"$TMP/metrics.txt" >"$TMP/check-metrics.log" 2>&1 ||
        { cat "$TMP/check-metrics.log" >&2; fail "promtool check metrics on $addr/metrics"; }
done
ok "promtool check metrics passes for the four services"
