"""deploy/prometheus/prometheus.yml: valid for promtool, and in step with Grafana's datasource."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def promtool_check(promtool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_config(tool):
    result = promtool_check(tool("promtool"), CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tool, tmp_path):
    """The check above can fail: a scrape timeout longer than the interval is refused."""
    good, bad = tmp_path / "good" / "prometheus.yml", tmp_path / "bad" / "prometheus.yml"
    for config in (good, bad):
        config.parent.mkdir()
        (config.parent / "alerts.yml").write_text((CONFIG.parent / "alerts.yml").read_text())
    good.write_text(CONFIG.read_text())
    bad.write_text(CONFIG.read_text().replace("scrape_timeout: 4s", "scrape_timeout: 1m"))
    assert promtool_check(tool("promtool"), good).returncode == 0  # the copy alone is fine
    assert promtool_check(tool("promtool"), bad).returncode != 0


def test_grafana_knows_the_scrape_interval(prometheus_config):
    """Grafana's $__rate_interval is 4x the datasource's timeInterval: it must be the scrape interval."""
    (datasource,) = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["jsonData"]["timeInterval"] == prometheus_config["global"]["scrape_interval"]
