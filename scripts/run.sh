#!/usr/bin/env bash
# `make run`: migrate, start the four services (gateway, order-writer, payment with its simulated provider,
# expiry) against the local PostgreSQL, Redis and RabbitMQ, create a demo sale, and print how to reserve, check
# out and pay. Ctrl-C stops every service (SIGTERM, graceful). Logs go to .run/<service>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/debug
# Development mode: the services accept the development secrets of config/default.toml, which they refuse
# otherwise. Never in production; FLASHSALE__DEV=0 with real secrets runs this script without it.
export FLASHSALE__DEV=${FLASHSALE__DEV:-1}
# The storefront at / posts checkout to the payment service, another origin: allow the gateway's.
export FLASHSALE__PAYMENT__CORS_ALLOWED_ORIGINS=${FLASHSALE__PAYMENT__CORS_ALLOWED_ORIGINS:-http://127.0.0.1:8080,http://localhost:8080}
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
  storefront    $GATEWAY/       (open it in a browser; sign in with any name in development mode)
  gateway       $GATEWAY        (/healthz /readyz /metrics)
  payment       $PAYMENT        (checkout, webhook, simulated provider; /healthz /readyz /metrics)
  order-writer  http://127.0.0.1:8082  (/healthz /readyz /metrics)
  expiry        http://127.0.0.1:8083  (/healthz /readyz /metrics)
  RabbitMQ      amqp://guest:guest@127.0.0.1:5672  (queues flashsale.*)
  logs          .run/gateway.log .run/payment.log .run/order-writer.log .run/expiry.log

Demo sale $sale_id (payment window 10 minutes): $sale

1. Reserve one unit as demo-buyer, keeping the order id:
  TOKEN='$token'
  ORDER=\$(curl -sS -X POST $GATEWAY/api/v1/sales/$sale_id/reservations -H "Authorization: Bearer \$TOKEN" | sed -E 's/.*"order_id":"([^"]+)".*/\1/'); echo \$ORDER

2. Check out: the answer carries the payment id and its checkout_url.
  curl -sS -X POST $PAYMENT/api/v1/orders/\$ORDER/checkout -H "Authorization: Bearer \$TOKEN"

3. Pay: open the checkout_url in a browser and press Pay (or Fail). The same by curl, with the payment id:
  curl -sS -X POST $PAYMENT/psp/checkout/<payment_id>/complete -H 'Content-Type: application/json' -d '{"outcome":"succeeded"}'
   The simulator sends the signed webhook to the payment service and prints its answer (status paid, the
   shipping priority). Left unpaid, the order expires after the window and its unit is on sale again.

4. Look at it:
  curl -sS $GATEWAY/api/v1/orders/\$ORDER -H "Authorization: Bearer \$TOKEN"
  curl -sS $GATEWAY/api/v1/sales/$sale_id
Other buyers: target/debug/flashsale-mint-token <user id>

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
echo "flashsale: a service exited; see .run/*.log" >&2
exit 1
