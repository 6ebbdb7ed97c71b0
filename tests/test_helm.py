"""The Helm chart in helm/signalwire-video-exporter, checked with a real Helm binary.

* ``helm lint --strict`` and ``helm template`` for every ``ci/*-values.yaml``;
* every rendered document validated offline and strictly (unknown fields rejected) against the
  Kubernetes OpenAPI schemas of ``K8S_VERSION`` with ``kubernetes-validate``. ServiceMonitor and
  PrometheusRule (``monitoring.coreos.com/v1``) are custom resources whose schemas that package does
  not ship: they are explicitly skipped there and checked by the assertions below instead;
* assertions on the rendered objects (security context, probes, secret wiring, persistence,
  opt-ins off by default), and the rendered exporter configuration accepted by the exporter itself;
* the default values, which have no credentials, fail with a clear message.

Helm comes from ``shared/tools/install-helm`` (beside the checkout). Without Helm, or without
``kubernetes-validate``, the tests are skipped, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
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


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> str:
    found = shutil.which("helm")
    if found:
        return found
    installer = SHARED / "tools" / "install-helm"
    dest = Path(tempfile.gettempdir()) / "signalwire-video-exporter-helm"
    if not installer.exists():
        _unavailable(f"helm is not installed and {installer} is missing")
    proc = subprocess.run(
        [str(installer), str(dest)], capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        _unavailable(f"could not install helm with {installer}: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        _unavailable("kubernetes-validate is not installed (pip install kubernetes-validate)")
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
    assert _config(default_docs)["server"] == {"listen_address": "0.0.0.0:10092"}


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
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config OK" in proc.stdout


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
    proc = _run(
        helm,
        "install",
        RELEASE,
        str(chart),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--values",
        str(values),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"port-forward service/{FULLNAME} 10092:10092" in proc.stdout
    assert "Persistence is disabled" in proc.stdout
