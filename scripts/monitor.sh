#!/usr/bin/env bash
# `make monitor`: watch the stack that `make run` started, without Docker. Installs Prometheus and the Redis and
# PostgreSQL exporters from Debian when missing, enables rabbitmq_prometheus, and runs them on local ports with
# the jobs and alert rules of deploy/prometheus (data in .run/monitor). Prints the Prometheus URL; Ctrl-C stops
# what it started.
# Environment: MONITOR_PROMETHEUS_PORT (9090), MONITOR_REDIS_EXPORTER_PORT (9121),
# MONITOR_POSTGRES_EXPORTER_PORT (9187), MONITOR_DATABASE (flashsale).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prometheus-local.sh
. scripts/prometheus-local.sh

PROM_ADDR=127.0.0.1:${MONITOR_PROMETHEUS_PORT:-9090}
# shellcheck disable=SC2034 # read by mon_write_config and mon_start_exporters
{
    REDIS_EXPORTER_ADDR=127.0.0.1:${MONITOR_REDIS_EXPORTER_PORT:-9121}
    POSTGRES_EXPORTER_ADDR=127.0.0.1:${MONITOR_POSTGRES_EXPORTER_PORT:-9187}
    # The ports `make run` uses (config/default.toml).
    GATEWAY_ADDR=127.0.0.1:8080 PAYMENT_ADDR=127.0.0.1:8081
    ORDER_WRITER_ADDR=127.0.0.1:8082 EXPIRY_ADDR=127.0.0.1:8083
}
DIR=.run/monitor
mkdir -p "$DIR"

for addr in "$PROM_ADDR" "$REDIS_EXPORTER_ADDR" "$POSTGRES_EXPORTER_ADDR"; do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then
        mon_die "$addr is taken (is make monitor already running?); stop it or set MONITOR_*_PORT"
    fi
done
curl -fs -o /dev/null --max-time 2 "http://$GATEWAY_ADDR/readyz" ||
    mon_say "the gateway does not answer on $GATEWAY_ADDR yet: start the stack with make run (its targets show down until then)"

mon_ensure_packages
mon_enable_rabbitmq_prometheus
mon_write_config "$DIR/prometheus.yml"
promtool check config "$DIR/prometheus.yml" >/dev/null || mon_die "the generated $DIR/prometheus.yml is invalid"

trap mon_stop EXIT
# An interrupt ends the wait below; exit 0 then (the EXIT trap stops what was started).
trap 'echo; mon_say "stopping monitoring"; exit 0' INT TERM
mon_start_exporters "$DIR" "${MONITOR_DATABASE:-flashsale}"
mon_start_prometheus "$DIR/prometheus.yml" "$DIR/data" "$PROM_ADDR" "$DIR/prometheus.log"
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$PROM_ADDR/-/ready" 2>/dev/null && break
    sleep 0.2
done
curl -fsS -o /dev/null "http://$PROM_ADDR/-/ready" || mon_die "Prometheus did not start; see $DIR/prometheus.log"

cat <<MSG

flashsale monitoring is running.
  Prometheus      http://$PROM_ADDR   (targets: /targets, alerts: /alerts, rules from deploy/prometheus/rules)
  Redis exporter  http://$REDIS_EXPORTER_ADDR/metrics
  PG exporter     http://$POSTGRES_EXPORTER_ADDR/metrics
  RabbitMQ        http://127.0.0.1:15692/metrics (rabbitmq_prometheus)
  logs            $DIR/*.log
Dashboards: deploy/grafana/dashboards/*.json (import them into a Grafana pointed at the URL above).
Ctrl-C stops Prometheus and the exporters.
MSG
wait -n "${mon_pids[@]}" || true
mon_die "a monitoring process exited; see $DIR/*.log"
