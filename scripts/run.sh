#!/usr/bin/env bash
# `make run`: migrate, start gateway and order-writer against the local services, create a demo sale, and print
# how to reserve. Ctrl-C stops both services (SIGTERM, graceful). Logs go to .run/<service>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/debug
# Development mode: the services accept the development secrets of config/default.toml, which they refuse
# otherwise. Never in production; FLASHSALE__DEV=0 with real secrets runs this script without it.
export FLASHSALE__DEV=${FLASHSALE__DEV:-1}
GATEWAY=http://127.0.0.1:8080
ADMIN_TOKEN=${FLASHSALE__AUTH__ADMIN_TOKEN:-dev-only-admin-token-change-me}
mkdir -p .run

"$BIN/flashsale-migrate"

LOGS=.run
# shellcheck source=scripts/stack.sh
. scripts/stack.sh
# shellcheck disable=SC2317 # called by the trap
stop() {
    echo
    echo "flashsale: stopping services"
    stop_stack
}
trap stop EXIT INT TERM
start_stack

starts=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
ends=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
sale=$(curl -fsS -X POST "$GATEWAY/api/v1/admin/sales" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"product_name\":\"Demo phone\",\"price\":\"2990.00\",\"stock\":100,\"per_user_limit\":1,\"starts_at\":\"$starts\",\"ends_at\":\"$ends\",\"payment_window_secs\":600}")
sale_id=$(sed -E 's/.*"id":([0-9]+).*/\1/' <<<"$sale")
token=$("$BIN/flashsale-mint-token" demo-buyer 86400)

cat <<MSG

flashsale is running.
  gateway       $GATEWAY        (/healthz /readyz /metrics)
  order-writer  http://127.0.0.1:8082  (/healthz /readyz /metrics)
  RabbitMQ      amqp://guest:guest@127.0.0.1:5672  (queues flashsale.*)
  logs          .run/gateway.log .run/order-writer.log

Demo sale $sale_id: $sale

Reserve one unit as demo-buyer:
  curl -i -X POST $GATEWAY/api/v1/sales/$sale_id/reservations -H 'Authorization: Bearer $token'
Then look at it:
  curl $GATEWAY/api/v1/me/orders -H 'Authorization: Bearer $token'
  curl $GATEWAY/api/v1/sales/$sale_id
Other buyers: target/debug/flashsale-mint-token <user id>

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
echo "flashsale: a service exited; see .run/*.log" >&2
exit 1
