# shellcheck shell=bash
# Sourced by monitor.sh and check-monitoring.sh: Prometheus and the exporters from Debian's packages, on local
# ports, with the same jobs and rules as deploy/prometheus/prometheus.yml (which uses compose names).

readonly MON_PACKAGES=(prometheus prometheus-redis-exporter prometheus-postgres-exporter)
readonly MON_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mon_say() { echo "flashsale: $*"; }
mon_die() { echo "flashsale: ERROR: $*" >&2; exit 1; }

# Installs the Debian packages when a binary is missing (as root), or stops naming what to install.
mon_ensure_packages() {
    local missing=() pkg
    for pkg in "${MON_PACKAGES[@]}"; do
        command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    command -v promtool >/dev/null 2>&1 || [[ " ${missing[*]} " == *" prometheus "* ]] || missing+=(prometheus)
    ((${#missing[@]} == 0)) && return 0
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        mon_die "missing ${missing[*]}; install with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    fi
    mon_say "installing ${missing[*]} with apt-get"
    # policy-rc.d: the packages must not start their own daemons (Debian's prometheus would take port 9090).
    local policy=/usr/sbin/policy-rc.d added=0 rc=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
    fi
    { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } || rc=$?
    [[ $added == 1 ]] && rm -f "$policy"
    [[ $rc == 0 ]] || mon_die "apt-get install -y ${missing[*]} failed (exit $rc)"
}

# Enables rabbitmq_prometheus on the local broker (port 15692, loopback only) unless it already answers.
# The listener address is set in the running node before the plugin starts, and in rabbitmq.conf for the
# next boot, so the broker needs no restart.
mon_enable_rabbitmq_prometheus() {
    curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:15692/metrics 2>/dev/null && return 0
    command -v rabbitmq-plugins >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/usr/local/sbin"
    command -v rabbitmq-plugins >/dev/null 2>&1 || mon_die "rabbitmq-plugins is missing (run make services first)"
    local conf=/etc/rabbitmq/rabbitmq.conf
    if [[ -w $conf || (! -e $conf && -w /etc/rabbitmq) ]] && ! grep -q '^prometheus.tcp' "$conf" 2>/dev/null; then
        printf 'prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = 15692\n' >>"$conf"
    fi
    rabbitmqctl -q eval \
        'application:set_env(rabbitmq_prometheus, tcp_config, [{port, 15692}, {ip, "127.0.0.1"}]).' >/dev/null ||
        mon_die "rabbitmqctl eval failed: is RabbitMQ running (make services)?"
    mon_say "enabling rabbitmq_prometheus (127.0.0.1:15692)"
    rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null || mon_die "rabbitmq-plugins enable rabbitmq_prometheus failed"
    local _
    for _ in $(seq 1 50); do
        curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:15692/metrics 2>/dev/null && return 0
        sleep 0.2
    done
    mon_die "rabbitmq_prometheus does not answer on 127.0.0.1:15692"
}

# mon_write_config FILE: the local scrape configuration. Reads GATEWAY_ADDR, ORDER_WRITER_ADDR, PAYMENT_ADDR,
# EXPIRY_ADDR, REDIS_EXPORTER_ADDR, POSTGRES_EXPORTER_ADDR (host:port each) and SCRAPE_INTERVAL.
mon_write_config() {
    cat >"$1" <<YAML
# Written by scripts/prometheus-local.sh: the jobs of deploy/prometheus/prometheus.yml on local ports.
global:
  scrape_interval: ${SCRAPE_INTERVAL:-15s}
  evaluation_interval: ${SCRAPE_INTERVAL:-15s}
rule_files:
  - $MON_ROOT/deploy/prometheus/rules/*.yml
scrape_configs:
  - {job_name: gateway, static_configs: [{targets: ['$GATEWAY_ADDR']}]}
  - {job_name: order-writer, static_configs: [{targets: ['$ORDER_WRITER_ADDR']}]}
  - {job_name: payment, static_configs: [{targets: ['$PAYMENT_ADDR']}]}
  - {job_name: expiry, static_configs: [{targets: ['$EXPIRY_ADDR']}]}
  - {job_name: redis, static_configs: [{targets: ['$REDIS_EXPORTER_ADDR']}]}
  - {job_name: postgres, static_configs: [{targets: ['$POSTGRES_EXPORTER_ADDR']}]}
  - {job_name: rabbitmq, static_configs: [{targets: ['127.0.0.1:15692']}]}
  - job_name: rabbitmq-queues
    metrics_path: /metrics/detailed
    params: {family: [queue_coarse_metrics, queue_consumer_count]}
    static_configs: [{targets: ['127.0.0.1:15692']}]
YAML
}

# mon_start_exporters LOGDIR DATABASE: the Redis and PostgreSQL exporters on REDIS_EXPORTER_ADDR and
# POSTGRES_EXPORTER_ADDR; appends their pids to mon_pids.
mon_pids=()
mon_start_exporters() {
    local logs=$1 db=$2
    prometheus-redis-exporter -web.listen-address "$REDIS_EXPORTER_ADDR" -redis.addr redis://127.0.0.1:6379 \
        >"$logs/redis-exporter.log" 2>&1 &
    mon_pids+=($!)
    DATA_SOURCE_NAME="postgresql://postgres@127.0.0.1:5432/$db?sslmode=disable" prometheus-postgres-exporter \
        --web.listen-address="$POSTGRES_EXPORTER_ADDR" \
        --extend.query-path="$MON_ROOT/deploy/exporters/postgres-queries.yml" \
        >"$logs/postgres-exporter.log" 2>&1 &
    mon_pids+=($!)
}

# mon_start_prometheus CONFIG DATADIR ADDR LOG: appends its pid to mon_pids.
mon_start_prometheus() {
    prometheus --config.file="$1" --storage.tsdb.path="$2" --web.listen-address="$3" \
        --web.enable-lifecycle >"$4" 2>&1 &
    mon_pids+=($!)
}

mon_stop() {
    local pid
    for pid in "${mon_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${mon_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    mon_pids=()
}
