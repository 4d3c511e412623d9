"""The Grafana dashboard names only metrics the service exports, and shows each of them.

The exported names come from the service's own metrics module (``service.metrics.Metrics``,
the registry a live app serves on /metrics), never from a copy kept here; the end-to-end
test (test_prometheus_e2e.py) then runs every query against a real Prometheus.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"

# Sample-name suffixes prometheus-client exposes per metric type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# Series Prometheus makes itself (its alert rules' state, each target's scrape), not the service.
PROMETHEUS_SERIES = {"ALERTS", "ALERTS_FOR_STATE", "up"}
# PromQL words that look like metric names but are not.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "Inf", "NaN", "atan2"}  # fmt: skip


@pytest.fixture(scope="module")
def exported() -> dict[str, str]:
    """Every sample name the service exports, mapped to its metric family."""
    from service.metrics import Metrics

    names = {}
    for family in Metrics().registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
        for sample in family.samples:  # families that already have samples say so themselves
            names[sample.name] = family.name
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations are not)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range selectors and subqueries
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    s = re.sub(r"\blabel_values\s*\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)", r" \1 ", s)  # Grafana's variable query
    names = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", s):
        if m.group(2) is None and m.group(1) not in _KEYWORDS:  # a name followed by "(" is a function
            names.add(m.group(1))
    return names


def unexported(dashboard: dict, exported: dict[str, str]) -> dict[str, set[str]]:
    """Per panel title (or variable name), the metric names its queries use that the service does not export."""
    bad: dict[str, set[str]] = {}

    def check(where: str, expr: str) -> None:
        missing = metric_names(expr) - set(exported) - PROMETHEUS_SERIES
        if missing:
            bad.setdefault(where, set()).update(missing)

    def walk(panels: list[dict]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    check(p.get("title", "?"), t["expr"])
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            check(f"variable ${var['name']}", query)
    return bad


def test_metric_name_extraction():
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(ilcs_request_duration_seconds_bucket{instance=~"$instance",'
        ' route="/classify"}[$__rate_interval]))) / on(instance) group_left ilcs_model_info offset 5m'
    )
    assert metric_names(expr) == {"ilcs_request_duration_seconds_bucket", "ilcs_model_info"}
    assert metric_names("label_values(ilcs_model_info, instance)") == {"ilcs_model_info"}
    assert metric_names("sum(rate(a_total[5m])) / sum(rate(b_total[5m])) > bool 0.5") == {"a_total", "b_total"}


def test_every_query_names_an_exported_metric(dashboard, exported):
    bad = unexported(dashboard, exported)
    assert not bad, f"dashboard queries use metrics the service does not export: {bad}; exported: {sorted(exported)}"


def test_a_misspelt_metric_is_caught(dashboard, exported):
    """The check above can fail: rename one metric in a copy of the dashboard."""
    broken = copy.deepcopy(dashboard)
    (target,) = (t for p in broken["panels"] if p["title"] == "Low-confidence rate" for t in p["targets"])
    target["expr"] = target["expr"].replace("ilcs_low_confidence_total", "ilcs_low_confidence_count")
    assert unexported(broken, exported) == {"Low-confidence rate": {"ilcs_low_confidence_count"}}


def test_every_service_metric_is_on_the_dashboard(dashboard_queries, exported):
    """Both ways: a metric the service adds (prefix ilcs_) gets a panel, or this test says which one lacks it."""
    used = {exported[n] for q in dashboard_queries for n in metric_names(q.expr) if n in exported}
    families = {f for f in exported.values() if f.startswith("ilcs_")}
    assert families - used == set(), f"no panel shows {sorted(families - used)}"


def _rows(panels: list[dict]) -> dict[str, list[dict]]:
    """Panels by the row above them (a flat, expanded layout, or a collapsed row's own panels)."""
    rows: dict[str, list[dict]] = {}
    current = None
    for p in panels:
        if p["type"] == "row":
            current = p["title"]
            rows[current] = list(p.get("panels", []))
        else:
            assert current is not None, f"panel {p['title']!r} is above the first row"
            rows[current].append(p)
    return rows


def test_rows_alerts_then_replicas_then_operations_then_quality(dashboard):
    rows = _rows(dashboard["panels"])
    assert list(rows) == ["Alerts", "Replicas", "Operations", "Quality"]
    alert_exprs = [t["expr"] for p in rows["Alerts"] for t in p["targets"]]
    assert alert_exprs and all('ALERTS{alertstate="firing"}' in e for e in alert_exprs)

    # Replicas: how many are up, and requests, latency and queue summed over the replicas and per replica.
    replica_exprs = [t["expr"] for p in rows["Replicas"] for t in p["targets"]]
    assert any(e.startswith('count(up{job="ilcs-inspector"}') for e in replica_exprs)
    for metric in ("ilcs_requests_total", "ilcs_request_duration_seconds_bucket", "ilcs_queue_depth"):
        mine = [e for e in replica_exprs if metric in e]
        assert any("by (instance" in e for e in mine) and any("instance)" not in e for e in mine), metric

    def families(row: str) -> set[str]:
        exprs = [t["expr"] for p in rows[row] for t in p.get("targets", [])]
        return {re.sub(r"_(bucket|sum|count|total)$", "", n) for e in exprs for n in metric_names(e)}

    # Operations: traffic and errors, latency, queue, batching, inference, device.
    assert {"ilcs_requests", "ilcs_request_duration_seconds", "ilcs_queue_depth", "ilcs_queue_wait_seconds",
            "ilcs_batch_size", "ilcs_inference_seconds", "ilcs_model_info"} <= families("Operations")  # fmt: skip
    # Quality: class mix, low-confidence rate, count per class over the shift.
    assert {"ilcs_predictions", "ilcs_low_confidence", "ilcs_confidence"} <= families("Quality")
    shift = [
        p
        for p in rows["Quality"]
        for t in p.get("targets", [])
        if "[$shift]" in t["expr"] and "by (label)" in t["expr"]
    ]
    assert shift, "the Quality row has no count per class over the shift"


def test_panels_are_well_formed(dashboard, panels):
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (uid,) = (d["uid"] for d in provisioned if d["type"] == "prometheus")
    bound = {"type": "prometheus", "uid": uid}  # the provisioned datasource, not whichever one is picked
    for p in panels:
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        assert p.get("description"), f"panel {p['title']!r} says not what it shows"
        for t in [p, *p["targets"]]:
            assert t["datasource"] == bound, p["title"]
        for t in p["targets"]:
            for name in re.findall(r"\$\{?(\w+)", t["expr"]):
                assert name.startswith("__") or name in variables, f"{p['title']}: ${name} is not a variable"
