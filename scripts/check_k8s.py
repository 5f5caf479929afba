"""Checks of a rendered kustomize overlay that the Kubernetes schemas cannot make (run by scripts/check-k8s.sh).

Usage: check_k8s.py RENDERED.yaml... (each the output of `kubectl kustomize` of one overlay).
Exits 1 naming every problem found, 0 when there is none. What is checked, and why, is in docs/operations.md
("Deploying on Kubernetes").
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = tomllib.loads((ROOT / "config" / "default.toml").read_text())

# Which settings section times each service's stop (its `shutdown_delay_ms` and `shutdown_grace_ms`).
SECTION = {"gateway": "gateway", "order-writer": "order_writer", "payment": "payment", "expiry": "expiry"}
# The queue each consumer reads, after amqp.prefix (crates/broker/src/names.rs).
QUEUE = {"order-writer": "order-writer", "payment": "payment", "expiry": "expiry.due"}
KEDA_MODELS = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication}
# Settings that are secrets (docs/operations.md, "Secrets to replace in production"): URLs carry passwords.
SECRET_KEY = re.compile(r"SECRET|TOKEN|PASSWORD|^FLASHSALE__(REDIS|AMQP|POSTGRES)__URL$")


def env_names(table, prefix="FLASHSALE"):
    """Every FLASHSALE__SECTION__KEY that config/default.toml defines (the services refuse any other)."""
    for key, value in table.items():
        name = f"{prefix}__{key.upper()}"
        if isinstance(value, dict):
            yield from env_names(value, name)
        else:
            yield name


KNOWN_SETTINGS = set(env_names(DEFAULTS))
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Overlay:
    def __init__(self, path):
        self.path = path
        self.docs = [d for d in yaml.load_all(Path(path).read_text(), Loader=LOADER) if d]
        self.problems = []

    def kind(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def named(self, kind):
        return {d["metadata"]["name"]: d for d in self.kind(kind)}

    def fail(self, what, problem):
        self.problems.append(f"{self.path}: {what}: {problem}")


def check_keda(o):
    """KEDA objects against cloudcoil's models: a key the model drops on the way back is unknown to KEDA."""
    for doc in o.docs:
        if not doc.get("apiVersion", "").startswith("keda.sh/"):
            continue
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        model = KEDA_MODELS.get(doc["kind"])
        if model is None:
            o.fail(what, "a KEDA kind this check does not know")
            continue
        try:
            dumped = model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json")
        except Exception as e:  # pydantic's ValidationError names the field and what it expected
            o.fail(what, f"not a valid {doc['kind']}: {e}")
            continue
        lost = sorted(unknown_keys(doc, dumped))
        if lost or dumped != doc:
            o.fail(what, f"keys unknown to the KEDA schema: {', '.join(lost) or 'values changed by it'}")


def unknown_keys(doc, kept, path=""):
    """Paths of `doc` that the schema's dump `kept` lacks."""
    if isinstance(doc, dict) and isinstance(kept, dict):
        for k, v in doc.items():
            if k not in kept:
                yield f"{path}.{k}".lstrip(".")
            else:
                yield from unknown_keys(v, kept[k], f"{path}.{k}")
    elif isinstance(doc, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(doc, kept)):
            yield from unknown_keys(a, b, f"{path}[{i}]")


def setting_ms(o, container, service, name):
    """One of the service's settings as the pod sees it: its env, then its ConfigMaps, then default.toml."""
    key = f"FLASHSALE__{SECTION[service].upper()}__{name.upper()}"
    for e in container.get("env", []):
        if e["name"] == key and "value" in e:
            return int(e["value"])
    maps = o.named("ConfigMap")
    for src in container.get("envFrom", []):
        data = maps.get(src.get("configMapRef", {}).get("name"), {}).get("data", {})
        if key in data:
            return int(data[key])
    return DEFAULTS[SECTION[service]][name]


def stop_ms(o, container, service):
    """How long the service may take from SIGTERM to exit: its readiness delay (shutdown_delay_ms, /readyz 503
    while still serving), then the drain (shutdown_grace_ms)."""
    delay = setting_ms(o, container, service, "shutdown_delay_ms")
    grace = setting_ms(o, container, service, "shutdown_grace_ms")
    return delay, grace


def check_deployment(o, d):
    name = d["metadata"]["name"]
    what = f"Deployment/{name}"
    if name not in SECTION:
        o.fail(what, f"unknown service (known: {', '.join(SECTION)}); add it to SECTION in this check")
        return
    pod = d["spec"]["template"]["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        o.fail(what, "the pod must set securityContext.runAsNonRoot: true")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    for c in pod["containers"]:
        cw = f"{what} container {c['name']}"
        live = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
        ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
        if live != "/healthz":
            o.fail(cw, f"liveness must be GET /healthz (no dependency check restarts pods), got {live}")
        if ready != "/readyz":
            o.fail(cw, f"readiness must be GET /readyz, got {ready}")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part, {})):
                o.fail(cw, f"resources.{part} must set cpu and memory")
        if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
            o.fail(cw, "securityContext.allowPrivilegeEscalation must be false")
        sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
        if sleep is None:
            o.fail(cw, "needs a native preStop sleep, so endpoints drop the pod before SIGTERM")
            continue
        delay, drain = stop_ms(o, c, name)
        if grace * 1000 <= sleep * 1000 + delay + drain:
            o.fail(cw, f"terminationGracePeriodSeconds {grace} s must exceed preStop {sleep} s + the readiness "
                       f"delay ({SECTION[name]}.shutdown_delay_ms = {delay} ms) + the drain "
                       f"({SECTION[name]}.shutdown_grace_ms = {drain} ms), or the kubelet kills the drain")


def check_autoscaling(o):
    """No workload under two autoscalers; each target exists and leaves its replica count to its autoscaler."""
    deployments = o.named("Deployment")
    owners = {}
    for h in o.kind("HorizontalPodAutoscaler"):
        ref = h["spec"]["scaleTargetRef"]
        owners.setdefault((ref["kind"], ref["name"]), []).append(f"HorizontalPodAutoscaler/{h['metadata']['name']}")
    for s in o.kind("ScaledObject"):
        ref = s["spec"]["scaleTargetRef"]
        owners.setdefault((ref.get("kind", "Deployment"), ref["name"]), []).append(
            f"ScaledObject/{s['metadata']['name']}")
    for (kind, name), by in owners.items():
        what = f"{kind}/{name}"
        if len(by) > 1:
            o.fail(what, f"scaled by both {' and '.join(by)}: they would fight over the replica count")
        if kind != "Deployment" or name not in deployments:
            o.fail(what, f"{by[0]} targets a workload that is not in the overlay")
        elif "replicas" in deployments[name]["spec"]:
            o.fail(what, f"sets spec.replicas although {by[0]} owns it (every apply would reset it)")
    auths = o.named("TriggerAuthentication")
    prefix = DEFAULTS["amqp"]["prefix"]
    for m in o.kind("ConfigMap"):
        prefix = m.get("data", {}).get("FLASHSALE__AMQP__PREFIX", prefix)
    for s in o.kind("ScaledObject"):
        what = f"ScaledObject/{s['metadata']['name']}"
        target = s["spec"]["scaleTargetRef"]["name"]
        for t in s["spec"].get("triggers", []):
            queue = t.get("metadata", {}).get("queueName")
            if t.get("type") == "rabbitmq" and target in QUEUE and queue != prefix + QUEUE[target]:
                o.fail(what, f"{target} consumes {prefix + QUEUE[target]}, but the trigger reads {queue!r}")
            auth = t.get("authenticationRef", {}).get("name")
            if auth is not None and auth not in auths:
                o.fail(what, f"authenticationRef {auth} names no TriggerAuthentication of the overlay")


def check_references(o):
    """Every referenced Secret or ConfigMap key exists (a missing one leaves the pod in CreateContainerConfigError)."""
    secrets, maps = o.named("Secret"), o.named("ConfigMap")

    def has(objs, name, key):
        obj = objs.get(name)
        return obj is not None and (key is None or key in obj.get("data", {}) or key in obj.get("stringData", {}))

    for a in o.kind("TriggerAuthentication"):
        for ref in a["spec"].get("secretTargetRef", []):
            if not has(secrets, ref["name"], ref["key"]):
                o.fail(f"TriggerAuthentication/{a['metadata']['name']}", f"no Secret {ref['name']} key {ref['key']}")
    for w in o.kind("Deployment") + o.kind("Job"):
        what = f"{w['kind']}/{w['metadata']['name']}"
        for c in w["spec"]["template"]["spec"]["containers"]:
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef") or src.get("secretRef")
                objs = maps if "configMapRef" in src else secrets
                if not has(objs, ref["name"], None):
                    o.fail(what, f"envFrom names {ref['name']}, which the overlay does not have")
            for e in c.get("env", []):
                if e["name"].startswith("FLASHSALE__") and e["name"] not in KNOWN_SETTINGS:
                    o.fail(what, f"{e['name']} is no setting of config/default.toml (the service would refuse it)")
                if SECRET_KEY.search(e["name"]) and "value" in e:
                    o.fail(what, f"{e['name']} is a secret written in the manifest: take it from the Secret")
                ref = e.get("valueFrom", {}).get("secretKeyRef") or e.get("valueFrom", {}).get("configMapKeyRef")
                if ref and not has(secrets if "secretKeyRef" in e["valueFrom"] else maps, ref["name"], ref["key"]):
                    o.fail(what, f"{e['name']} refers to {ref['name']} key {ref['key']}, which does not exist")


def check_config(o):
    """Settings are real ones; secrets live only in Secrets, and Secrets hold only secrets."""
    for m in o.kind("ConfigMap"):
        for key in m.get("data", {}):
            if key.startswith("FLASHSALE__") and key not in KNOWN_SETTINGS:
                o.fail(f"ConfigMap/{m['metadata']['name']}", f"{key} is no setting of config/default.toml")
            if SECRET_KEY.search(key):
                o.fail(f"ConfigMap/{m['metadata']['name']}", f"{key} is a secret: move it to the Secret")
    for s in o.kind("Secret"):
        for key in list(s.get("data", {})) + list(s.get("stringData", {})):
            if key not in KNOWN_SETTINGS:
                o.fail(f"Secret/{s['metadata']['name']}", f"{key} is no setting of config/default.toml")
            elif not SECRET_KEY.search(key):
                o.fail(f"Secret/{s['metadata']['name']}", f"{key} is not a secret: put it in the ConfigMap")


def check(path):
    """Every problem of one rendered overlay."""
    o = Overlay(path)
    if not o.kind("Deployment"):
        o.fail("overlay", "renders no Deployment")
    if not o.kind("Job"):
        o.fail("overlay", "has no migration Job")
    check_keda(o)
    for d in o.kind("Deployment"):
        check_deployment(o, d)
    check_autoscaling(o)
    check_references(o)
    check_config(o)
    return o.problems


def main(args):
    # --must-fail: each file is a deliberately broken render; print the problems found in each, and fail when
    # one of them has none (the self-test of scripts/check-k8s.sh, in one process: the imports take a second).
    if args[:1] == ["--must-fail"]:
        passed = []
        for path in args[1:]:
            problems = check(path)
            print(f"{problems[0] if problems else path + ': NO PROBLEM FOUND'}")
            if not problems:
                passed.append(path)
        return 1 if passed else 0
    problems = [p for path in args for p in check(path)]
    for p in problems:
        print(f"check-k8s: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
