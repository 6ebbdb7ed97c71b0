"""The Helm chart in helm/signalwire-video-exporter, checked with a real Helm binary.

* ``helm lint --strict`` and ``helm template`` for every ``ci/*-values.yaml``;
* every rendered document validated offline and strictly (unknown fields rejected) against the
  Kubernetes OpenAPI schemas of ``K8S_VERSION`` with ``kubernetes-validate``. ServiceMonitor and
  PrometheusRule (``monitoring.coreos.com/v1``) are custom resources whose schemas that package does
  not ship: they are explicitly skipped there and checked by the assertions below instead;
* assertions on the rendered objects (security context, probes, secret wiring, persistence,
  opt-ins off by default), and the rendered exporter configuration accepted by the exporter itself;
* the default values, which have no credentials, fail with a clear message;
* the web config (``webConfig``): its Secret, mount and ``--web.config.file`` argument, the probes
  (HTTPS, or tcpSocket with mutual TLS), the ServiceMonitor's scheme and credentials, the schema,
  and the rendered web config accepted by the exporter and by ``promtool check web-config`` once the
  files are laid out as the pod's projected volume would hold them.

Helm is the one on the ``PATH``, or else the one ``scripts/install-helm`` installs. Without Helm, or
without ``kubernetes-validate``, the tests are skipped, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import base64
import datetime
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.config import parse_config
from exporter.webconfig import load_web_config

from .conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "signalwire-video-exporter"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
K8S_VERSION = "1.30.0"
RELEASE, NAMESPACE = "sw", "monitoring"
FULLNAME = f"{RELEASE}-signalwire-video-exporter"
# Custom resources of the Prometheus Operator: no schema in kubernetes-validate, checked below.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
NO_CREDENTIALS = "signalwire-video-exporter: no SignalWire credentials given"
SPACE = {
    "name": "production",
    "space": "example",
    "projectId": "00000000-0000-0000-0000-000000000000",
}
TOKEN = "PT-test-token-value"

Doc = dict[str, Any]


@pytest.fixture(scope="session")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return kubernetes_validate


# Stand-ins for the alert rules and dashboard files when they are not in the chart (yet): only
# used in a temporary copy, never written into the checkout.
_PLACEHOLDERS = {
    "files/dashboard.json": '{"title": "placeholder"}\n',
    "files/alerts.rules.yaml": "groups: []\n",
    "templates/prometheusrule.yaml": (
        "{{- if .Values.prometheusRule.enabled }}\n"
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n"
        "metadata:\n  name: {{ .Release.Name }}\nspec:\n  groups: []\n{{- end }}\n"
    ),
}


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("chart") / CHART.name
    shutil.copytree(CHART, copy)
    for rel, text in _PLACEHOLDERS.items():
        if not (copy / rel).exists():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            (copy / rel).write_text(text)
    return copy


def _run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _assert_check_config_ok(*args: str) -> None:
    """``python -m exporter --check-config ARGS`` accepts what the chart rendered."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config OK" in proc.stdout


def _dry_run_install(helm: str, chart: Path, values: str) -> subprocess.CompletedProcess[str]:
    """``helm install --dry-run=client``: renders NOTES.txt as an install would print it."""
    return _run(
        helm, "install", RELEASE, str(chart), "--dry-run=client", "--namespace", NAMESPACE, "--values", values
    )


def _template(helm: str, chart: Path, *values_files: Path) -> subprocess.CompletedProcess[str]:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    for path in values_files:
        args += ["--values", str(path)]
    return _run(helm, *args)


def _docs(proc: subprocess.CompletedProcess[str]) -> list[Doc]:
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture
def render(helm: str, chart: Path, tmp_path: Path) -> Iterator[Any]:
    def _render(values: dict[str, Any]) -> list[Doc]:
        return _docs(_template(helm, chart, _values_file(tmp_path, values)))

    yield _render


def _one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def _kinds(docs: list[Doc]) -> set[str]:
    return {d["kind"] for d in docs}


def _container(docs: list[Doc]) -> Doc:
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["exporter"]
    return dict(pod["containers"][0])


def _config(docs: list[Doc]) -> Doc:
    cm = _one(docs, "ConfigMap", FULLNAME)
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


# --- lint, render and validate every CI values file --------------------------------------------


def test_ci_values_files_exist() -> None:
    assert len(CI_VALUES) >= 2, CI_VALUES


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict(helm: str, chart: Path, values: Path) -> None:
    proc = _run(helm, "lint", "--strict", str(chart), "--values", str(values))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_rendered_documents_validate_against_kubernetes_schemas(
    helm: str, chart: Path, kubernetes_validate: Any, values: Path
) -> None:
    docs = _docs(_template(helm, chart, values))
    assert docs
    validated = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            # Explicitly skipped: kubernetes-validate has no schemas for CRDs.
            assert doc["metadata"]["name"] and doc["spec"]
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} ({values.name}): {exc}")
        validated += 1
    assert validated >= 5


def test_one_ci_values_file_enables_every_opt_in(helm: str, chart: Path) -> None:
    wanted = {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PersistentVolumeClaim"}
    for values in CI_VALUES:
        docs = _docs(_template(helm, chart, values))
        dashboards = [
            d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
        ]
        if wanted <= _kinds(docs) and dashboards:
            return
    pytest.fail("no ci/*-values.yaml enables every opt-in")


# --- credentials --------------------------------------------------------------------------------


def test_default_values_fail_with_a_clear_message(helm: str, chart: Path) -> None:
    proc = _template(helm, chart)
    assert proc.returncode != 0
    assert NO_CREDENTIALS in proc.stderr
    assert "existingSecret" in proc.stderr
    install = _run(helm, "install", RELEASE, str(chart), "--dry-run=client", "--namespace", NAMESPACE)
    assert install.returncode != 0
    assert NO_CREDENTIALS in install.stderr
    # `helm lint` renders in lint mode, where Helm turns `fail` into a log line (so that charts with
    # required values can be linted): the message shows, the exit status does not change.
    lint = _run(helm, "lint", "--strict", str(chart))
    assert NO_CREDENTIALS in lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"spaces": [SPACE]}, 'no SignalWire credentials for space "production": set spaces[0].apiToken'),
        ({"spaces": [{**SPACE, "projectId": "", "apiToken": TOKEN}]}, "spaces[0].projectId is required"),
        (
            {"spaces": [{**SPACE, "apiToken": TOKEN}], "existingSecret": "creds"},
            "spaces[0].apiToken and existingSecret are both set",
        ),
        (
            {"spaces": [{**SPACE, "apiToken": TOKEN}], "persistence": {"enabled": True}, "replicaCount": 2},
            "persistence.enabled needs replicaCount 1",
        ),
        (
            {"spaces": [{**SPACE, "apiToken": TOKEN}, {**SPACE, "apiToken": TOKEN}]},
            'spaces[1].name "production" is used twice',
        ),
    ],
)
def test_invalid_values_fail_with_a_clear_message(
    helm: str, chart: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    proc = _template(helm, chart, _values_file(tmp_path, values))
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_schema_rejects_unknown_values(helm: str, chart: Path, tmp_path: Path) -> None:
    values = {"spaces": [{**SPACE, "apiToken": TOKEN}], "replicas": 2}
    proc = _template(helm, chart, _values_file(tmp_path, values))
    assert proc.returncode != 0
    assert "replicas" in proc.stderr


# --- the rendered objects -----------------------------------------------------------------------


@pytest.fixture
def default_docs(render: Any) -> list[Doc]:
    docs: list[Doc] = render({"spaces": [{**SPACE, "apiToken": TOKEN}]})
    return docs


def test_opt_ins_are_off_by_default(default_docs: list[Doc]) -> None:
    kinds = _kinds(default_docs)
    assert kinds == {"ServiceAccount", "Secret", "ConfigMap", "Service", "Deployment", "Pod"}
    assert [d["metadata"]["name"] for d in default_docs if d["kind"] == "ConfigMap"] == [FULLNAME]
    deployment = _one(default_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"].get("strategy", {}).get("type") != "Recreate"
    assert _config(default_docs)["state"].get("path") is None


def test_image_defaults_to_the_app_version(default_docs: list[Doc]) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert app_version == "0.1.0"
    image = _container(default_docs)["image"]
    assert image == f"ghcr.io/signalwire-community/signalwire-video-exporter:{app_version}"


def test_hardened_security_context(default_docs: list[Doc]) -> None:
    pod = _one(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65534
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = _container(default_docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # The root filesystem is read-only: /tmp is an emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in _container(default_docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_probes_and_port(default_docs: list[Doc]) -> None:
    container = _container(default_docs)
    assert container["ports"] == [{"name": "http", "containerPort": 10092, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    service = _one(default_docs, "Service")
    assert service["spec"]["ports"][0]["port"] == 10092
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert _config(default_docs)["server"]["listen_address"] == "0.0.0.0:10092"


def test_token_only_in_the_secret_and_mounted_as_a_file(default_docs: list[Doc]) -> None:
    secret = _one(default_docs, "Secret")
    assert base64.b64decode(secret["data"]["production-api-token"]).decode() == TOKEN
    for doc in default_docs:
        if doc["kind"] != "Secret":
            assert TOKEN not in yaml.safe_dump(doc)
    container = _container(default_docs)
    assert "env" not in container
    assert container["args"][0] == "--config=/etc/signalwire-video-exporter/config.yaml"
    space = _config(default_docs)["spaces"][0]
    assert space == {
        "name": "production",
        "space": "example",
        "project_id": SPACE["projectId"],
        "api_token_file": "/etc/signalwire/production-api-token",
    }
    pod = _one(default_docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["api-token"]["mountPath"] == "/etc/signalwire"
    assert mounts["api-token"]["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "api-token")
    assert volume["secret"]["secretName"] == FULLNAME == secret["metadata"]["name"]
    assert volume["secret"]["items"] == [{"key": "production-api-token", "path": "production-api-token"}]


def test_existing_secret(render: Any) -> None:
    docs = render({"spaces": [{**SPACE, "apiTokenKey": "token"}], "existingSecret": "sw-creds"})
    assert "Secret" not in _kinds(docs)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-token")
    assert volume["secret"]["secretName"] == "sw-creds"
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]
    assert _config(docs)["spaces"][0]["api_token_file"] == "/etc/signalwire/token"
    annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations
    assert "checksum/secret" not in annotations


def test_checksum_annotation_follows_the_config(render: Any) -> None:
    def checksum(values: dict[str, Any]) -> str:
        docs = render(values)
        return str(_one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = {"spaces": [{**SPACE, "apiToken": TOKEN}]}
    first = checksum(base)
    assert len(first) == 64
    assert checksum(base) == first
    assert checksum({**base, "config": {"poll": {"interval": "1m"}}}) != first


def test_persistence(render: Any) -> None:
    docs = render({"spaces": [{**SPACE, "apiToken": TOKEN}], "persistence": {"enabled": True}})
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pvc = _one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "state")
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    mount = next(m for m in _container(docs)["volumeMounts"] if m["name"] == "state")
    state_path = _config(docs)["state"]["path"]
    assert state_path == f"{mount['mountPath']}/state.json"
    assert not mount.get("readOnly")

    docs = render(
        {"spaces": [{**SPACE, "apiToken": TOKEN}], "persistence": {"enabled": True, "existingClaim": "mine"}}
    )
    assert "PersistentVolumeClaim" not in _kinds(docs)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "state")["persistentVolumeClaim"] == {
        "claimName": "mine"
    }


def test_rendered_config_is_accepted_by_the_exporter(render: Any, tmp_path: Path) -> None:
    """The ConfigMap, with the mounted paths moved into tmp_path, passes ``--check-config``."""
    docs = render(
        {
            "spaces": [
                {**SPACE, "apiToken": TOKEN, "filters": {"room_name_matches": "qa-"}},
                {"name": "b", "baseUrl": "https://proxy.example.com:8443", "projectId": "p", "apiToken": "t"},
            ],
            "persistence": {"enabled": True},
            "config": {"metrics": {"rooms": {"enabled": True}}, "logging": {"format": "json"}},
        }
    )
    config = _config(docs)
    for space in config["spaces"]:
        token_file = tmp_path / Path(space["api_token_file"]).name
        token_file.write_text(TOKEN)
        space["api_token_file"] = str(token_file)
    config["state"]["path"] = str(tmp_path / "state" / "state.json")
    (tmp_path / "state").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    _assert_check_config_ok("--config", str(path))


def test_service_monitor(render: Any) -> None:
    docs = render(
        {
            "spaces": [{**SPACE, "apiToken": TOKEN}],
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        }
    )
    monitor = _one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = _one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # No jobLabel: Prometheus names the job after the Service, the PrometheusRule's default job.
    assert "jobLabel" not in monitor["spec"]


def test_prometheus_rule(render: Any) -> None:
    docs = render({"spaces": [{**SPACE, "apiToken": TOKEN}], "prometheusRule": {"enabled": True}})
    rule = _one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert "groups" in rule["spec"]


def test_grafana_dashboard(render: Any, chart: Path) -> None:
    docs = render({"spaces": [{**SPACE, "apiToken": TOKEN}], "grafanaDashboard": {"enabled": True}})
    dashboard = _one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = dashboard["data"].values()
    assert content.strip() == (chart / "files" / "dashboard.json").read_text().strip()


def test_network_policy(render: Any) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    docs = render(
        {
            "spaces": [{**SPACE, "apiToken": TOKEN}],
            "networkPolicy": {"enabled": True, "ingress": {"from": [peer]}},
        }
    )
    policy = _one(docs, "NetworkPolicy")["spec"]
    deployment = _one(docs, "Deployment")
    assert policy["podSelector"] == deployment["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    test_pod = _one(docs, "Pod")
    assert peer in ingress["from"]
    assert {"podSelector": {"matchLabels": test_pod["metadata"]["labels"]}} in ingress["from"]
    egress_ports = [p["port"] for rule in policy["egress"] for p in rule["ports"]]
    assert 53 in egress_ports and 443 in egress_ports


def test_helm_test_hook_fetches_metrics(default_docs: list[Doc]) -> None:
    pod = _one(default_docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = " ".join(pod["spec"]["containers"][0]["command"])
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:10092/metrics" in script
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # The Service must not select the test pod.
    selector = _one(default_docs, "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()


def test_notes_render(helm: str, chart: Path, tmp_path: Path) -> None:
    values = _values_file(tmp_path, {"spaces": [{**SPACE, "apiToken": TOKEN}]})
    proc = _dry_run_install(helm, chart, str(values))
    assert proc.returncode == 0, proc.stderr
    assert f"port-forward service/{FULLNAME} 10092:10092" in proc.stdout
    assert "Persistence is disabled" in proc.stdout


def test_chart_config_defaults_are_the_exporter_defaults(default_docs: list[Doc]) -> None:
    """values.yaml's `config` spells out the exporter's defaults: rendered, it changes nothing."""
    spaces = [{"name": "p", "space": "x", "project_id": "a", "api_token": "t"}]
    rendered = _config(default_docs)
    assert rendered["poll"]["lookback"] == "5m"
    assert parse_config({**rendered, "spaces": spaces}) == parse_config({"spaces": spaces})


def test_budget_charges_and_billing_render_and_load(render: Any, tmp_path: Path) -> None:
    """spaces[].budget is rendered only where set, config.charges and config.billing pass through,
    and the exporter reads them back."""
    charges = {"enabled": True, "interval": "10m", "descriptions_max": 5, "tolerance": 0.01}
    docs = render(
        {
            "spaces": [
                {**SPACE, "apiToken": TOKEN, "budget": {"monthly": 250.5}},
                {"name": "b", "space": "other", "projectId": "p", "apiToken": "t"},
            ],
            "config": {"charges": charges, "billing": {"timezone": "Europe/Berlin"}},
        }
    )
    rendered = _config(docs)
    assert rendered["charges"] == charges and rendered["billing"] == {"timezone": "Europe/Berlin"}
    assert rendered["spaces"][0]["budget"] == {"monthly": 250.5}
    assert "budget" not in rendered["spaces"][1]
    for space in rendered["spaces"]:
        token_file = tmp_path / Path(space["api_token_file"]).name
        token_file.write_text(TOKEN)
        space["api_token_file"] = str(token_file)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered))
    _assert_check_config_ok("--config", str(path))
    config = parse_config(rendered)
    assert (config.charges.enabled, config.charges.interval, config.charges.descriptions_max) == (
        True,
        600,
        5,
    )
    assert config.charges.tolerance == 0.01 and config.billing.timezone == "Europe/Berlin"
    assert [space.budget_monthly for space in config.spaces] == [250.5, None]


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"spaces": [{**SPACE, "apiToken": TOKEN, "budget": {"monthly": 0}}]}, "monthly"),
        ({"spaces": [{**SPACE, "apiToken": TOKEN, "budget": {"monthly": "500"}}]}, "monthly"),
        ({"spaces": [{**SPACE, "apiToken": TOKEN, "budget": {"yearly": 500}}]}, "yearly"),
        ({"config": {"charges": {"descriptions_max": 0}}}, "descriptions_max"),
        ({"config": {"charges": {"descriptions_max": 1001}}}, "descriptions_max"),
        ({"config": {"charges": {"tolerance": -0.01}}}, "tolerance"),
        ({"config": {"charges": {"interval": 0.5}}}, "interval"),
        ({"config": {"billing": {"timezone": ""}}}, "timezone"),
        ({"config": {"billing": {"zone": "UTC"}}}, "zone"),
        ({"prometheusRule": {"thresholds": {"budgetPercent": 0}}}, "budgetPercent"),
        ({"prometheusRule": {"thresholds": {"budgetForecastPercent": -5}}}, "budgetForecastPercent"),
        ({"prometheusRule": {"thresholds": {"costMismatchWindow": "1 hour"}}}, "costMismatchWindow"),
        ({"prometheusRule": {"thresholds": {"chargesStaleSeconds": 0}}}, "chargesStaleSeconds"),
    ],
)
def test_schema_rejects_invalid_bill_values(
    helm: str, chart: Path, tmp_path: Path, values: dict[str, Any], key: str
) -> None:
    proc = _template(
        helm, chart, _values_file(tmp_path, {"spaces": [{**SPACE, "apiToken": TOKEN}], **values})
    )
    assert proc.returncode != 0
    assert "schema" in proc.stderr and key in proc.stderr, proc.stderr


def test_server_limits_are_settable_and_the_listen_address_is_the_charts(
    helm: str, chart: Path, render: Any, tmp_path: Path
) -> None:
    limits = {
        "max_connections": 64,
        "read_header_timeout": "5s",
        "idle_timeout": "2m",
        "max_header_bytes": 8192,
    }
    docs = render({"spaces": [{**SPACE, "apiToken": TOKEN}], "config": {"server": limits}})
    rendered = _config(docs)
    assert rendered["server"] == {**limits, "listen_address": "0.0.0.0:10092"}
    spaces = [{"name": "p", "space": "x", "project_id": "a", "api_token": "t"}]
    server = parse_config({**rendered, "spaces": spaces}).server_limits
    assert (server.max_connections, server.read_header_timeout, server.idle_timeout) == (64, 5.0, 120.0)
    assert server.max_header_bytes == 8192
    moved = {"spaces": [{**SPACE, "apiToken": TOKEN}], "config": {"server": {"listen_address": ":9"}}}
    proc = _template(helm, chart, _values_file(tmp_path, moved))
    assert proc.returncode != 0 and "listen_address" in proc.stderr, proc.stderr


# --- web config (--web.config.file) --------------------------------------------------------------

CONFIG_DIR = "/etc/signalwire-video-exporter"
WEB_CONFIG_PATH = f"{CONFIG_DIR}/web-config.yml"
WEB_SECRET = f"{FULLNAME}-web-config"
TLS_SECRET = "exporter-tls"
PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
TLS_WEB_CONFIG: Doc = {
    "tls_server_config": {"cert_file": "tls/tls.crt", "key_file": "tls/tls.key", "min_version": "TLS12"},
    "basic_auth_users": {"prometheus": HASH},
    "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
}
MTLS_WEB_CONFIG: Doc = {
    "tls_server_config": {
        "cert_file": f"{CONFIG_DIR}/tls/tls.crt",  # absolute names work as well as relative ones
        "key_file": "tls/tls.key",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "tls/ca.crt",
    },
}
SCRAPE_AUTH = {
    "username": {"name": "scrape-credentials", "key": "username"},
    "password": {"name": "scrape-credentials", "key": "password"},
}


def _with_web(web: Doc, **extra: Any) -> Doc:
    return {"spaces": [{**SPACE, "apiToken": TOKEN}], "webConfig": {"enabled": True, **web}, **extra}


def _pod_spec(docs: list[Doc]) -> Doc:
    return dict(_one(docs, "Deployment")["spec"]["template"]["spec"])


def _annotations(docs: list[Doc]) -> Doc:
    return dict(_one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"])


def _config_volume(docs: list[Doc]) -> Doc:
    volume = next(v for v in _pod_spec(docs)["volumes"] if v["name"] == "config")
    return dict(volume)


def _web_secret(docs: list[Doc]) -> Doc:
    secret = _one(docs, "Secret", WEB_SECRET)
    assert secret["type"] == "Opaque"
    assert list(secret["data"]) == ["web-config.yml"]
    return dict(yaml.safe_load(base64.b64decode(secret["data"]["web-config.yml"])))


def _test_script(docs: list[Doc]) -> str:
    return " ".join(_one(docs, "Pod")["spec"]["containers"][0]["command"])


def _validate(kubernetes_validate: Any, docs: list[Doc]) -> None:
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_web_config_is_off_by_default(default_docs: list[Doc]) -> None:
    assert not [a for a in _container(default_docs)["args"] if a.startswith("--web.config.file")]
    assert [d["metadata"]["name"] for d in default_docs if d["kind"] == "Secret"] == [FULLNAME]
    assert "checksum/web-config" not in _annotations(default_docs)
    sources = _config_volume(default_docs)["projected"]["sources"]
    assert sources == [
        {"configMap": {"name": FULLNAME, "items": [{"key": "config.yaml", "path": "config.yaml"}]}}
    ]
    assert "http://" in _test_script(default_docs)
    assert "--no-check-certificate" not in _test_script(default_docs)


def test_inline_web_config(render: Any, kubernetes_validate: Any) -> None:
    values = _with_web(
        {"config": TLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}},
        serviceMonitor={"enabled": True},
        test={"basicAuth": SCRAPE_AUTH},
    )
    docs = render(values)
    _validate(kubernetes_validate, docs)
    # The web config goes into the chart's Secret as given, and nowhere else.
    assert _web_secret(docs) == TLS_WEB_CONFIG
    for doc in docs:
        if doc["kind"] != "Secret":
            assert HASH not in yaml.safe_dump(doc)
    container = _container(docs)
    assert f"--web.config.file={WEB_CONFIG_PATH}" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount == {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}
    # One projected directory: config.yaml, web-config.yml, and tls/ from the kubernetes.io/tls Secret.
    sources = _config_volume(docs)["projected"]["sources"]
    assert sources[1] == {
        "secret": {
            "name": WEB_SECRET,
            "items": [{"key": "web-config.yml", "path": "web-config.yml", "mode": 0o440}],
        }
    }
    tls_items = [(i["key"], i["path"]) for src in sources[2:] for i in src["secret"]["items"]]
    assert tls_items == [("tls.crt", "tls/tls.crt"), ("tls.key", "tls/tls.key"), ("ca.crt", "tls/ca.crt")]
    assert {src["secret"]["name"] for src in sources[2:]} == {TLS_SECRET}
    assert [src["secret"].get("optional", False) for src in sources[2:]] == [False, True]
    # Probes over HTTPS, to the same unauthenticated paths.
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http", "scheme": "HTTPS"}
    assert container["livenessProbe"]["initialDelaySeconds"] == 5
    # The ServiceMonitor and the helm test switch to https; the test sends the credentials.
    assert _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "https"
    test_container = _one(docs, "Pod")["spec"]["containers"][0]
    script = _test_script(docs)
    assert f"https://{FULLNAME}.{NAMESPACE}.svc:10092/metrics" in script
    assert "--no-check-certificate" in script
    assert "Authorization: Basic" in script
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in test_container["env"]}
    assert env == {"SCRAPE_USERNAME": SCRAPE_AUTH["username"], "SCRAPE_PASSWORD": SCRAPE_AUTH["password"]}


def test_web_config_checksum_follows_the_inline_content(render: Any) -> None:
    def checksum(web: Doc) -> str:
        docs = render(_with_web(web))
        return str(_annotations(docs)["checksum/web-config"])

    tls = {"existingSecret": TLS_SECRET}
    first = checksum({"config": TLS_WEB_CONFIG, "tls": tls})
    assert len(first) == 64
    assert checksum({"config": TLS_WEB_CONFIG, "tls": tls}) == first
    changed = {**TLS_WEB_CONFIG, "basic_auth_users": {"other": HASH}}
    assert checksum({"config": changed, "tls": tls}) != first


def test_web_config_in_an_existing_secret(render: Any) -> None:
    docs = render(_with_web({"existingSecret": "my-web-config", "existingSecretKey": "web.yml"}))
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == [FULLNAME]
    assert "checksum/web-config" not in _annotations(docs)
    assert f"--web.config.file={WEB_CONFIG_PATH}" in _container(docs)["args"]
    sources = _config_volume(docs)["projected"]["sources"]
    assert sources[1:] == [
        {
            "secret": {
                "name": "my-web-config",
                "items": [{"key": "web.yml", "path": "web-config.yml", "mode": 0o440}],
            }
        }
    ]
    # The chart cannot read that Secret and no certificate is mounted: plain HTTP probes.
    assert "scheme" not in _container(docs)["livenessProbe"]["httpGet"]


# (webConfig values, expected mode): how the chart decides between HTTP, HTTPS and mutual TLS.
TLS_MODE_CASES = [
    ({"config": {"basic_auth_users": {"prometheus": HASH}}}, "none"),
    ({"config": TLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}}, "tls"),
    (
        {
            "config": {
                "tls_server_config": {
                    **TLS_WEB_CONFIG["tls_server_config"],
                    "client_auth_type": "VerifyClientCertIfGiven",
                    "client_ca_file": "tls/ca.crt",
                }
            },
            "tls": {"existingSecret": TLS_SECRET},
        },
        "tls",
    ),
    ({"config": MTLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}}, "mutual"),
    ({"existingSecret": "my-web-config"}, "none"),
    ({"existingSecret": "my-web-config", "tls": {"existingSecret": TLS_SECRET}}, "tls"),
    (
        {"existingSecret": "my-web-config", "tls": {"existingSecret": TLS_SECRET}, "tlsMode": "mutual"},
        "mutual",
    ),
    ({"existingSecret": "my-web-config", "tls": {"existingSecret": TLS_SECRET}, "tlsMode": "none"}, "none"),
    ({"existingSecret": "my-web-config", "tlsMode": "tls"}, "tls"),
    ({"enabled": False, "config": MTLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}}, "off"),
]


TLS_MODE_IDS = [
    "inline-basic-auth-only",
    "inline-tls",
    "inline-verify-if-given",
    "inline-mutual",
    "secret",
    "secret-with-tls-secret",
    "secret-tlsMode-mutual",
    "secret-tlsMode-none",
    "secret-tlsMode-tls",
    "disabled",
]


@pytest.mark.parametrize(("web", "mode"), TLS_MODE_CASES, ids=TLS_MODE_IDS)
def test_probes_service_monitor_and_helm_test_follow_the_tls_mode(render: Any, web: Doc, mode: str) -> None:
    docs = render(_with_web(web, serviceMonitor={"enabled": True}))
    container = _container(docs)
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    if mode == "mutual":
        # The kubelet cannot present a client certificate: TCP probes on the same port.
        assert "httpGet" not in liveness and "httpGet" not in readiness
        assert liveness["tcpSocket"] == readiness["tcpSocket"] == {"port": "http"}
        assert liveness["periodSeconds"] == 10 and readiness["periodSeconds"] == 5
    else:
        scheme = {"tls": {"scheme": "HTTPS"}}.get(mode, {})
        assert liveness["httpGet"] == {"path": "/-/healthy", "port": "http", **scheme}
        assert readiness["httpGet"] == {"path": "/-/ready", "port": "http", **scheme}
        assert "tcpSocket" not in liveness
    https = mode in ("tls", "mutual")
    assert _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == ("https" if https else "http")
    script = _test_script(docs)
    assert f"{'https' if https else 'http'}://{FULLNAME}.{NAMESPACE}.svc:10092/metrics" in script
    # With mutual TLS busybox cannot fetch /metrics: the test checks the handshake is refused.
    assert ("TLS error from peer" in script) == (mode == "mutual")
    has_arg = any(a.startswith("--web.config.file=") for a in container["args"])
    assert has_arg == (mode != "off")


def test_user_probes_are_kept(render: Any, kubernetes_validate: Any) -> None:
    exec_probe = {"exec": {"command": ["/bin/true"]}, "periodSeconds": 7}
    docs = render(
        _with_web(
            {"config": MTLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}},
            livenessProbe={"httpGet": None, **exec_probe},
        )
    )
    _validate(kubernetes_validate, docs)
    liveness = _container(docs)["livenessProbe"]
    assert liveness["exec"] == exec_probe["exec"] and liveness["periodSeconds"] == 7
    assert "httpGet" not in liveness and "tcpSocket" not in liveness
    # An explicit scheme wins over the detected one; other fields of the probe stay.
    docs = render(
        _with_web(
            {"config": TLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}},
            readinessProbe={"httpGet": {"path": "/-/ready", "port": "http", "scheme": "HTTP"}},
            livenessProbe={"httpGet": {"path": "/-/healthy", "port": 10092}},
        )
    )
    container = _container(docs)
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": 10092, "scheme": "HTTPS"}
    # null removes a probe.
    docs = render(
        _with_web({"config": TLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}}, livenessProbe=None)
    )
    assert "livenessProbe" not in _container(docs)
    assert _container(docs)["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_service_monitor_scheme_tls_config_and_basic_auth(render: Any) -> None:
    tls_config = {
        "serverName": f"{FULLNAME}.{NAMESPACE}.svc",
        "ca": {"secret": {"name": TLS_SECRET, "key": "ca.crt"}},
    }
    docs = render(
        _with_web(
            {"config": TLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}},
            serviceMonitor={"enabled": True, "tlsConfig": tls_config, "basicAuth": SCRAPE_AUTH},
        )
    )
    endpoint = _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == tls_config
    assert endpoint["basicAuth"] == SCRAPE_AUTH
    # Explicit scheme wins; without a web config nothing of this is rendered.
    docs = render(
        _with_web(
            {"config": TLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}},
            serviceMonitor={"enabled": True, "scheme": "http"},
        )
    )
    assert _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "http"
    docs = render({"spaces": [{**SPACE, "apiToken": TOKEN}], "serviceMonitor": {"enabled": True}})
    endpoint = _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "http"
    assert "tlsConfig" not in endpoint and "basicAuth" not in endpoint


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ({}, "webConfig.enabled needs webConfig.config (the web config inline) or webConfig.existingSecret"),
        (
            {"config": {"basic_auth_users": {"prometheus": HASH}}, "existingSecret": "mine"},
            "webConfig.config and webConfig.existingSecret are both set",
        ),
        (
            {"config": TLS_WEB_CONFIG},
            'webConfig.config.tls_server_config.cert_file is "tls/tls.crt" but webConfig.tls.existingSecret '
            "is empty",
        ),
        (
            {
                "config": {
                    "tls_server_config": {
                        "cert": "PEM",
                        "key": "PEM",
                        "client_ca_file": f"{CONFIG_DIR}/tls/ca.crt",
                        "client_auth_type": "RequireAndVerifyClientCert",
                    }
                }
            },
            "webConfig.config.tls_server_config.client_ca_file",
        ),
    ],
)
def test_invalid_web_config_values_fail_with_a_clear_message(
    helm: str, chart: Path, tmp_path: Path, web: Doc, message: str
) -> None:
    proc = _template(helm, chart, _values_file(tmp_path, _with_web(web)))
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"webConfig": {"enabled": True, "configs": {}}}, "configs"),
        ({"webConfig": {"tls": {"secretName": TLS_SECRET}}}, "secretName"),
        ({"webConfig": {"tlsMode": "mtls"}}, "tlsMode"),
        ({"webConfig": {"config": {"tls_server_config": {"certfile": "tls/tls.crt"}}}}, "certfile"),
        ({"webConfig": {"config": {"rate_limit": {"interval": "1s"}}}}, "rate_limit"),
        ({"webConfig": {"config": {"http_server_config": {"headers": {"Server": "x"}}}}}, "Server"),
        (
            {"webConfig": {"config": {"tls_server_config": {"client_auth_type": "RequireAnyClientCert"}}}},
            "client_auth_type",
        ),
        ({"webConfig": {"config": {"basic_auth_users": {"prometheus": PASSWORD}}}}, "basic_auth_users"),
        ({"serviceMonitor": {"scheme": "tcp"}}, "scheme"),
        ({"serviceMonitor": {"basicAuth": {"login": SCRAPE_AUTH["username"]}}}, "login"),
        ({"test": {"basicAuth": {"username": {"name": "s"}}}}, "username"),  # no key
    ],
)
def test_schema_rejects_unknown_web_config_values(
    helm: str, chart: Path, tmp_path: Path, values: Doc, key: str
) -> None:
    proc = _template(
        helm, chart, _values_file(tmp_path, {"spaces": [{**SPACE, "apiToken": TOKEN}], **values})
    )
    assert proc.returncode != 0
    assert "schema" in proc.stderr and key in proc.stderr, proc.stderr


def test_notes_describe_the_web_config(helm: str, chart: Path, tmp_path: Path) -> None:
    values = _with_web(
        {"config": MTLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}}, serviceMonitor={"enabled": True}
    )
    proc = _dry_run_install(helm, chart, str(_values_file(tmp_path, values)))
    assert proc.returncode == 0, proc.stderr
    assert f"Web config: {WEB_CONFIG_PATH}" in proc.stdout
    assert "tcpSocket probes" in proc.stdout
    assert "set serviceMonitor.tlsConfig.cert and keySecret" in proc.stdout
    assert "https://127.0.0.1:10092/metrics" in proc.stdout


# --- the rendered web config, laid out as in the pod, checked by the exporter and promtool ------


def _tls_secret_data() -> dict[str, bytes]:
    """A kubernetes.io/tls Secret's keys: a CA (ca.crt) and a server certificate it signed."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer_key: ec.EllipticCurvePrivateKey,
        issuer: str,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            name = x509.DNSName(f"{FULLNAME}.{NAMESPACE}.svc")
            builder = builder.add_extension(x509.SubjectAlternativeName([name]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    return {
        "ca.crt": cert("test CA", ca_key, ca_key, "test CA", ca=True).public_bytes(pem),
        "tls.crt": cert(FULLNAME, server_key, ca_key, "test CA", ca=False).public_bytes(pem),
        "tls.key": server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def _lay_out_config_volume(docs: list[Doc], root: Path) -> list[str]:
    """Write the projected `config` volume's files under root, as the kubelet would under CONFIG_DIR.

    The chart's ConfigMap and Secrets come from the render; the kubernetes.io/tls Secret (the user's)
    is made here. Returns the container's arguments with CONFIG_DIR replaced by root; the tokens and
    the state file named in config.yaml, and absolute names in the web config, are moved under root.
    """
    mount = next(m for m in _container(docs)["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == CONFIG_DIR and mount["readOnly"] is True
    contents = {
        ("ConfigMap", d["metadata"]["name"]): {k: v.encode() for k, v in d["data"].items()}
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    contents.update(
        {
            ("Secret", d["metadata"]["name"]): {k: base64.b64decode(v) for k, v in d["data"].items()}
            for d in docs
            if d["kind"] == "Secret"
        }
    )
    tls_data = _tls_secret_data()
    for source in _config_volume(docs)["projected"]["sources"]:
        kind, projection = (
            ("ConfigMap", source["configMap"]) if "configMap" in source else ("Secret", source["secret"])
        )
        # Not rendered by the chart: the user's TLS Secret.
        data = contents.get((kind, projection["name"]), tls_data)
        for item in projection["items"]:
            if item["key"] not in data and projection.get("optional"):
                continue
            path = root / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
    config = yaml.safe_load((root / "config.yaml").read_text())
    for space in config["spaces"]:
        token = root / "tokens" / Path(space["api_token_file"]).name
        token.parent.mkdir(exist_ok=True)
        token.write_text(TOKEN)
        space["api_token_file"] = str(token)
    if config.get("state", {}).get("path"):
        config["state"]["path"] = str(root / "state.json")
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    web_config = root / "web-config.yml"
    web_config.write_text(web_config.read_text().replace(f"{CONFIG_DIR}/", f"{root}/"))
    return [arg.replace(CONFIG_DIR, str(root)) for arg in _container(docs)["args"]]


WEB_CONFIG_RENDERS = {
    "all-features-values.yaml": None,  # the CI values file: TLS, basic auth, headers
    "mutual-tls": _with_web({"config": MTLS_WEB_CONFIG, "tls": {"existingSecret": TLS_SECRET}}),
}


@pytest.fixture(params=list(WEB_CONFIG_RENDERS))
def laid_out_web_config(
    request: pytest.FixtureRequest, helm: str, chart: Path, tmp_path: Path
) -> tuple[str, list[str], Path]:
    values = WEB_CONFIG_RENDERS[request.param]
    path = CHART / "ci" / request.param if values is None else _values_file(tmp_path, values)
    docs = _docs(_template(helm, chart, path))
    root = tmp_path / "etc"
    args = _lay_out_config_volume(docs, root)
    assert f"--web.config.file={root}/web-config.yml" in args
    return request.param, args, root / "web-config.yml"


def test_rendered_web_config_is_accepted_by_the_exporter(
    laid_out_web_config: tuple[str, list[str], Path],
) -> None:
    name, args, web_config = laid_out_web_config
    web = load_web_config(str(web_config))
    assert web.tls is not None and web.ssl_context is not None
    assert web.tls.cert_file == str(web_config.parent / "tls" / "tls.crt")
    if name == "mutual-tls":
        assert web.tls.client_auth_type == "RequireAndVerifyClientCert"
        assert web.ssl_context.verify_mode == ssl.CERT_REQUIRED
    else:
        assert list(web.users) == ["prometheus"]
        assert bcrypt.checkpw(PASSWORD.encode(), web.users["prometheus"])
        assert ("X-Content-Type-Options", "nosniff") in web.headers
    # The exporter started as the pod starts it, with --check-config: config and web config load.
    _assert_check_config_ok(*args)


def test_rendered_web_config_is_accepted_by_promtool(
    laid_out_web_config: tuple[str, list[str], Path],
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    _, _, web_config = laid_out_web_config
    proc = subprocess.run(
        [str(promtool), "check", "web-config", str(web_config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- PrometheusRule: runbook links -----------------------------------------------------------------


def _runbook_urls(docs: list[Doc]) -> dict[str, str]:
    rule = _one(docs, "PrometheusRule")
    return {r["alert"]: r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}


def test_runbook_urls_default_to_those_of_the_rules_file(render: Any, chart: Path) -> None:
    docs = render({"spaces": [{**SPACE, "apiToken": TOKEN}], "prometheusRule": {"enabled": True}})
    source = yaml.safe_load((chart / "files" / "alerts.rules.yaml").read_text())
    expected = {r["alert"]: r["annotations"]["runbook_url"] for g in source["groups"] for r in g["rules"]}
    assert expected and _runbook_urls(docs) == expected


def test_runbook_urls_use_runbook_base_url(render: Any) -> None:
    base = "https://wiki.example.com/runbooks/signalwire-video"
    prometheus_rule = {"enabled": True, "runbookBaseUrl": base + "/"}
    docs = render({"spaces": [{**SPACE, "apiToken": TOKEN}], "prometheusRule": prometheus_rule})
    urls = _runbook_urls(docs)
    assert urls and urls == {alert: f"{base}#{alert.lower()}" for alert in urls}


@pytest.mark.parametrize("url", ["docs/alerts.md", "https://wiki.example.com/runbooks#alerts", ""])
def test_schema_rejects_a_runbook_base_url_that_is_not_a_page(
    helm: str, chart: Path, tmp_path: Path, url: str
) -> None:
    values = {"spaces": [{**SPACE, "apiToken": TOKEN}], "prometheusRule": {"runbookBaseUrl": url}}
    proc = _template(helm, chart, _values_file(tmp_path, values))
    assert proc.returncode != 0
    assert "runbookBaseUrl" in proc.stderr, proc.stderr
