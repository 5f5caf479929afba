#!/usr/bin/env bash
# Check deploy/k8s without a cluster: render each overlay offline (`kubectl kustomize`), validate the rendered
# objects against the Kubernetes 1.30 schemas (`kubernetes-validate --strict`), the KEDA objects against KEDA's
# (cloudcoil.models.keda), then scripts/check_k8s.py (probes, drain vs grace period, autoscalers, secrets).
# Then the same checks are run on broken copies, each of which must fail: a check that cannot fail proves nothing.
# Never `kubectl apply`, not even with --dry-run: without a kubeconfig it calls localhost:8080 (the gateway).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_VERSION=1.30

say() { echo "check-k8s: $*"; }
die() { echo "check-k8s: ERROR: $*" >&2; exit 1; }

command -v kubectl >/dev/null 2>&1 ||
    die "kubectl is missing (it renders the overlays offline with its built-in kustomize); install kubectl >= 1.27 (https://kubernetes.io/docs/tasks/tools/)"
BIN=$("$ROOT/scripts/ensure-tools.sh")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# validate FILE...: kubernetes-validate on rendered files; prints every failure or warning except the expected
# ones about KEDA's kinds (an unknown apiVersion is only a warning, so warnings count). Returns 1 when it printed.
validate() {
    local log
    log=$("$BIN/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet "$@" 2>&1 || true)
    log=$(grep -v -E "Couldn't find schema for kind (ScaledObject|TriggerAuthentication) with api version keda\.sh/v1alpha1" <<<"$log" || true)
    [[ -z $log ]] || { echo "$log"; return 1; }
}

mkdir -p "$WORK/rendered"
rendered=()
for overlay in "$ROOT"/deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    kubectl kustomize "$overlay" >"$WORK/rendered/$name.yaml" || die "kubectl kustomize $overlay failed"
    rendered+=("$WORK/rendered/$name.yaml")
done
[[ ${#rendered[@]} -gt 0 ]] || die "no overlay in deploy/k8s/overlays"
validate "${rendered[@]}" >&2 || die "the rendered overlays do not match the Kubernetes $K8S_VERSION schemas (see above)"
"$BIN/python" "$ROOT/scripts/check_k8s.py" "${rendered[@]}" || die "deploy/k8s has the problems above"
say "deploy/k8s: overlays $(basename -a -s .yaml "${rendered[@]}" | tr '\n' ' ')render and pass every check"

# Self-test. broken BY FILE OLD NEW WHY: a copy of deploy/k8s with OLD replaced by NEW in FILE (base files are
# shared by both overlays, so the prod render is enough) must be refused by BY: `schema` (kubernetes-validate) or
# `check` (check_k8s.py, KEDA's schema included). The copies are checked together at the end (tools start slowly).
mkdir -p "$WORK/broken"
BROKEN=() SCHEMA=() CHECK=()
broken() {
    local by=$1 file=$2 old=$3 new=$4 why=$5 copy
    copy=$WORK/broken/${#BROKEN[@]}
    cp -r "$ROOT/deploy/k8s" "$copy"
    OLD=$old NEW=$new "$BIN/python" -c '
import os, sys
path, old, new = sys.argv[1], os.environ["OLD"], os.environ["NEW"]
text = open(path).read()
sys.exit(old not in text or open(path, "w").write(text.replace(old, new, 1)) is None)' "$copy/$file" ||
        die "self-test: the text to break ($why) is gone from $file: update scripts/check-k8s.sh"
    echo "$why" >"$copy/why"
    # A copy kustomize itself refuses is refused: nothing to validate.
    kubectl kustomize "$copy/overlays/prod" >"$copy.yaml" || die "self-test: kustomize refused the copy ($why)"
    BROKEN+=("$copy.yaml")
    if [[ $by == schema ]]; then SCHEMA+=("$copy.yaml"); else CHECK+=("$copy.yaml"); fi
}
broken check base/gateway.yaml "path: /healthz" "path: /readyz" "liveness on /readyz"
broken check base/expiry.yaml "terminationGracePeriodSeconds: 30" "terminationGracePeriodSeconds: 25" \
    "grace period not longer than preStop + drain"
broken check base/kustomization.yaml "FLASHSALE__PAYMENT__SHUTDOWN_DELAY_MS=1000" \
    "FLASHSALE__PAYMENT__SHUTDOWN_DELAY_MS=5000" "grace period not longer than preStop + readiness delay + drain"
broken schema base/gateway.yaml "containerPort: 8080" "containerPort: 8080
              protocl: TCP" "an unknown Deployment key (kubernetes-validate --strict)"
broken check base/hpa.yaml "name: gateway
  minReplicas" "name: order-writer
  minReplicas" "an HPA and a ScaledObject on order-writer"
broken check base/kustomization.yaml "- FLASHSALE__DEV=false" "- FLASHSALE__DEV=false
      - FLASHSALE__AUTH__ADMIN_TOKEN=in-the-configmap" "a secret in the ConfigMap"
broken check base/kustomization.yaml "- FLASHSALE__DEV=false" "- FLASHSALE__DEV=false
      - FLASHSALE__GATEWAY__MAX_INFLIGHT=100" "a setting the services do not know"
broken check base/keda.yaml "pollingInterval: 10" "pollingIntervall: 10" "an unknown ScaledObject key"
broken check base/keda.yaml 'value: "4000"' "value: 4000" "a trigger metadata value that is not a string"
broken check base/keda.yaml "queueName: flashsale.expiry.due" "queueName: flashsale.expiry" "expiry scaled on a wrong queue"
broken check base/gateway.yaml "            preStop:
              sleep:
                seconds: 5" "            postStart:
              sleep:
                seconds: 5" "no preStop sleep"
broken schema base/hpa.yaml "apiVersion: autoscaling/v2" "apiVersion: autoscaling/v3" "an API version Kubernetes 1.30 lacks"

# Those kubernetes-validate refuses are done; every other one must be refused by check_k8s.py.
# One run of each tool for all its copies; kubernetes-validate's lines name the file.
validate "${SCHEMA[@]}" >"$WORK/validate.log" || true
for copy in "${SCHEMA[@]}"; do
    grep -q -F "$copy " "$WORK/validate.log" ||
        die "self-test: kubernetes-validate passed a broken copy ($(cat "${copy%.yaml}/why"))"
done
if ! "$BIN/python" "$ROOT/scripts/check_k8s.py" --must-fail "${CHECK[@]}" >"$WORK/must-fail.log"; then
    cat "$WORK/must-fail.log" >&2
    for copy in $(grep "NO PROBLEM FOUND" "$WORK/must-fail.log" | cut -d: -f1); do
        echo "check-k8s: passed although broken: $(cat "${copy%.yaml}/why")" >&2
    done
    die "self-test: check_k8s.py passed a broken copy of deploy/k8s"
fi
[[ ${FLASHSALE_CHECK_VERBOSE:-0} == 1 ]] && cat "$WORK/validate.log" "$WORK/must-fail.log" 2>/dev/null
say "self-test: ${#BROKEN[@]} broken copies of deploy/k8s, each refused"
