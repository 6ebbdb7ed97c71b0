"""Configuration: load YAML (or environment variables), expand ``${VAR}``, validate strictly.

Every problem is collected with its path (``spaces[0].project_id: required``) and raised
together as one :class:`ConfigError`, so a user fixes a file in one round trip.
Secret values are never part of an error message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

T = TypeVar("T")

DEFAULT_BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
ENV_SPACE, ENV_PROJECT, ENV_TOKEN, ENV_TOKEN_FILE = (
    "SIGNALWIRE_SPACE",
    "SIGNALWIRE_PROJECT_ID",
    "SIGNALWIRE_API_TOKEN",
    "SIGNALWIRE_API_TOKEN_FILE",
)


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Filters:
    """List filters sent with every room-sessions listing of a space."""

    room_name: str | None = None
    room_name_matches: str | None = None
    room_id: str | None = None


@dataclass(frozen=True)
class SpaceConfig:
    """One SignalWire space (project) to poll; ``name`` is the ``space`` label."""

    name: str
    base_url: str
    project_id: str
    api_token: str = field(repr=False)
    filters: Filters = Filters()


@dataclass(frozen=True)
class PollConfig:
    """Polling cadence and limits; durations in seconds."""

    interval: float = 30.0
    timeout: float = 10.0
    lookback: float = 300.0
    page_size: int = 1000
    max_pages: int = 1000


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    spaces: tuple[SpaceConfig, ...]
    listen_address: str = "0.0.0.0:10092"
    poll: PollConfig = PollConfig()
    state_path: str | None = None
    max_backfill: float = 86400.0
    duration_buckets: tuple[float, ...] = DEFAULT_BUCKETS
    rooms_enabled: bool = False
    rooms_max: int = 50
    log_level: str = "info"
    log_format: str = "text"
    web_config_file: str | None = None
    # Files holding secrets (the config file with an inline api_token, api_token_file paths),
    # checked for group/other read permission at start.
    secret_files: tuple[str, ...] = ()

    @property
    def listen_host_port(self) -> tuple[str, int]:
        """``listen_address`` split into host and port (validated on load)."""
        return split_host_port(self.listen_address)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_UNSET = object()  # stands for a value whose ${VAR} is not set
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1d"`` or a number."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if "".join(n + u for n, u in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"invalid duration {value!r} (use e.g. 500ms, 30s, 5m, 1h or seconds)"
                ) from None
        else:
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def split_host_port(address: str) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"`` or ``":port"`` into (host, port); host "" means all."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"must be host:port, got {address!r}")
    return host.strip("[]"), int(port_text)


def _int_range(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {value!r}")
        return value

    return parse


def _choice(*options: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return value.lower()

    return parse


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _secret(value: object) -> str:
    """Like ``_text`` but never echoes the value."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _listen_address(value: object) -> str:
    address = _text(value)
    split_host_port(address)
    return address


def _buckets(value: object) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of seconds")
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in value):
        raise ValueError("must contain numbers only")
    buckets = tuple(float(b) for b in value)
    if any(not math.isfinite(b) or b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError("must be positive, finite and strictly increasing")
    return buckets


def _base_url(value: object) -> str:
    url = _text(value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as https://example.signalwire.com, got {url!r}")
    if parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be an origin only (scheme://host[:port]), got {url!r}")
    return url


def _space_host(value: object) -> str:
    name = _text(value)
    if not _SPACE_NAME.match(name):
        raise ValueError(f"must be the space name only (example for example.signalwire.com), got {name!r}")
    return f"https://{name}.signalwire.com"


class _Reader:
    """Reads fields of one YAML mapping, recording every error with its path."""

    def __init__(self, raw: object, path: str, errors: list[str], keys: tuple[str, ...]) -> None:
        self.path, self.errors = path, errors
        self.data: Mapping[str, Any] = {}
        if raw is None:
            return
        if not isinstance(raw, Mapping):
            errors.append(f"{path or 'config'}: must be a mapping")
            return
        self.data = raw
        errors.extend(f"{self.at(k)}: unknown key" for k in raw if k not in keys)

    def at(self, key: object) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def get(self, key: str, parse: Callable[[object], T], default: T) -> T:
        if self.data.get(key) is None:
            return default
        return self.parse(key, parse, default)

    def require(self, key: str, parse: Callable[[object], T], default: T, hint: str = "") -> T:
        if self.data.get(key) is None:
            self.errors.append(f"{self.at(key)}: required{hint}")
            return default
        return self.parse(key, parse, default)

    def parse(self, key: str, parse: Callable[[object], T], default: T) -> T:
        if self.data[key] is _UNSET:  # an unset ${VAR}, already reported
            return default
        try:
            return parse(self.data[key])
        except ValueError as exc:
            self.errors.append(f"{self.at(key)}: {exc}")
            return default


def _expand_env(node: Any, path: str, env: Mapping[str, str], errors: list[str]) -> Any:
    """Replace ``${VAR}`` in every string of the tree; unset variables are errors."""
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k), env, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", env, errors) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    unset = [name for name in _ENV_REF.findall(node) if name not in env]
    if unset:
        errors.extend(f"{path}: environment variable {name} is not set" for name in unset)
        return _UNSET
    return _ENV_REF.sub(lambda match: env[match.group(1)], node)


def _read_token_file(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable text"
        raise ValueError(f"cannot read {path}: {reason}") from None
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def _space(raw: object, path: str, errors: list[str]) -> SpaceConfig:
    keys = ("name", "space", "base_url", "project_id", "api_token", "api_token_file", "filters")
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: must be a mapping")
        return SpaceConfig("", "", "", "")
    r = _Reader(raw, path, errors, keys)
    name = r.require("name", _text, "")
    if r.data.get("base_url") is not None:
        base_url = r.get("base_url", _base_url, "")
    else:
        base_url = r.require("space", _space_host, "", hint=" (or base_url)")
    project_id = r.require("project_id", _text, "")
    has_token, has_file = (
        r.data.get("api_token") is not None,
        r.data.get("api_token_file") is not None,
    )
    if has_token and has_file:
        errors.append(f"{r.at('api_token')}: give api_token or api_token_file, not both")
    token = r.get("api_token", _secret, "")
    token_path = r.get("api_token_file", _text, "")
    if token_path:
        token = r.parse("api_token_file", lambda _: _read_token_file(token_path), "")
    elif not has_token:
        errors.append(f"{r.at('api_token')}: required (or api_token_file)")
    f = _Reader(
        r.data.get("filters"),
        r.at("filters"),
        errors,
        ("room_name", "room_name_matches", "room_id"),
    )
    filters = Filters(
        room_name=f.get("room_name", _optional_text, None),
        room_name_matches=f.get("room_name_matches", _optional_text, None),
        room_id=f.get("room_id", _optional_text, None),
    )
    return SpaceConfig(name, base_url, project_id, token, filters)


def parse_config(raw: object, env: Mapping[str, str] | None = None, need_spaces: bool = True) -> Config:
    """Validate a parsed YAML document; raise :class:`ConfigError` listing every problem.

    ``need_spaces=False`` (demo mode) accepts a document without ``spaces``.
    """
    errors: list[str] = []
    raw = _expand_env(raw, "", os.environ if env is None else env, errors)
    top = _Reader(raw, "", errors, ("server", "poll", "spaces", "state", "metrics", "logging"))
    server = _Reader(top.data.get("server"), "server", errors, ("listen_address", "web_config_file"))
    p = _Reader(
        top.data.get("poll"),
        "poll",
        errors,
        ("interval", "timeout", "lookback", "page_size", "max_pages"),
    )
    state = _Reader(top.data.get("state"), "state", errors, ("path", "max_backfill"))
    metrics = _Reader(top.data.get("metrics"), "metrics", errors, ("duration_buckets", "rooms"))
    rooms = _Reader(metrics.data.get("rooms"), "metrics.rooms", errors, ("enabled", "max"))
    logs = _Reader(top.data.get("logging"), "logging", errors, ("level", "format"))

    raw_spaces = top.data.get("spaces")
    spaces: list[SpaceConfig] = []
    if raw_spaces is None and not need_spaces:
        pass
    elif not isinstance(raw_spaces, list) or not raw_spaces:
        errors.append("spaces: required (a list with at least one space)")
    else:
        spaces = [_space(s, f"spaces[{i}]", errors) for i, s in enumerate(raw_spaces)]
        seen: set[str] = set()
        for i, s in enumerate(spaces):
            if s.name and s.name in seen:
                errors.append(f"spaces[{i}].name: duplicate space name {s.name!r}")
            seen.add(s.name)

    defaults = PollConfig()
    config = Config(
        spaces=tuple(spaces),
        listen_address=server.get("listen_address", _listen_address, Config.listen_address),
        poll=PollConfig(
            interval=p.get("interval", parse_duration, defaults.interval),
            timeout=p.get("timeout", parse_duration, defaults.timeout),
            lookback=p.get("lookback", parse_duration, defaults.lookback),
            page_size=p.get("page_size", _int_range(1, 1000), defaults.page_size),
            max_pages=p.get("max_pages", _int_range(1, 1_000_000), defaults.max_pages),
        ),
        state_path=state.get("path", _optional_text, None),
        max_backfill=state.get("max_backfill", parse_duration, Config.max_backfill),
        duration_buckets=metrics.get("duration_buckets", _buckets, DEFAULT_BUCKETS),
        rooms_enabled=rooms.get("enabled", _boolean, False),
        rooms_max=rooms.get("max", _int_range(1, 10_000), 50),
        log_level=logs.get("level", _choice(*LOG_LEVELS), "info"),
        log_format=logs.get("format", _choice(*LOG_FORMATS), "text"),
        web_config_file=server.get("web_config_file", _optional_text, None),
        secret_files=tuple(
            str(s["api_token_file"])
            for s in raw_spaces or ()
            if isinstance(raw_spaces, list)
            and isinstance(s, Mapping)
            and isinstance(s.get("api_token_file"), str)
        ),
    )
    if errors:
        raise ConfigError(errors)
    return config


def config_from_env(env: Mapping[str, str] | None = None) -> Config:
    """One space from ``SIGNALWIRE_*`` variables, for running without a config file."""
    env = os.environ if env is None else env
    missing = [v for v in (ENV_SPACE, ENV_PROJECT) if not env.get(v)]
    if not env.get(ENV_TOKEN) and not env.get(ENV_TOKEN_FILE):
        missing.append(f"{ENV_TOKEN} (or {ENV_TOKEN_FILE})")
    if missing:
        raise ConfigError(
            [f"{v}: required when no --config file is given" for v in missing]
            + ["(or run with --demo to try the exporter against a simulated space)"]
        )
    space: dict[str, str] = {
        "name": env[ENV_SPACE],
        "space": env[ENV_SPACE],
        "project_id": env[ENV_PROJECT],
    }
    if env.get(ENV_TOKEN):
        space["api_token"] = env[ENV_TOKEN]
    else:
        space["api_token_file"] = env[ENV_TOKEN_FILE]
    return parse_config({"spaces": [space]}, env={})


def read_yaml(path: str, what: str) -> object:
    """The YAML document in ``path`` ({} when empty); unreadable or invalid: ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"{path}: cannot read {what}: {reason}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None
    return raw if raw is not None else {}


def load_config(path: str | None, env: Mapping[str, str] | None = None, need_spaces: bool = True) -> Config:
    """Load ``path`` (YAML), or the environment when ``path`` is None."""
    if path is None:
        return config_from_env(env) if need_spaces else Config(spaces=())
    raw = read_yaml(path, "config file")
    config = parse_config(raw, env, need_spaces)
    if _has_inline_token(raw):
        config = replace(config, secret_files=(path, *config.secret_files))
    return config


def _has_inline_token(raw: object) -> bool:
    spaces = raw.get("spaces") if isinstance(raw, Mapping) else None
    return isinstance(spaces, list) and any(isinstance(s, Mapping) and s.get("api_token") for s in spaces)


def readable_by_others(path: str) -> bool:
    """Whether anyone else may read ``path``: other, or a group this process is not in.

    A file readable by this process's own group is not reported: that is how Kubernetes shares
    a mounted Secret with the pod (mode 0440, group ``fsGroup``). False when it cannot be examined.
    """
    try:
        info = os.stat(path)
    except OSError:
        return False
    own_groups = {os.getegid(), *os.getgroups()}
    return bool(info.st_mode & 0o004) or bool(info.st_mode & 0o040 and info.st_gid not in own_groups)
