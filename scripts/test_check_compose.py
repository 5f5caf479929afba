"""check_compose.py on the real files (clean) and on broken copies of them (each problem found).

Run: .venv-tools/bin/python -m unittest scripts/test_check_compose.py (scripts/check-compose.sh does).
"""

import copy
import os
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_compose  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = os.path.join(ROOT, "docker-compose.yml")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")


class CheckCompose(unittest.TestCase):
    def setUp(self):
        with open(COMPOSE, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)

    def errors_of(self, doc, dockerfile=DOCKERFILE):
        # The copy sits beside the real file, so its relative bind mounts resolve the same way.
        fd, path = tempfile.mkstemp(suffix=".yml", dir=ROOT)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                yaml.safe_dump(doc, f)
            return check_compose.check(path, dockerfile)[0]
        finally:
            os.unlink(path)

    def assert_found(self, mutate, expected):
        doc = copy.deepcopy(self.doc)
        mutate(doc["services"])
        errors = self.errors_of(doc)
        self.assertTrue(any(expected in e for e in errors), f"expected {expected!r} in {errors}")

    def test_the_real_file_is_clean(self):
        self.assertEqual(check_compose.check(COMPOSE, DOCKERFILE)[0], [])

    def test_depends_on_an_unknown_service(self):
        self.assert_found(
            lambda s: s["gateway"]["depends_on"].update({"redis-cache": {"condition": "service_started"}}),
            "depends_on names 'redis-cache'",
        )

    def test_depends_on_list_form_unknown_service(self):
        self.assert_found(lambda s: s["lb"].update({"depends_on": ["gateway", "gatewy"]}), "'gatewy'")

    def test_waiting_for_health_of_a_service_without_healthcheck(self):
        self.assert_found(lambda s: s["redis"].pop("healthcheck"), "waits for redis to be healthy")

    def test_waiting_for_completion_of_a_restarting_job(self):
        self.assert_found(lambda s: s["migrate"].update({"restart": "unless-stopped"}), "waits for migrate to complete")

    def test_scaled_service_with_container_name(self):
        self.assert_found(lambda s: s["gateway"].update({"container_name": "gw"}), "container_name")

    def test_scaled_service_with_fixed_host_port(self):
        self.assert_found(lambda s: s["order-writer"].update({"ports": ["8082:8082"]}), "fixed host port 8082")

    def test_unknown_build_target(self):
        self.assert_found(lambda s: s["expiry"]["build"].update({"target": "expiry-svc"}), "'expiry-svc' is not a stage")

    def test_unknown_build_arg(self):
        self.assert_found(lambda s: s["gateway"]["build"].update({"args": {"RUST_VERSON": "1.95"}}), "'RUST_VERSON'")

    def test_probe_port_not_exposed_by_the_target(self):
        self.assert_found(
            lambda s: s["payment"]["healthcheck"].update({"test": ["CMD", "/usr/local/bin/flashsale-probe", "8080", "/readyz"]}),
            "healthcheck probes 8080",
        )

    def test_missing_bind_mount(self):
        self.assert_found(lambda s: s["lb"]["volumes"].__setitem__(0, "./deploy/nginx:/etc/nginx:ro"), "./deploy/nginx")

    def test_stop_grace_period_shorter_than_delay_plus_drain(self):
        self.assert_found(lambda s: s["payment"].update({"stop_grace_period": "21s"}), "payment: stop_grace_period 21s")

    def test_stop_grace_period_against_a_raised_delay(self):
        self.assert_found(
            lambda s: s["expiry"]["environment"].update({"FLASHSALE__EXPIRY__SHUTDOWN_DELAY_MS": "5000"}),
            "expiry.shutdown_delay_ms = 5000 ms",
        )

    def test_docker_default_stop_grace_period(self):
        self.assert_found(lambda s: s["gateway"].pop("stop_grace_period"), "10s (Docker default)")

    def test_durations(self):
        self.assertEqual(check_compose.duration_ms("25s"), 25_000)
        self.assertEqual(check_compose.duration_ms("1m30s"), 90_000)
        self.assertEqual(check_compose.duration_ms("500ms"), 500)
        self.assertIsNone(check_compose.duration_ms("25"))

    def test_dockerfile_facts(self):
        stages, args = check_compose.dockerfile_facts(DOCKERFILE)
        for target in ("gateway", "payment", "order-writer", "expiry", "migrate"):
            self.assertIn(target, stages)
        self.assertEqual(stages["gateway"], {"8080"})
        self.assertEqual(stages["migrate"], set())
        self.assertIn("RUST_VERSION", args)


if __name__ == "__main__":
    unittest.main()
