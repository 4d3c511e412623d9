"""deploy/prometheus/alerts.yml: valid rules, loaded by the compose Prometheus, and each one unit-tested.

``promtool test rules`` runs deploy/prometheus/alerts.test.yml: synthetic series for every alert
(a target down, no target at all, 5xx against 503, a standing queue, slow answers, low confidence, a class mix far
from training) and healthy traffic that raises none. test_prometheus_e2e.py runs the same rules
in a real Prometheus against a real service.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
EXPECTED = {"ILCSInspectorDown", "ILCSNoInspector", "ILCSServerErrors", "ILCSLoadShedding", "ILCSQueueBacklog",
            "ILCSSlowAnswers", "ILCSLowConfidence", "ILCSClassMixDrift"}  # fmt: skip


def promtool(tool, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent)


def alert_names(path: Path) -> set[str]:
    return {r["alert"] for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "alert" in r}


def test_promtool_accepts_the_rules(tool):
    result = promtool(tool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(tool):
    result = promtool(tool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing():
    tested = yaml.safe_load(RULE_TESTS.read_text())
    fired = {t["alertname"] for case in tested["tests"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alert_names(RULES) == EXPECTED
    assert fired == EXPECTED, f"never shown firing: {EXPECTED - fired}"


def test_the_unit_tests_can_fail(tool, tmp_path):
    """A rule whose threshold changed no longer meets its test: the test above is not vacuous."""
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace("> 0.05", "> 0.5"))  # shedding at 50%
    (tmp_path / "alerts.test.yml").write_text(RULE_TESTS.read_text())
    result = subprocess.run([tool("promtool"), "test", "rules", "alerts.test.yml"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0 and "ILCSLoadShedding" in result.stdout + result.stderr


def test_compose_prometheus_loads_the_rules(compose, prometheus_config):
    assert prometheus_config["rule_files"] == ["alerts.yml"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
