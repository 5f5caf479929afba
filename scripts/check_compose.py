"""Consistency checks of docker-compose.yml against itself and the Dockerfile, beyond the compose-spec schema.

Usage: check_compose.py COMPOSE_FILE DOCKERFILE. Prints every problem found and exits 1 if there is one.
The schema (check-jsonschema) says the keys and types are right; this says the file hangs together:
  - every depends_on names a defined service;
  - a service others wait on with service_healthy has a healthcheck; one waited on with
    service_completed_successfully is a one-shot job (never restarted after success);
  - a service built from the Dockerfile (one that can be scaled) has no container_name and no fixed host port;
  - each build target is a Dockerfile stage, each build arg a Dockerfile ARG, and the port a service exposes and
    probes is the port its target EXPOSEs;
  - every bind-mounted path exists (for a service under a profile, a missing one is only a warning);
  - a flashsale service's stop_grace_period exceeds its readiness delay plus its drain (shutdown_delay_ms +
    shutdown_grace_ms, from its environment or config/default.toml), or Docker SIGKILLs the drain.
"""

import os
import re
import sys
import tomllib

import yaml

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "config", "default.toml"), "rb") as _f:
    DEFAULTS = tomllib.load(_f)
# The settings section of each service built from the Dockerfile (by its build target).
SECTION = {"gateway": "gateway", "order-writer": "order_writer", "payment": "payment", "expiry": "expiry"}
# Docker's stop_grace_period when a service sets none.
DEFAULT_STOP_GRACE_MS = 10_000
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)")
UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1, "us": 0.001}


def duration_ms(text):
    """A compose duration ("25s", "1m30s", "500ms") in milliseconds; None when it is not one."""
    text = str(text).strip()
    parts = DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * UNIT_MS[u] for n, u in parts)


def environment(service):
    """A service's environment as a dict, from either the map or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return env


def stop_ms(service, section):
    """(shutdown_delay_ms, shutdown_grace_ms) as the container sees them; a value taken from .env counts as the
    default (it cannot be known here)."""
    env = environment(service)
    values = []
    for name in ("shutdown_delay_ms", "shutdown_grace_ms"):
        value = str(env.get(f"FLASHSALE__{section.upper()}__{name.upper()}", ""))
        values.append(int(value) if value.isdigit() else DEFAULTS[section][name])
    return tuple(values)


def dockerfile_facts(path):
    """Stages (name -> set of EXPOSEd ports) and ARG names of a Dockerfile."""
    stages, args, current = {}, set(), None
    with open(path, encoding="utf-8") as f:
        # Join continuation lines, drop comments.
        text = re.sub(r"\\\n", " ", f.read())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.search(r"\s+AS\s+(\S+)\s*$", rest, re.IGNORECASE)
            current = m.group(1).lower() if m else None
            if current:
                parent = rest.split()[0].lower()
                # A stage built FROM another inherits its EXPOSEd ports.
                stages[current] = set(stages.get(parent, set()))
        elif word == "ARG":
            args.add(rest.split("=", 1)[0].strip())
        elif word == "EXPOSE" and current:
            stages[current].update(p.split("/")[0] for p in rest.split())
    return stages, args


def depends_on(service):
    """depends_on as {name: condition}, from either the list or the map form."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def host_port(entry):
    """The fixed host port of a `ports` entry, or None when Docker picks one."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return str(published) if published not in (None, "") else None
    parts = str(entry).split(":")
    # "8080" -> container port only; "8080:80" and "127.0.0.1:8080:80" -> fixed host port.
    return parts[-2] if len(parts) >= 2 and parts[-2] else None


def healthcheck_port(service):
    test = (service.get("healthcheck") or {}).get("test") or []
    if isinstance(test, list) and len(test) >= 3 and test[1].endswith("flashsale-probe"):
        return str(test[2])
    return None


def check(compose_path, dockerfile_path):
    with open(compose_path, encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    stages, args = dockerfile_facts(dockerfile_path)
    base = os.path.dirname(os.path.abspath(compose_path))
    services = compose.get("services") or {}
    errors, warnings = [], []

    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            if dep not in services:
                errors.append(f"{name}: depends_on names {dep!r}, which is not a service of this file")
                continue
            if condition not in CONDITIONS:
                errors.append(f"{name}: depends_on {dep} has an unknown condition {condition!r}")
            target = services[dep]
            check_ = target.get("healthcheck") or {}
            if condition == "service_healthy" and (not check_.get("test") or check_.get("disable")):
                errors.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            if condition == "service_completed_successfully" and str(target.get("restart", "no")) not in (
                "no",
                "on-failure",
            ):
                errors.append(f"{name}: waits for {dep} to complete, but {dep} restarts ({target['restart']})")

        build = svc.get("build")
        if build is not None:
            # Built from our Dockerfile: a flashsale service, which must stay scalable.
            if "container_name" in svc:
                errors.append(f"{name}: container_name stops `--scale {name}=N`")
            for entry in svc.get("ports") or []:
                if host_port(entry):
                    errors.append(f"{name}: fixed host port {host_port(entry)} stops `--scale {name}=N`")
            if isinstance(build, dict):
                target = build.get("target")
                if target is None or target.lower() not in stages:
                    errors.append(f"{name}: build target {target!r} is not a stage of the Dockerfile")
                else:
                    exposed = stages[target.lower()]
                    for port in svc.get("expose") or []:
                        if str(port) not in exposed:
                            errors.append(f"{name}: exposes {port}, the Dockerfile's {target} EXPOSEs {sorted(exposed)}")
                    probe = healthcheck_port(svc)
                    if probe is not None and probe not in exposed:
                        errors.append(f"{name}: healthcheck probes {probe}, the Dockerfile's {target} EXPOSEs {sorted(exposed)}")
                build_args = build.get("args") or {}
                names = build_args if isinstance(build_args, dict) else [a.split("=")[0] for a in build_args]
                for arg in names:
                    if arg not in args:
                        errors.append(f"{name}: build arg {arg!r} is not an ARG of the Dockerfile")

        target = (build or {}).get("target") if isinstance(build, dict) else None
        if target in SECTION:
            delay, grace = stop_ms(svc, SECTION[target])
            period = svc.get("stop_grace_period")
            period_ms = DEFAULT_STOP_GRACE_MS if period is None else duration_ms(period)
            if period_ms is None:
                errors.append(f"{name}: stop_grace_period {period!r} is not a duration")
            elif period_ms <= delay + grace:
                errors.append(
                    f"{name}: stop_grace_period {period or '10s (Docker default)'} must exceed the readiness delay "
                    f"({SECTION[target]}.shutdown_delay_ms = {delay} ms) + the drain "
                    f"({SECTION[target]}.shutdown_grace_ms = {grace} ms), or Docker SIGKILLs the drain"
                )

        for volume in svc.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and source.startswith((".", "/")) and not os.path.exists(os.path.join(base, source)):
                message = f"{name}: bind-mounted {source} does not exist"
                (warnings if svc.get("profiles") else errors).append(message)

    return errors, warnings


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check_compose.py COMPOSE_FILE DOCKERFILE")
    errors, warnings = check(sys.argv[1], sys.argv[2])
    for w in warnings:
        print(f"flashsale: warning: {sys.argv[1]}: {w}", file=sys.stderr)
    for e in errors:
        print(f"flashsale: ERROR: {sys.argv[1]}: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"flashsale: {sys.argv[1]} is consistent with itself and {sys.argv[2]}")


if __name__ == "__main__":
    main()
