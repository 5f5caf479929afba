#!/usr/bin/env bash
# `make check-deploy` (monitoring): the Prometheus configuration, alert rules and Grafana dashboards, checked
# with Debian's promtool and a real Prometheus.
#   static: promtool check config / check rules / test rules (a unit test per alert); every runbook_url
#           anchor exists in docs/operations.md; every dashboard is JSON and every panel's PromQL parses.
#   live:   the four services (debug binaries, development mode, a database and prefixes of their own), a
#           reservation that expires and a forged webhook (so every labelled metric has a series), the Redis and
#           PostgreSQL exporters, rabbitmq_prometheus and a Prometheus on free ports; every target up; every
#           rule and panel names only metrics some target exports; each service's /metrics passes
#           `promtool check metrics`. Everything it starts is stopped and removed at the end.
# Environment: FLASHSALE_BIN (service binaries; default ${CARGO_TARGET_DIR:-target}/debug),
# CHECK_MONITORING_LIVE=0 (static checks only).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prometheus-local.sh
. scripts/prometheus-local.sh

PROM=deploy/prometheus
DASHBOARDS=(deploy/grafana/dashboards/*.json)
TMP=$(mktemp -d /tmp/flashsale-check-monitoring.XXXXXX)
# The live part replaces this trap with one that also stops what it started.
trap 'rm -rf "$TMP"' EXIT
ok() { echo "check-monitoring: ok: $*"; }
fail() { echo "check-monitoring: FAILED: $*" >&2; exit 1; }

mon_ensure_packages

# --------------------------------------------------------------------------------------------- static
promtool check config --syntax-only "$PROM/prometheus.yml" >/dev/null || fail "promtool check config $PROM/prometheus.yml"
promtool check rules "$PROM"/rules/*.yml >/dev/null || fail "promtool check rules"
promtool test rules "$PROM"/tests/*.yml >"$TMP/test-rules.log" 2>&1 || { cat "$TMP/test-rules.log" >&2; fail "promtool test rules"; }
ok "promtool check config, check rules, test rules ($(ls "$PROM"/tests/*.yml | wc -l) test files)"

# Every alert has a unit test, a for:, a severity and a runbook whose anchor is a heading in operations.md.
anchors=$(sed -nE 's/^#+ +(.*)$/\1/p' docs/operations.md | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9 _-]//g; s/ /-/g')
alerts=$(sed -nE 's/^ *- alert: *([A-Za-z0-9_]+).*/\1/p' "$PROM"/rules/*.yml)
for alert in $alerts; do
    grep -q "alertname: $alert\$" "$PROM"/tests/*.yml || fail "alert $alert has no promtool unit test"
done
runbooks=$(sed -nE 's/^ *runbook_url: *docs\/operations\.md#(.*)$/\1/p' "$PROM"/rules/*.yml)
[[ $(wc -w <<<"$runbooks") == $(wc -w <<<"$alerts") ]] || fail "every alert needs runbook_url: docs/operations.md#runbook-..."
for anchor in $runbooks; do
    grep -qx -- "$anchor" <<<"$anchors" || fail "runbook anchor #$anchor is not a heading of docs/operations.md"
done
ok "$(wc -w <<<"$alerts") alerts each have a unit test and a runbook in docs/operations.md"

# Dashboard expressions, with Grafana's variables replaced: intervals by 1m, template variables by ".*"
# (they only appear inside label matchers).
for d in "${DASHBOARDS[@]}"; do jq -e '.title and (.panels | length > 0)' "$d" >/dev/null || fail "$d is not a dashboard"; done
jq -r '.. | objects | select(has("expr")) | .expr | @json' "${DASHBOARDS[@]}" |
    sed -E 's/\$__(rate_interval|interval|range)/1m/g; s/\$\{?[A-Za-z_]+\}?/.*/g' >"$TMP/panels.jsonl"
# JSON is YAML: the expressions as recording rules, which promtool parses.
jq -s '{groups: [{name: "dashboards", rules: [to_entries[] | {record: "dashboard:expr:\(.key)", expr: .value}]}]}' \
    "$TMP/panels.jsonl" >"$TMP/panels-rules.json"
promtool check rules "$TMP/panels-rules.json" >"$TMP/panels-check.log" 2>&1 ||
    { cat "$TMP/panels-check.log" >&2; fail "a dashboard expression does not parse"; }
ok "${#DASHBOARDS[@]} dashboards, $(wc -l <"$TMP/panels.jsonl") panel expressions parse"

[[ ${CHECK_MONITORING_LIVE:-1} == 0 ]] && exit 0
# shellcheck source=scripts/check-monitoring-live.sh
. scripts/check-monitoring-live.sh
