"""Web config (exporter-toolkit format): HTTPS, mutual TLS, basic auth, headers, strict parsing.

Certificates are made in the test (a CA, a server and a client certificate, plus a foreign CA)
with ``cryptography``; the server is the real :class:`MetricsServer` on 127.0.0.1 and the client
is httpx. Every valid web config used here is also checked with ``promtool check web-config``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from exporter.config import ConfigError
from exporter.exposition import Exposition
from exporter.server import MetricsServer, make_app
from exporter.snapshot import Snapshots
from exporter.webconfig import BasicAuth, WebConfig, load_web_config, parse_web_config, wrap_app

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "prometheus", "correct horse battery staple"
HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "deny"}


# --- certificates ----------------------------------------------------------------------------


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    foreign_cert: Path  # a client certificate signed by another CA
    foreign_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: Sequence[x509.GeneralName] | None = None,
    usage: Any = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.with_suffix(".key")
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)


def _issue(
    path: Path,
    subject: str,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    sans: Sequence[x509.GeneralName],
    usage: Any,
) -> None:
    """A leaf certificate with a new key, written to ``path`` and ``path`` with suffix ``.key``."""
    key = _key()
    _write(path, _cert(subject, key, issuer, issuer_key, sans=sans, usage=usage), key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True)
    _write(d / "ca.crt", ca)
    localhost = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    prometheus = [x509.DNSName("prometheus.example")]
    _issue(d / "server.crt", "localhost", "test CA", ca_key, localhost, ExtendedKeyUsageOID.SERVER_AUTH)
    _issue(d / "client.crt", "prometheus", "test CA", ca_key, prometheus, ExtendedKeyUsageOID.CLIENT_AUTH)
    _issue(d / "foreign.crt", "intruder", "other CA", other_key, prometheus, ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        d,
        d / "ca.crt",
        d / "server.crt",
        d / "server.key",
        d / "client.crt",
        d / "client.key",
        d / "foreign.crt",
        d / "foreign.key",
    )


# --- the web configs used by the tests (all checked by promtool) ------------------------------


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def web_configs(pki: Pki) -> dict[str, dict[str, Any]]:
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    mtls = {**tls, "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(pki.ca)}
    return {
        "tls_auth": {
            "tls_server_config": {**tls, "min_version": "TLS12"},
            "basic_auth_users": {USER: _hash(PASSWORD), "other": _hash("other-password")},
            "http_server_config": {"headers": HEADERS},
        },
        "mtls": {"tls_server_config": mtls},
        "tls13": {"tls_server_config": {**tls, "min_version": "TLS13"}},
        # relative file names are relative to the web config's directory, as in the toolkit
        "relative": {
            "tls_server_config": {
                "cert_file": "server.crt",
                "key_file": "server.key",
                "client_auth_type": "VerifyClientCertIfGiven",
                "client_ca_file": "ca.crt",
                "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            },
        },
        "auth_only": {"basic_auth_users": {USER: _hash(PASSWORD)}},
    }


@pytest.fixture(scope="module")
def configs(pki: Pki) -> dict[str, Path]:
    paths = {}
    for name, doc in web_configs(pki).items():
        path = pki.dir / f"web-{name}.yml"
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        paths[name] = path
    return paths


@pytest.fixture
def serve(configs: dict[str, Path]) -> Iterator[Any]:
    servers: list[MetricsServer] = []

    def start(name: str | WebConfig, auth: BasicAuth | None = None) -> tuple[str, WebConfig]:
        web = load_web_config(str(configs[name])) if isinstance(name, str) else name
        exposition = Exposition(Snapshots([]), CollectorRegistry())
        app = wrap_app(make_app(exposition, lambda: True), web, auth)
        sans = web.tls.client_allowed_sans if web.tls else ()
        server = MetricsServer("127.0.0.1", 0, app, web.ssl_context, sans)
        server.start()
        servers.append(server)
        scheme = "https" if web.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{server.port}", web

    yield start
    for server in servers:
        server.stop()


def client_context(
    pki: Pki, cert: str | None = None, max_tls: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(pki.dir / f"{cert}.crt"), str(pki.dir / f"{cert}.key"))
    if max_tls is not None:
        context.maximum_version = max_tls
    return context


def get(url: str, context: ssl.SSLContext | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=context if context is not None else True, timeout=10, **kwargs)


# --- TLS and basic auth ----------------------------------------------------------------------


def test_basic_auth_over_tls(serve: Any, pki: Pki) -> None:
    url, _ = serve("tls_auth")
    ctx = client_context(pki)
    ok = get(f"{url}/metrics", ctx, auth=(USER, PASSWORD))
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("text/plain; version=")
    for auth in [None, (USER, "wrong"), ("nobody", PASSWORD), (USER, "")]:
        denied = get(f"{url}/metrics", ctx, auth=auth)
        assert denied.status_code == 401, auth
        assert denied.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert PASSWORD not in denied.text
    assert get(f"{url}/", ctx).status_code == 401
    # Probes cannot send credentials: health endpoints stay open (over TLS).
    for path in ("/-/healthy", "/-/ready"):
        response = get(f"{url}{path}", ctx)
        assert response.status_code == 200, path
        for name, value in HEADERS.items():
            assert response.headers[name] == value
    assert get(f"{url}/metrics", ctx, auth=(USER, PASSWORD)).headers["X-Frame-Options"] == "deny"
    assert get(f"{url}/metrics", ctx).headers["X-Content-Type-Options"] == "nosniff"
    # not a plain-HTTP server
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https", "http") + "/-/healthy", timeout=5)


def test_successful_bcrypt_check_is_cached(serve: Any, pki: Pki) -> None:
    web = load_web_config(str(pki.dir / "web-tls_auth.yml"))
    auth = BasicAuth(web.users)
    url, _ = serve("tls_auth", auth)
    ctx = client_context(pki)
    assert get(f"{url}/metrics", ctx, auth=(USER, PASSWORD)).status_code == 200
    assert auth.bcrypt_calls == 1
    for _ in range(3):
        assert get(f"{url}/metrics", ctx, auth=(USER, PASSWORD)).status_code == 200
    assert auth.bcrypt_calls == 1  # served from the cache
    assert get(f"{url}/metrics", ctx, auth=(USER, "wrong")).status_code == 401
    assert auth.bcrypt_calls == 2  # a failed password is checked for real every time
    assert get(f"{url}/metrics", ctx, auth=("nobody", "x")).status_code == 401
    assert auth.bcrypt_calls == 3  # an unknown user costs a (dummy) bcrypt too
    assert get(f"{url}/metrics", ctx, auth=(USER, PASSWORD)).status_code == 200
    assert auth.bcrypt_calls == 3
    assert get(f"{url}/metrics", ctx, auth=("other", "other-password")).status_code == 200
    assert auth.bcrypt_calls == 4


def test_password_longer_than_72_bytes_counts_its_first_72_as_in_go(serve: Any) -> None:
    """Go's bcrypt (Prometheus' toolkit) compares the first 72 bytes; Python's bcrypt refuses more."""
    long_password = "é" * 40  # 80 bytes in UTF-8
    prefix = long_password.encode()[:72]
    web = parse_web_config({"basic_auth_users": {USER: bcrypt.hashpw(prefix, bcrypt.gensalt(4)).decode()}})
    url, _ = serve(web)
    assert httpx.get(f"{url}/metrics", auth=(USER, long_password), timeout=5).status_code == 200
    same_start = prefix.decode() + "different tail"  # 72 equal bytes: equal for Go's bcrypt too
    assert httpx.get(f"{url}/metrics", auth=(USER, same_start), timeout=5).status_code == 200
    assert httpx.get(f"{url}/metrics", auth=(USER, "é" * 35), timeout=5).status_code == 401


def test_unknown_users_cost_as_much_as_the_costliest_configured_hash() -> None:
    users = {"cheap": _hash("a").encode(), "dear": bcrypt.hashpw(b"b", bcrypt.gensalt(6))}
    auth = BasicAuth(users)
    assert auth.check("Basic " + base64.b64encode(b"nobody:x").decode()) is None
    assert auth.bcrypt_calls == 1
    assert auth.dummy_hash[:7] == b"$2b$06$"
    assert bcrypt.checkpw(b"dummy", auth.dummy_hash)


def test_basic_auth_without_tls(serve: Any) -> None:
    url, web = serve("auth_only")
    assert url.startswith("http://") and web.tls is None
    assert httpx.get(f"{url}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{url}/metrics", auth=(USER, PASSWORD), timeout=5).status_code == 200
    assert httpx.get(f"{url}/-/healthy", timeout=5).status_code == 200


def test_mutual_tls(serve: Any, pki: Pki) -> None:
    url, _ = serve("mtls")
    assert get(f"{url}/metrics", client_context(pki, "client")).status_code == 200
    for ctx in (client_context(pki), client_context(pki, "foreign")):
        with pytest.raises(httpx.TransportError):  # handshake refused (or connection reset after it)
            get(f"{url}/-/healthy", ctx)
    # the server still serves others after failed handshakes
    assert get(f"{url}/-/healthy", client_context(pki, "client")).status_code == 200


def test_client_allowed_sans(serve: Any, pki: Pki) -> None:
    # client_allowed_sans is newer than Debian's promtool 2.42 (it rejects the key), so these
    # configs are parsed in-process rather than written to files checked by promtool.
    mtls = {
        "cert_file": str(pki.server_cert),
        "key_file": str(pki.server_key),
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": str(pki.ca),
    }
    right = parse_web_config({"tls_server_config": {**mtls, "client_allowed_sans": ["prometheus.example"]}})
    url, _ = serve(right)
    assert get(f"{url}/metrics", client_context(pki, "client")).status_code == 200
    wrong = parse_web_config({"tls_server_config": {**mtls, "client_allowed_sans": ["grafana.example"]}})
    url, _ = serve(wrong)
    with pytest.raises(httpx.TransportError):
        get(f"{url}/metrics", client_context(pki, "client"))


def test_min_version(serve: Any, pki: Pki) -> None:
    url, _ = serve("tls13")
    assert get(f"{url}/-/healthy", client_context(pki)).status_code == 200
    with pytest.raises(httpx.TransportError):
        get(f"{url}/-/healthy", client_context(pki, max_tls=ssl.TLSVersion.TLSv1_2))


def test_relative_paths_and_optional_client_cert(serve: Any, pki: Pki) -> None:
    url, web = serve("relative")
    assert web.tls is not None and web.tls.cert_file == str(pki.server_cert)
    assert get(f"{url}/-/healthy", client_context(pki)).status_code == 200
    assert get(f"{url}/-/healthy", client_context(pki, "client")).status_code == 200
    with pytest.raises(httpx.TransportError):
        get(f"{url}/-/healthy", client_context(pki, "foreign"))


def test_promtool_accepts_every_web_config_used(configs: dict[str, Path]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (Debian package prometheus)")
        pytest.skip("promtool not installed")
    result = subprocess.run(
        [promtool, "check", "web-config", *map(str, configs.values())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- strict parsing --------------------------------------------------------------------------

HASH = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"  # the toolkit docs' example


@pytest.mark.parametrize(
    ("doc", "errors"),
    [
        ({"basic_auth_user": {}}, ["basic_auth_user: unknown key"]),
        ({"basic_auth_users": {"u": "plain"}}, ["basic_auth_users.u: must be a bcrypt hash"]),
        ({"basic_auth_users": ["u"]}, ["basic_auth_users: must be a mapping"]),
        ({"tls_server_config": {"cert_file": "a.crt"}}, ["tls_server_config.key_file: required"]),
        ({"tls_server_config": {"key_file": "a.key"}}, ["tls_server_config.cert_file: required"]),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Always"}},
            ["tls_server_config.client_auth_type: must be one of NoClientCert,"],
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAnyClientCert",
                }
            },
            ["tls_server_config.client_auth_type: RequireAnyClientCert (unverified"],
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_ca_file": "c"}},
            ["tls_server_config.client_ca_file: Client CA's have been configured without"],
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS1.2", "x": 1}},
            ["tls_server_config.x: unknown key", "tls_server_config.min_version: unknown TLS version"],
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "cipher_suites": ["RC4"]}},
            ["tls_server_config.cipher_suites: unknown cipher 'RC4'"],
        ),
        (
            {"http_server_config": {"headers": {"Server": "x", "X-Frame-Options": "allow"}}},
            [
                "http_server_config.headers.Server: HTTP header 'Server' can not be configured",
                "http_server_config.headers.X-Frame-Options: invalid value 'allow'",
            ],
        ),
        ({"rate_limit": {"interval": "1s", "burst": 5}}, ["rate_limit: not supported"]),
        ({"tls_server_config": []}, ["tls_server_config: must be a mapping"]),
    ],
)
def test_invalid_web_config_reports_every_error_with_its_path(doc: dict[str, Any], errors: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_web_config(doc, "web.yml")
    assert len(info.value.errors) == len(errors), info.value.errors
    for got, expected in zip(info.value.errors, errors, strict=True):
        assert got.startswith(f"web.yml: {expected}"), (got, expected)


def test_a_misspelled_key_names_the_nearest_valid_one() -> None:
    doc = {
        "basic_auth_user": {},
        "tls_server_config": {"cert_file": "a", "key_file": "b", "min_verison": "TLS13", "ciphers": []},
    }
    with pytest.raises(ConfigError) as info:
        parse_web_config(doc, "web.yml")
    assert info.value.errors == [
        "web.yml: basic_auth_user: unknown key (did you mean basic_auth_users?)",
        "web.yml: tls_server_config.min_verison: unknown key (did you mean min_version?)",
        "web.yml: tls_server_config.ciphers: unknown key",
    ]


SECRET_VALUE = "-----BEGIN PRIVATE KEY----- s3cr3t"


@pytest.mark.parametrize(
    "doc",
    [
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "key": SECRET_VALUE}},
        {"tls_server_config": {"cert_file": "a", "key": [SECRET_VALUE]}},
        {"tls_server_config": {"cert": "not a certificate", "key": SECRET_VALUE}},
        {"basic_auth_users": {"u": SECRET_VALUE, "v:w": SECRET_VALUE}},
        {"basic_auth_users": f"u:{SECRET_VALUE}"},
        {"basic_auth_users": [f"u:{SECRET_VALUE}"]},
    ],
)
def test_keys_and_hashes_never_appear_in_errors(doc: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_web_config(doc, "web.yml")
    assert info.value.errors and "s3cr3t" not in str(info.value), info.value.errors


def test_missing_certificate_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_web_config(
            {"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}}, "w.yml", tmp_path
        )
    [error] = info.value.errors
    assert error.startswith("w.yml: tls_server_config: cannot load the certificate and key")


def test_toolkit_example_hash_and_empty_file_are_accepted() -> None:
    web = parse_web_config({"basic_auth_users": {"admin": HASH}, "http_server_config": {"http2": False}})
    assert BasicAuth(web.users).check("Basic YWRtaW46d3Jvbmc=") is None  # admin:wrong
    assert parse_web_config({}) == WebConfig()


# --- command line ----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALWIRE_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_validates_the_web_config(configs: dict[str, Path], tmp_path: Path) -> None:
    ok = run_cli("--demo", "--check-config", "--web.config.file", str(configs["tls_auth"]))
    assert ok.returncode == 0 and "config OK" in ok.stdout and ok.stderr == "", ok.stderr
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config: {cert_file: x.crt}\nbasic_auth_users: {u: nothash}\n")
    result = run_cli("--demo", "--check-config", "--web.config.file", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"config error: {bad}: tls_server_config.key_file: required (missing key_file)",
        f"config error: {bad}: basic_auth_users.u: must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)",
    ]
    missing = run_cli("--demo", "--check-config", "--web.config.file", str(tmp_path / "none.yml"))
    assert missing.returncode == 2 and "cannot read web config file" in missing.stderr


def test_readable_secret_files_are_warned_about(configs: dict[str, Path], tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(configs["auth_only"].read_text())
    web.chmod(0o644)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"web_config_file": str(web)},
                "spaces": [{"name": "a", "space": "acme", "project_id": "p", "api_token": "t"}],
            }
        )
    )
    config.chmod(0o640)
    if os.geteuid() == 0:  # group-readable by a group this process is not in
        os.chown(config, -1, max({os.getegid(), *os.getgroups()}) + 1)
    else:
        config.chmod(0o644)
    result = run_cli("--check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"config warning: {config} holds secrets but is readable by group or others" in result.stderr
    assert f"config warning: {web} holds secrets" in result.stderr
    # Readable by this process's own group only: how Kubernetes mounts Secrets with fsGroup (0440).
    web.chmod(0o440)
    config.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(config, -1, os.getegid())
    quiet = run_cli("--check-config", "--config", str(config))
    assert quiet.returncode == 0 and quiet.stderr == ""
