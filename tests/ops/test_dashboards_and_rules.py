"""Grafana dashboard and Prometheus rules: only metrics and labels the code exports, promtool clean."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from quantum_exec.ops import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "quantum-exec.json"
METRIC = re.compile(r"\b(quantum_exec_[a-zA-Z0-9_]+)")
SELECTOR = re.compile(r"\b(quantum_exec_[a-zA-Z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LABEL_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
# Labels Prometheus adds at scrape time (prometheus.yml) and the histogram bucket label.
TARGET_LABELS = frozenset({"job", "instance", "service"})


def exported() -> dict[str, frozenset[str]]:
    """Every sample name the service exposes -> the labels it can carry."""
    names: dict[str, frozenset[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        labels = frozenset(obj._labelnames)
        base = obj._name
        if obj._type == "counter":
            names[f"{base}_total"] = labels
        elif obj._type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            names[base] = labels
    for family in metrics.PROCESS.collect():
        for sample in family.samples:
            names[sample.name] = frozenset()
    return names


def check_expression(expr: str, where: str) -> list[str]:
    known = exported()
    problems = []
    used = set(METRIC.findall(expr))
    for name in sorted(used - set(known)):
        problems.append(f"{where}: {name} is not exported by quantum_exec.ops.metrics")
    allowed = set(TARGET_LABELS).union(*(known.get(n, frozenset()) for n in used))
    for name, matchers in SELECTOR.findall(expr):
        for label in LABEL_MATCHER.findall(matchers):
            if label not in TARGET_LABELS | known.get(name, frozenset()):
                problems.append(f"{where}: {name} has no label {label!r}")
    for group in GROUPING.findall(expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            if label not in allowed:
                problems.append(f"{where}: grouping by {label!r}, which none of {sorted(used)} has")
    return problems


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((f"panel {panel['title']!r}", target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return found


def test_checker_catches_drift() -> None:
    # The checks below must be able to fail.
    assert check_expression("rate(quantum_exec_intents_total[5m])", "x") == []
    assert check_expression("quantum_exec_no_such_thing", "x") != []
    assert check_expression('quantum_exec_intents_total{symbol="BTCUSDT"}', "x") != []
    assert check_expression("sum by (symbol) (quantum_exec_intents_total)", "x") != []
    assert check_expression("sum by (le) (quantum_exec_intent_latency_seconds_bucket)", "x") == []


def test_dashboard_uses_only_exported_metrics() -> None:
    expressions = dashboard_expressions()
    assert len(expressions) > 20
    problems = [p for where, expr in expressions for p in check_expression(expr, where)]
    assert problems == []


def test_dashboard_covers_the_operational_questions() -> None:
    text = " ".join(expr for _, expr in dashboard_expressions())
    for metric in (
        "quantum_exec_intents_received_total",
        "quantum_exec_intents_total",
        "quantum_exec_intent_latency_seconds_bucket",
        "quantum_exec_step_latency_seconds_bucket",
        "quantum_exec_consumer_lag_entries",
        "quantum_exec_pending_entries",
        "quantum_exec_rate_limit_used_weight_1m",
        "quantum_exec_rate_limit_weight_limit_1m",
        "quantum_exec_exchange_errors_total",
        "quantum_exec_positions_opened_total",
        "quantum_exec_dead_letters_total",
        "quantum_exec_clock_offset_seconds",
        "quantum_exec_exchange_info_age_seconds",
    ):
        assert metric in text, f"no panel shows {metric}"


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "quantum-exec"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    # The provisioned data source's uid is what the dashboard's variable defaults to.
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: quantum-prometheus" in datasource
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == "quantum-prometheus"
    provider = (ROOT / "deploy/grafana/provisioning/dashboards/quantum.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider


def rule_expressions(text: str) -> list[tuple[str, str]]:
    """(alert, expr) from alerts.yml: one-line ``expr: ...`` or a folded block below ``expr: >-``."""
    found: list[tuple[str, str]] = []
    lines = text.splitlines()
    alert = ""
    for i, line in enumerate(lines):
        if m := re.match(r"^\s*- alert: (\w+)$", line):
            alert = m[1]
        m = re.match(r"^(\s*)expr: (.*)$", line)
        if not m:
            continue
        indent, first = len(m[1]), m[2].strip()
        if first not in {">-", ">", "|", "|-"}:
            found.append((alert, first))
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        found.append((alert, " ".join(block)))
    return found


def test_alert_rules_use_only_exported_metrics() -> None:
    text = (PROMETHEUS / "alerts.yml").read_text()
    expressions = rule_expressions(text)
    assert len(expressions) == text.count("- alert: ")
    problems = [p for alert, expr in expressions for p in check_expression(expr, alert)]
    assert problems == []
    # Annotations name metrics too: they must not send a person looking for a name that is gone.
    families = {name.removesuffix("_bucket") for name in exported()} | set(exported())
    assert sorted(set(METRIC.findall(text)) - families) == []


def test_every_alert_has_severity_summary_description_and_a_test() -> None:
    rules = (PROMETHEUS / "alerts.yml").read_text()
    tests = (PROMETHEUS / "alerts_test.yml").read_text()
    alerts = re.findall(r"^\s*- alert: (\w+)$", rules, flags=re.M)
    assert len(alerts) >= 9
    blocks = re.split(r"^\s*- alert: ", rules, flags=re.M)[1:]
    for name, block in zip(alerts, blocks, strict=True):
        assert re.search(r"severity: (critical|warning|info)\b", block), name
        assert "summary:" in block and "description:" in block, name
        tested = re.findall(rf"alertname: {name}$", tests, flags=re.M)
        assert len(tested) >= 2, f"{name}: needs a firing and a not-firing case in alerts_test.yml"
        fired = re.search(rf"alertname: {name}\n\s+exp_alerts:\n\s+- exp_labels", tests)
        assert fired, f"{name}: no case where it fires"
        quiet = re.search(rf"alertname: {name}\n\s+exp_alerts: \[\]", tests)
        assert quiet, f"{name}: no case where it stays quiet"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install --no-install-recommends prometheus)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_and_config() -> None:
    tool = promtool()
    rules = run(tool, "check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = run(tool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests() -> None:
    result = run(promtool(), "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_protection_states_are_preinitialised_and_match_the_contract() -> None:
    from quantum_exec.contracts import ProtectionState

    assert set(metrics.PROTECTION_STATES) == {s.value for s in ProtectionState}
    text = generate_latest(metrics.REGISTRY).decode()
    for state in metrics.PROTECTION_STATES:
        assert f'quantum_exec_positions_opened_total{{protection="{state}"}}' in text
