#!/usr/bin/env bash
# `make check-deploy`: every deployment check present (compose, Kubernetes, monitoring), each its own script.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for area in compose k8s monitoring; do
    script=$ROOT/scripts/check-$area.sh
    [[ -x $script ]] && "$script"
done
exit 0
