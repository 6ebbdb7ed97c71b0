"""Web configuration file (``--web.config.file``) in the Prometheus exporter-toolkit format.

The same ``web-config.yml`` a Prometheus server or node_exporter reads: ``tls_server_config``
(HTTPS, optionally mutual TLS), ``basic_auth_users`` (bcrypt hashes) and
``http_server_config.headers``. The file's schema is the dataclasses below, read strictly by
:func:`exporter.schema.decode` like the main config, then checked by the toolkit's rules that
relate keys; every error comes with its path, collected into one :class:`~exporter.config.ConfigError`.

What differs from the Go toolkit, because Python's ``ssl`` module works differently:
``client_auth_type: RequireAnyClientCert`` (accept any certificate without verifying it) cannot
be expressed and is rejected; ``RequestClientCert`` does not ask for a certificate (the exporter
never looks at an unverified one); ``curve_preferences`` and ``http_server_config.http2`` are
validated but not applied (OpenSSL's curve order, HTTP/1.1); ``rate_limit`` is rejected.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import bcrypt
from msgspec import Meta

from .config import ConfigError, read_yaml
from .schema import SECRET, Parse, decode

log = logging.getLogger("exporter.web")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls names (tls.CipherSuites()) -> OpenSSL names. As in Go, they only affect TLS <= 1.2.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": "",  # TLS 1.3 suites: not configurable, accepted
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")
# The only headers the toolkit lets a web config set, with their allowed values (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
# Paths served without basic auth: Kubernetes HTTP probes cannot send credentials.
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})
REALM = "signalwire-video-exporter"
MIN_COST, MAX_COST = 4, 31  # bcrypt's cost factor range
# bcrypt keys Blowfish with at most 72 bytes: Go's bcrypt (Prometheus' toolkit) compares only the
# first 72 bytes of a longer password, where Python's bcrypt refuses it.
BCRYPT_MAX_PASSWORD = 72
_USERS = "a mapping of user names to bcrypt hashes"


def _string(value: object) -> str | None:
    """A string; "" means unset, as in the toolkit. Never echoes the value (it may be a key)."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value or None


def _client_auth_type(value: object) -> str:
    auth = _string(value) or "NoClientCert"
    return "RequireAnyClientCert" if auth == "RequireClientCert" else auth  # the toolkit's old spelling


def _tls_version(value: object) -> str:
    if not isinstance(value, str) or value not in TLS_VERSIONS:
        raise ValueError(f"unknown TLS version {value!r} (use TLS10, TLS11, TLS12 or TLS13)")
    return value


_String = Annotated[str | None, Parse(_string)]
_TLSVersion = Annotated[str, Parse(_tls_version)]


@dataclass(frozen=True)
class TLSSettings:
    """``tls_server_config``; relative file names are resolved against the web config's directory."""

    cert_file: _String = None
    key_file: _String = None
    cert: _String = field(default=None, repr=False)
    key: _String = field(default=None, repr=False)
    client_ca_file: _String = None
    client_ca: _String = None
    client_auth_type: Annotated[str, Parse(_client_auth_type)] = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: _TLSVersion = "TLS12"
    max_version: _TLSVersion = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()  # validated, not applied


@dataclass(frozen=True)
class WebConfig:
    """A validated web configuration; ``tls`` is None when HTTPS is not configured."""

    path: str | None = None
    tls: TLSSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _HTTPServer:
    http2: bool = True  # accepted; this server speaks HTTP/1.1
    headers: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _File:
    """The web config file's schema (see schema.py)."""

    tls_server_config: TLSSettings = TLSSettings()
    http_server_config: _HTTPServer = _HTTPServer()
    basic_auth_users: Annotated[dict[Any, Any], Meta(description=_USERS), SECRET] = field(
        default_factory=dict
    )
    rate_limit: Any = None  # not supported


def _resolve(base: Path, name: str | None) -> str | None:
    """Relative file names are relative to the web config's directory, as in the toolkit."""
    return None if name is None else str(base / name)


def _tls(tls: TLSSettings, base: Path, errors: list[str]) -> TLSSettings | None:
    """The toolkit's rules that relate TLS keys; None when no certificate is configured."""
    at = "tls_server_config.{}".format
    for inline, name in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if getattr(tls, inline) and getattr(tls, name):
            errors.append(f"{at(inline)}: give {inline} or {name}, not both")
    has_cert, has_key = bool(tls.cert or tls.cert_file), bool(tls.key or tls.key_file)
    has_ca, auth = bool(tls.client_ca or tls.client_ca_file), tls.client_auth_type
    if not has_cert and not has_key and not has_ca:
        return None  # as in the toolkit: no certificate, no TLS
    if not has_cert:
        errors.append(f"{at('cert_file')}: required (missing cert_file)")
    if not has_key:
        errors.append(f"{at('key_file')}: required (missing key_file)")
    if auth not in CLIENT_AUTH_TYPES:
        errors.append(
            f"{at('client_auth_type')}: must be one of {', '.join(CLIENT_AUTH_TYPES)}, got {auth!r}"
        )
    elif auth == "RequireAnyClientCert":
        errors.append(
            f"{at('client_auth_type')}: RequireAnyClientCert (unverified client certificates) is not "
            "supported by this exporter; use RequireAndVerifyClientCert with client_ca_file"
        )
    if has_ca and auth == "NoClientCert":
        errors.append(
            f"{at('client_ca_file')}: Client CA's have been configured without a Client Auth Policy"
        )
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
        errors.append(f"{at('client_ca_file')}: required with client_auth_type {auth}")
    if tls.client_allowed_sans and auth != "RequireAndVerifyClientCert":
        errors.append(f"{at('client_allowed_sans')}: requires client_auth_type RequireAndVerifyClientCert")
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        errors.append(f"{at('min_version')}: is above max_version")
    errors.extend(
        f"{at('cipher_suites')}: unknown cipher {c!r}" for c in tls.cipher_suites if c not in CIPHER_SUITES
    )
    errors.extend(
        f"{at('curve_preferences')}: unknown curve {c!r}" for c in tls.curve_preferences if c not in CURVES
    )
    return replace(
        tls,
        cert_file=_resolve(base, tls.cert_file),
        key_file=_resolve(base, tls.key_file),
        client_ca_file=_resolve(base, tls.client_ca_file),
    )


def _users(raw: Mapping[Any, Any], errors: list[str]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for name, hashed in raw.items():
        path = f"basic_auth_users.{name}"
        if not isinstance(name, str) or not name or ":" in name:
            errors.append(f"{path}: user name must be a non-empty string without ':'")
        elif not isinstance(hashed, str) or not _is_bcrypt(hashed):
            errors.append(f"{path}: must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)")
        else:
            users[name] = hashed.encode()
    return users


def _is_bcrypt(value: str) -> bool:
    return (
        len(value) == 60
        and value[:4] in ("$2a$", "$2b$", "$2y$")
        and value[4:6].isdigit()
        and MIN_COST <= int(value[4:6]) <= MAX_COST
    )


def _headers(raw: Mapping[Any, Any], errors: list[str]) -> tuple[tuple[str, str], ...]:
    headers = []
    for name, value in raw.items():
        path = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            errors.append(
                f"{path}: HTTP header {name!r} can not be configured (allowed: {', '.join(HEADERS)})"
            )
        elif not isinstance(value, str):
            errors.append(f"{path}: must be a string")
        elif "\n" in value or "\r" in value:
            errors.append(f"{path}: must be one line")
        elif value:  # blank means unset
            allowed = HEADERS[name]
            if allowed is not None and value.lower() not in allowed:
                errors.append(f"{path}: invalid value {value!r} (allowed: {', '.join(allowed)})")
            else:
                headers.append((name, value))
    return tuple(headers)


def parse_web_config(raw: object, path: str | None = None, base: Path | None = None) -> WebConfig:
    """Validate a parsed web config document and build its TLS context; raise ConfigError."""
    errors: list[str] = []
    doc = decode(raw, _File, "", errors)
    if doc.rate_limit is not None:
        errors.append("rate_limit: not supported by this exporter")
    tls = _tls(doc.tls_server_config, base or Path("."), errors)
    users = _users(doc.basic_auth_users, errors)
    headers = _headers(doc.http_server_config.headers, errors)
    context = None
    if tls is not None and not errors:
        try:
            context = build_ssl_context(tls)
        except ValueError as exc:
            errors.append(f"tls_server_config: {exc}")
    if errors:
        prefix = f"{path}: " if path else ""
        raise ConfigError([prefix + e for e in errors])
    return WebConfig(path, tls, users, headers, context)


def load_web_config(path: str) -> WebConfig:
    """Read and validate ``path``; every error is prefixed with the file name."""
    return parse_web_config(read_yaml(path, "web config file"), path, Path(path).resolve().parent)


def build_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The server-side context; certificate problems raise ValueError naming the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ciphers = [CIPHER_SUITES[c] for c in tls.cipher_suites if CIPHER_SUITES[c]]
    if ciphers:
        try:
            context.set_ciphers(":".join(ciphers))
        except ssl.SSLError:
            raise ValueError("cipher_suites: none of them is available in this OpenSSL") from None
    with tempfile.TemporaryDirectory(prefix="webcfg-") as tmp:  # inline PEM: load_cert_chain wants files
        cert_file, key_file = tls.cert_file, tls.key_file
        if tls.cert is not None:
            cert_file = os.path.join(tmp, "cert.pem")
            Path(cert_file).write_text(tls.cert)
        if tls.key is not None:
            key_file = os.path.join(tmp, "key.pem")
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(tls.key)
        assert cert_file is not None and key_file is not None
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            where = "cert/key" if tls.cert or tls.key else f"{tls.cert_file}, {tls.key_file}"
            raise ValueError(f"cannot load the certificate and key ({where}): {_reason(exc)}") from None
    if tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        try:
            context.load_verify_locations(cafile=tls.client_ca_file, cadata=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            where = tls.client_ca_file or "client_ca"
            raise ValueError(f"cannot load the client CA ({where}): {_reason(exc)}") from None
        required = tls.client_auth_type == "RequireAndVerifyClientCert"
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc.strerror or exc)


def san_allowed(peer: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    """Whether the verified client certificate has a SAN exactly equal to one of ``allowed``."""
    if not allowed:
        return True
    sans = (peer or {}).get("subjectAltName", ())
    return any(str(value) in allowed for _kind, value in sans)


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes, caching successful checks.

    A successful (user, password) pair is remembered as ``sha256(password)`` per user and
    compared with :func:`hmac.compare_digest`, so only the first scrape pays for bcrypt.
    Unknown users cost one bcrypt too, at the highest cost configured, so their timing does not
    reveal which users exist. As in Go, only the first 72 bytes of a password count.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self.bcrypt_calls = 0  # observable by tests
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @functools.cached_property
    def dummy_hash(self) -> bytes:
        """Checked for unknown users: as costly as the costliest configured hash."""
        cost = max((int(hashed[4:6]) for hashed in self.users.values()), default=10)
        return bcrypt.hashpw(b"dummy", bcrypt.gensalt(cost))

    def _checkpw(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.bcrypt_calls += 1
        try:
            return bcrypt.checkpw(password, hashed)
        except ValueError:
            return False

    def check(self, header: str | None) -> str | None:
        """The authenticated user name, or None."""
        if not header or header[:6].lower() != "basic ":
            return None
        try:  # a non-ASCII header is a ValueError, like bad base64 (binascii.Error) and bad UTF-8
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except ValueError:
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        secret = password.encode()[:BCRYPT_MAX_PASSWORD]
        digest = hashlib.sha256(secret).digest()
        hashed = self.users.get(user)
        if hashed is None:
            self._checkpw(secret, self.dummy_hash)
            return None
        cached = self._verified.get(user)
        if cached is not None and hmac.compare_digest(cached, digest):
            return user
        if not self._checkpw(secret, hashed):
            return None
        with self._lock:
            self._verified[user] = digest
        return user


def wrap_app(app: App, web: WebConfig, auth: BasicAuth | None = None) -> App:
    """Add the configured headers to every response and require basic auth where configured."""
    if auth is None and web.users:
        auth = BasicAuth(web.users)
    extra = list(web.headers)

    def wrapped(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, headers + extra, exc_info)

        path = environ.get("PATH_INFO", "/")
        if auth is not None and path not in UNAUTHENTICATED_PATHS:
            user = auth.check(environ.get("HTTP_AUTHORIZATION"))
            if user is None:
                body = b"Unauthorized\n"
                start(
                    "401 Unauthorized",
                    [
                        ("Content-Type", "text/plain"),
                        ("Content-Length", str(len(body))),
                        ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
                    ],
                )
                return [body]
            environ["REMOTE_USER"] = user
        return app(environ, start)

    return wrapped
