#!/usr/bin/env bash
# `make check-deploy`: the checks of the deployment files, one script per area, each run when present:
# scripts/check-compose.sh (Dockerfile, docker-compose.yml, load balancer), scripts/check-k8s.sh (deploy/k8s)
# and scripts/check-monitoring.sh (deploy/prometheus, deploy/grafana). Stops at the first that fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ran=0
for area in compose k8s monitoring; do
    script=$ROOT/scripts/check-$area.sh
    [[ -f $script ]] || continue
    echo "flashsale: check-deploy: $area"
    bash "$script" || { echo "flashsale: check-deploy: ERROR: scripts/check-$area.sh failed" >&2; exit 1; }
    ran=$((ran + 1))
done
# No check at all means the scripts went missing, not that everything is fine.
((ran > 0)) || { echo "flashsale: check-deploy: ERROR: no scripts/check-*.sh found" >&2; exit 1; }
echo "flashsale: check-deploy: $ran area(s) ok"
