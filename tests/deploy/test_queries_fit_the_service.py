"""Every query of the dashboard and of the alert rules selects what the service really exports.

A query that names a metric, a label or a route the service does not have is not an error to
Prometheus: it just finds nothing, and a panel stays empty or an alert never fires. So, from the
service's own code (``service.metrics.Metrics`` for the metrics and their labels, ``create_app``'s
routes for the route templates the ``route`` label takes):

* every metric an alert rule selects is exported (test_dashboard.py checks the dashboard's);
* every label a selector matches on is one of that metric's labels (or a label Prometheus adds);
* every label of ``by``/``on``/``ignoring`` is a label of a metric the expression selects;
* every value a ``route`` matcher names is a route of the app (each alternative of a regex too), so
  the latency panels and alerts filtered on ``route="/classify"`` do select /classify.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from service.main import create_app
from service.metrics import Metrics
from service.settings import Settings
from tests.deploy.test_alerts import RULES
from tests.deploy.test_dashboard import _SUFFIXES, PROMETHEUS_SERIES, metric_names

# Labels Prometheus gives every scraped series (the target's) and those of the series it makes itself.
TARGET_LABELS = {"instance", "job"}
OWN_SERIES_LABELS = {"ALERTS": {"alertname", "alertstate", "severity"}, "ALERTS_FOR_STATE": {"alertname", "severity"},
                     "up": set()}  # fmt: skip
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@pytest.fixture(scope="module")
def labels_of() -> dict[str, set[str]]:
    """Every sample name the service exports, mapped to the labels its series carry on /metrics."""
    out: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, MetricWrapperBase):
            for suffix in _SUFFIXES[metric._type]:
                out[metric._name + suffix] = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
    for name, own in OWN_SERIES_LABELS.items():
        out[name] = own
    return {name: labels | TARGET_LABELS for name, labels in out.items()}


@pytest.fixture(scope="module")
def routes() -> set[str]:
    return set(create_app(Settings(checkpoint="unused")).openapi()["paths"])


def rule_queries() -> dict[str, str]:
    """Each alert rule's expression, by alert name."""
    groups = yaml.safe_load(Path(RULES).read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}


def problems(expr: str, labels_of: dict[str, set[str]], routes: set[str]) -> list[str]:
    """What in ``expr`` selects nothing the service exports, in words (empty when all of it does)."""
    found = []
    names = metric_names(expr)
    found += [f"no metric {n}" for n in sorted(names - set(labels_of) - PROMETHEUS_SERIES)]
    for name, matchers in _SELECTOR.findall(expr):
        for label, op, value in _MATCHER.findall(matchers):
            if label not in labels_of.get(name, set()):
                found.append(f"{name} has no label {label!r}")
            elif label == "route":
                patterns = value.split("|") if "~" in op else [re.escape(value)]
                found += [
                    f"no route matches {p.replace(chr(92), '')!r} (of {label}{op}{value!r})"
                    for p in patterns
                    if not any(re.fullmatch(p, r) for r in routes)
                ]
    known = set().union(*(labels_of.get(n, set()) for n in names))
    for group in _GROUPING.findall(expr):
        found += [f"no selected metric has label {g!r}" for g in re.findall(r"\w+", group) if g not in known]
    return found


def test_the_checks_find_what_selects_nothing(labels_of, routes):
    good = 'sum by (instance, route) (rate(ilcs_requests_total{route=~"/classify|/v2/models/.+/infer"}[5m]))'
    assert problems(good, labels_of, routes) == []
    assert problems('rate(ilcs_requests_total{route="/clasify"}[5m])', labels_of, routes) == [
        "no route matches '/clasify' (of route='/clasify')"
    ]
    assert problems('rate(ilcs_requests_total{route=~"/classify|/v2/infer"}[5m])', labels_of, routes) == [
        "no route matches '/v2/infer' (of route=~'/classify|/v2/infer')"
    ]
    assert problems('ilcs_queue_depth{route="/classify"}', labels_of, routes) == [
        "ilcs_queue_depth has no label 'route'"
    ]
    assert problems("sum by (reason) (ilcs_inference_seconds_count)", labels_of, routes) == [
        "no selected metric has label 'reason'"
    ]
    assert problems("ilcs_queue_depths", labels_of, routes) == ["no metric ilcs_queue_depths"]


def test_routes_the_dashboard_and_rules_name_are_the_apps(routes):
    """The route templates the inference filters are built from exist (else the check above proves little)."""
    assert {"/classify", "/classify/batch", "/v2/models/{model_name}/infer", "/metrics", "/readyz"} <= routes


@pytest.mark.parametrize("alert", sorted(rule_queries()))
def test_every_alert_selects_what_the_service_exports(alert, labels_of, routes):
    assert problems(rule_queries()[alert], labels_of, routes) == []


def test_every_dashboard_query_selects_what_the_service_exports(dashboard_queries, labels_of, routes):
    bad = {f"{q.panel} [{q.ref}]": p for q in dashboard_queries if (p := problems(q.expr, labels_of, routes))}
    assert not bad, bad


def test_latency_figures_are_of_inference_routes_only(dashboard_queries):
    """No latency quantile or alert mixes probes, /metrics or metadata into its figure: each names its routes."""
    latency = [q.expr for q in dashboard_queries if "ilcs_request_duration_seconds" in q.expr]
    latency += [e for e in rule_queries().values() if "ilcs_request_duration_seconds" in e]
    assert latency
    for expr in latency:
        assert re.search(r'route(=|=~)"', expr), f"latency over every route, probes included: {expr}"
