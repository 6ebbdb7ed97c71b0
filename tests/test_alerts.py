"""Alerting rules: ``promtool check rules`` / ``promtool test rules``, required labels and annotations,
a runbook in docs/alerts.md per alert (its runbook_url), and the literals the chart's PrometheusRule
template replaces."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_docs import anchors

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "signalwire-video-exporter"
RULES = CHART / "files" / "alerts.rules.yaml"
TEMPLATE = CHART / "templates" / "prometheusrule.yaml"
UNIT_TESTS = sorted((ROOT / "tests" / "rules").glob("*.yaml"))
RUNBOOKS = ROOT / "docs" / "alerts.md"
RUNBOOK_BASE = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["runbookBaseUrl"]

# the matcher templates/prometheusrule.yaml replaces with prometheusRule.jobLabel, and the alerts that have it
JOB_LITERAL = 'job="signalwire-video-exporter"'
JOB_ALERTS = {"SignalWireVideoExporterDown", "SignalWireVideoTargetMissing"}
# alert -> (literal in its expr, the same default as its description states it, the key under
# prometheusRule.thresholds that replaces both): a threshold " > N" or a window "[N]"
THRESHOLDS = {
    "SignalWireVideoDataStale": [(" > 300", "more than 300 s", "staleSeconds")],
    "SignalWireVideoLongSession": [(" > 14400", "more than 14400 s", "longSessionSeconds")],
    "SignalWireVideoCostPerHourHigh": [(" > 10", "more than $10", "costPerHourDollars")],
    "SignalWireVideoRoomsAtCapacity": [
        (" > 5", "more than 5%", "atCapacityPercent"),
        ("[1h]", "in the last 1h", "atCapacityWindow"),
    ],
    "SignalWireVideoBudgetExceeded": [(" > 100", "more than 100%", "budgetPercent")],
    "SignalWireVideoBudgetForecast": [(" > 100", "more than 100%", "budgetForecastPercent")],
    "SignalWireVideoCostMismatch": [("[1h]", "in the last 1h", "costMismatchWindow")],
    "SignalWireVideoChargesStale": [(" > 3600", "more than 3600 s", "chargesStaleSeconds")],
}
REQUIRED_ALERTS = {
    "SignalWireVideoExporterDown",
    "SignalWireVideoTargetMissing",
    "SignalWireVideoAPIUnauthorized",
    "SignalWireVideoPollErrors",
    "SignalWireVideoDataStale",
    "SignalWireVideoLongSession",
    "SignalWireVideoCostPerHourHigh",
    "SignalWireVideoRoomsAtCapacity",
    "SignalWireVideoBudgetExceeded",
    "SignalWireVideoBudgetForecast",
    "SignalWireVideoCostMismatch",
    "SignalWireVideoChargesStale",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run must install Debian's prometheus package")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return path


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [_tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests() -> None:
    assert UNIT_TESTS
    result = subprocess.run(
        [_tool("promtool"), "test", "rules", *map(str, UNIT_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_cover_every_alert_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"


def test_every_rule_has_severity_summary_description() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert "alert" in rule, f"recording rules are not expected here: {rule}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
        # the chart's default base, so the plain file and the PrometheusRule link the same page
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"


def test_default_runbook_base_is_docs_alerts_md_of_the_chart_sources() -> None:
    (repository,) = yaml.safe_load((CHART / "Chart.yaml").read_text())["sources"]
    assert f"{repository}/blob/main/docs/alerts.md" == RUNBOOK_BASE


def test_every_runbook_url_points_at_a_heading_of_docs_alerts_md() -> None:
    headings = anchors(RUNBOOKS.read_text())
    for rule in _rules():
        fragment = rule["annotations"]["runbook_url"].partition("#")[2]
        assert fragment in headings, f"docs/alerts.md has no heading #{fragment} ({rule['alert']})"


def _default(literal: str) -> str:
    """The default value in an expr literal: "300" of " > 300", "1h" of "[1h]"."""
    return literal.strip(" >[]")


def test_descriptions_state_the_thresholds_the_chart_replaces() -> None:
    """Each such description states, once, the number or window its expr uses."""
    descriptions = {rule["alert"]: rule["annotations"]["description"] for rule in _rules()}
    for alert, literals in THRESHOLDS.items():
        for expr_literal, description_literal, _key in literals:
            assert descriptions[alert].count(description_literal) == 1, alert
            assert _default(expr_literal) in description_literal


def test_job_is_only_named_where_the_target_itself_is_checked() -> None:
    for rule in _rules():
        assert ("job=" in rule["expr"]) == (rule["alert"] in JOB_ALERTS), rule
        assert rule["expr"].count(JOB_LITERAL) == (rule["alert"] in JOB_ALERTS), rule


def test_template_literals_are_in_the_rules_the_template_and_the_chart_values() -> None:
    """The chart replaces these literals per alert: a threshold occurs exactly once in that alert's
    expr, a window is every range of it; the template's entry and the chart's default agree."""
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    template = TEMPLATE.read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["thresholds"]
    assert 'replace "job=\\"signalwire-video-exporter\\""' in template
    assert defaults.keys() == {key for literals in THRESHOLDS.values() for _, _, key in literals}
    for alert, literals in THRESHOLDS.items():
        for expr_literal, description_literal, key in literals:
            default = _default(expr_literal)
            if expr_literal.startswith("["):
                assert set(re.findall(r"\[[^\]]*\]", exprs[alert])) == {expr_literal}, alert
                default_in_template = f'"{default}"'
            else:
                assert exprs[alert].count(expr_literal) == 1, (alert, expr_literal)
                default_in_template = default
            # (list "<expr format>" <default> (get $th "<key>" | default <default>) "<description format>")
            entry = (
                f'(list "{expr_literal.replace(default, "%v")}" {default_in_template} '
                f'(get $th "{key}" | default {default_in_template}) '
                f'"{description_literal.replace("%", "%%").replace(default, "%v")}")'
            )
            assert entry in template, entry
            assert str(defaults[key]) == default, key


# chart values for the render test, each different from its default
CHART_THRESHOLDS = {
    "staleSeconds": 600,
    "longSessionSeconds": 7200,
    "costPerHourDollars": 2.5,
    "atCapacityPercent": 12.5,
    "atCapacityWindow": "3h",
    "budgetPercent": 90,
    "budgetForecastPercent": 120,
    "costMismatchWindow": "1d",
    "chargesStaleSeconds": 10800,
}


def _render_rule(helm: str, tmp_path: Path, prometheus_rule: dict[str, Any]) -> dict[str, Any]:
    """The chart's PrometheusRule rendered with these prometheusRule values."""
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "spaces": [{"name": "p", "space": "example", "projectId": "pid", "apiToken": "tok"}],
                "prometheusRule": {"enabled": True, **prometheus_rule},
            }
        )
    )
    result = subprocess.run(
        [
            helm,
            "template",
            "t",
            str(CHART),
            "--show-only",
            "templates/prometheusrule.yaml",
            "-f",
            str(values),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = yaml.safe_load(result.stdout)
    return doc


def test_helm_template_renders_values(helm: str, tmp_path: Path) -> None:
    """Render the chart's PrometheusRule with custom values and check the result."""
    doc = _render_rule(
        helm,
        tmp_path,
        {
            "jobLabel": "my-job",
            "namespace": "monitoring",
            "additionalLabels": {"release": "kube-prometheus-stack"},
            "thresholds": CHART_THRESHOLDS,
            "forDurations": {"SignalWireVideoDataStale": "7m", "SignalWireVideoBudgetForecast": "3h"},
            "runbookBaseUrl": "https://wiki.example.com/runbooks/swv/",
        },
    )
    assert doc["kind"] == "PrometheusRule" and doc["metadata"]["namespace"] == "monitoring"
    assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for g in doc["spec"]["groups"] for r in g["rules"]}
    assert rules.keys() == {r["alert"] for r in _rules()}
    assert rules["SignalWireVideoTargetMissing"]["expr"] == 'absent(up{job="my-job"})'
    assert rules["SignalWireVideoDataStale"]["for"] == "7m"
    for alert, literals in THRESHOLDS.items():
        (source,) = [r for r in _rules() if r["alert"] == alert]
        expr, description = source["expr"], source["annotations"]["description"]
        for expr_literal, description_literal, key in literals:
            default, value = _default(expr_literal), str(CHART_THRESHOLDS[key])
            expr = expr.replace(expr_literal, expr_literal.replace(default, value))
            description = description.replace(
                description_literal, description_literal.replace(default, value)
            )
        assert rules[alert]["expr"] == expr != source["expr"]
        assert (
            rules[alert]["annotations"]["description"] == description != source["annotations"]["description"]
        )
    assert "more than 12.5%" in rules["SignalWireVideoRoomsAtCapacity"]["annotations"]["description"]
    assert "[3h]" in rules["SignalWireVideoRoomsAtCapacity"]["expr"]
    assert rules["SignalWireVideoBudgetForecast"]["for"] == "3h"
    assert rules["SignalWireVideoBudgetExceeded"]["for"] == "5m"
    for alert, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/runbooks/swv#{alert.lower()}"
    assert "{{ $labels.space }}" in rules["SignalWireVideoLongSession"]["annotations"]["summary"]
    plain = tmp_path / "rendered.rules.yaml"
    plain.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    check = subprocess.run([_tool("promtool"), "check", "rules", str(plain)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_helm_template_leaves_out_disabled_alerts_and_adds_rule_labels(helm: str, tmp_path: Path) -> None:
    doc = _render_rule(
        helm,
        tmp_path,
        {
            "disabledAlerts": ["SignalWireVideoCostMismatch", "SignalWireVideoBudgetForecast"],
            "additionalRuleLabels": {"team": "video"},
        },
    )
    rules = {r["alert"]: r for g in doc["spec"]["groups"] for r in g["rules"]}
    sources = {r["alert"]: r for r in _rules()}
    assert rules.keys() == sources.keys() - {"SignalWireVideoCostMismatch", "SignalWireVideoBudgetForecast"}
    for alert, rule in rules.items():
        assert rule["labels"] == {**sources[alert]["labels"], "team": "video"}
