#!/usr/bin/env bash
# `make check-deploy`: every deployment check that exists (compose, Kubernetes, monitoring), in turn.
set -euo pipefail
cd "$(dirname "$0")/.."
for area in compose k8s monitoring; do
    script=scripts/check-$area.sh
    [[ -x $script ]] || continue
    echo "check-deploy: $area"
    "$script"
done
