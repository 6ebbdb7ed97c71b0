"""Alerting rules: ``promtool check rules`` / ``promtool test rules``, required labels and annotations,
a runbook in docs/alerts.md per alert (its runbook_url), and the literals the chart's PrometheusRule
template replaces."""

from __future__ import annotations

import os
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

# alert -> literal in its expr that templates/prometheusrule.yaml replaces with a chart value
TEMPLATE_LITERALS = {
    "SignalWireVideoExporterDown": 'job="signalwire-video-exporter"',
    "SignalWireVideoTargetMissing": 'job="signalwire-video-exporter"',
    "SignalWireVideoDataStale": " > 300",
    "SignalWireVideoLongSession": " > 14400",
    "SignalWireVideoCostPerHourHigh": " > 10",
}
# alert -> the threshold as its description states it, replaced by the same chart value
DESCRIPTION_LITERALS = {
    "SignalWireVideoDataStale": "more than 300 s",
    "SignalWireVideoLongSession": "more than 14400 s",
    "SignalWireVideoCostPerHourHigh": "more than $10",
}
REQUIRED_ALERTS = {
    "SignalWireVideoExporterDown",
    "SignalWireVideoTargetMissing",
    "SignalWireVideoAPIUnauthorized",
    "SignalWireVideoPollErrors",
    "SignalWireVideoDataStale",
    "SignalWireVideoLongSession",
    "SignalWireVideoCostPerHourHigh",
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


def test_descriptions_state_the_thresholds_the_chart_replaces() -> None:
    """Each such description states, once, the number its expr compares against."""
    descriptions = {rule["alert"]: rule["annotations"]["description"] for rule in _rules()}
    for alert, literal in DESCRIPTION_LITERALS.items():
        assert descriptions[alert].count(literal) == 1, alert
        assert TEMPLATE_LITERALS[alert].split()[-1] in literal


def test_job_is_only_named_where_the_target_itself_is_checked() -> None:
    for rule in _rules():
        has_job = "job=" in rule["expr"]
        assert has_job == (TEMPLATE_LITERALS.get(rule["alert"]) == 'job="signalwire-video-exporter"'), rule


def test_template_literals_are_in_the_rules_and_the_template() -> None:
    """The chart replaces these literals per alert: each must occur exactly once in that alert's expr."""
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    template = TEMPLATE.read_text()
    assert 'replace "job=\\"signalwire-video-exporter\\""' in template
    for alert, literal in TEMPLATE_LITERALS.items():
        assert exprs[alert].count(literal) == 1, (alert, literal)
        if alert in DESCRIPTION_LITERALS:  # "<alert>" (list <default> <chart value> "<description format>")
            default = literal.split()[-1]
            (line,) = [line for line in template.splitlines() if f'"{alert}" (list {default} ' in line]
            description_format = DESCRIPTION_LITERALS[alert].replace(default, "%v")
            assert line.rstrip(" }").endswith(f'"{description_format}")'), line


def test_helm_template_renders_values(helm: str, tmp_path: Path) -> None:
    """Render the chart's PrometheusRule with custom values and check the result."""
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "spaces": [{"name": "p", "space": "example", "projectId": "pid", "apiToken": "tok"}],
                "prometheusRule": {
                    "enabled": True,
                    "jobLabel": "my-job",
                    "namespace": "monitoring",
                    "additionalLabels": {"release": "kube-prometheus-stack"},
                    "thresholds": {
                        "staleSeconds": 600,
                        "longSessionSeconds": 7200,
                        "costPerHourDollars": 2.5,
                    },
                    "forDurations": {"SignalWireVideoDataStale": "7m"},
                    "runbookBaseUrl": "https://wiki.example.com/runbooks/swv/",
                },
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
    doc = yaml.safe_load(result.stdout)
    assert doc["kind"] == "PrometheusRule" and doc["metadata"]["namespace"] == "monitoring"
    assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for g in doc["spec"]["groups"] for r in g["rules"]}
    assert rules.keys() == {r["alert"] for r in _rules()}
    assert rules["SignalWireVideoTargetMissing"]["expr"] == 'absent(up{job="my-job"})'
    assert rules["SignalWireVideoDataStale"]["for"] == "7m"
    for alert, old, new in [
        ("SignalWireVideoDataStale", "300 s", "600 s"),
        ("SignalWireVideoLongSession", "14400 s", "7200 s"),
        ("SignalWireVideoCostPerHourHigh", "$10", "$2.5"),
    ]:
        (source,) = [r for r in _rules() if r["alert"] == alert]
        threshold = " > " + new.strip("$ s")
        assert rules[alert]["expr"] == source["expr"].replace(TEMPLATE_LITERALS[alert], threshold)
        description = source["annotations"]["description"].replace(f"more than {old}", f"more than {new}")
        assert (
            rules[alert]["annotations"]["description"] == description != source["annotations"]["description"]
        )
    for alert, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/runbooks/swv#{alert.lower()}"
    assert "{{ $labels.space }}" in rules["SignalWireVideoLongSession"]["annotations"]["summary"]
    plain = tmp_path / "rendered.rules.yaml"
    plain.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    check = subprocess.run([_tool("promtool"), "check", "rules", str(plain)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
