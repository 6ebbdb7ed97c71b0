"""Configuration: load YAML (or environment variables), expand ``${VAR}``, validate strictly.

The file's schema is the dataclasses below, read by :func:`exporter.schema.decode`; the rules
that relate keys of a space follow in :func:`_space`. Every problem is collected with its path
(``spaces[0].project_id: required``) and raised together as one :class:`ConfigError`, so a user
fixes a file in one round trip. Secret values are never part of an error message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from msgspec import Meta

from .schema import REPORTED, Parse, decode, given
from .snapshot import DEFAULT_DURATION_BUCKETS, DEFAULT_MEMBER_BUCKETS, DEFAULT_UTILIZATION_BUCKETS

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
ENV_SPACE, ENV_PROJECT, ENV_TOKEN, ENV_TOKEN_FILE = (
    "SIGNALWIRE_SPACE",
    "SIGNALWIRE_PROJECT_ID",
    "SIGNALWIRE_API_TOKEN",
    "SIGNALWIRE_API_TOKEN_FILE",
)
_SPACES = "a list with at least one space"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# Bounds of a YAML file (config and web config), so that no file can exhaust time or memory.
MAX_YAML_BYTES = 256 * 1024
MAX_YAML_DEPTH = 50
MAX_YAML_NODES = 10_000  # keys, values and list items
# PyYAML quotes document text into some messages ("found character '@' that cannot start any
# token"); its own token names ("but found '<block end>'") are safe to show.
_QUOTED_TEXT = re.compile(r"""(?:found|got|handle|character) (?!'<)['"]""")


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


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


def _text(value: object) -> str:
    """A non-empty string, stripped; never echoes the value (it may be a token)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _choice(*options: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return value.lower()

    return parse


def _listen_address(value: object) -> str:
    address = _text(value)
    split_host_port(address)
    return address


def _buckets(value: object) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of numbers")
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in value):
        raise ValueError("must contain numbers only")
    buckets = tuple(float(b) for b in value)
    if any(not math.isfinite(b) or b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError("must be positive, finite and strictly increasing")
    return buckets


def _base_url(value: object) -> str:
    url = _text(value).rstrip("/")
    if "@" in url:  # checked first: no message below may repeat a URL with credentials
        raise ValueError(
            "must not contain credentials (user:password@); give them as project_id and api_token"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as https://example.signalwire.com, got {url!r}")
    if parts.path or parts.query or parts.fragment:
        raise ValueError(f"must be an origin only (scheme://host[:port]), got {url!r}")
    return url


def _space_host(value: object) -> str:
    name = _text(value)
    if not _SPACE_NAME.match(name):
        raise ValueError(f"must be the space name only (example for example.signalwire.com), got {name!r}")
    return f"https://{name}.signalwire.com"


def _timezone(value: object) -> str:
    name = _text(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"must be an IANA time zone name such as UTC or Europe/Berlin, got {name!r}"
        ) from None
    return name


_Text = Annotated[str, Parse(_text)]
_OptionalText = Annotated[str | None, Parse(_text)]
_Duration = Annotated[float, Parse(parse_duration)]


@dataclass(frozen=True)
class Filters:
    """List filters sent with every room-sessions listing of a space."""

    room_name: _OptionalText = None
    room_name_matches: _OptionalText = None
    room_id: _OptionalText = None


@dataclass(frozen=True)
class SpaceConfig:
    """One SignalWire space (project) to poll; ``name`` is the ``space`` label."""

    name: str
    base_url: str
    project_id: str
    api_token: str = field(repr=False)
    filters: Filters = Filters()
    budget_monthly: float | None = None  # dollars


@dataclass(frozen=True)
class PollConfig:
    """Polling cadence and limits; durations in seconds."""

    interval: _Duration = 30.0
    timeout: _Duration = 10.0
    lookback: _Duration = 300.0
    page_size: Annotated[int, Meta(ge=1, le=1000)] = 1000
    max_pages: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    max_requests: Annotated[int, Meta(ge=1, le=1_000_000)] = 500


@dataclass(frozen=True)
class MembersConfig:
    """``members:``: read the members of sessions (docs/metrics.md, "People"); one request each."""

    enabled: bool = False  # of every counted completed session, once
    live: bool = False  # of every in-progress session, every poll


@dataclass(frozen=True)
class RecordingsConfig:
    """``recordings:``: read the recordings of counted sessions; one request per session and poll
    until each of its recordings has completed, or for at most ``max_wait`` after it ended."""

    enabled: bool = False
    max_wait: _Duration = 3600.0


@dataclass(frozen=True)
class ChargesConfig:
    """``charges:``: read the video logs (what SignalWire bills) every ``interval``, within the
    poll's request budget (docs/metrics.md, "The bill")."""

    enabled: bool = False
    interval: _Duration = 300.0
    descriptions_max: Annotated[int, Meta(ge=1, le=1000)] = 20  # label values; the rest "__other__"
    tolerance: Annotated[float, Meta(ge=0, le=1e6, description="a number of dollars, 0 or more")] = 0.0001


@dataclass(frozen=True)
class BillingConfig:
    """``billing:``: where days and months begin."""

    timezone: Annotated[str, Parse(_timezone)] = "UTC"


@dataclass(frozen=True)
class ServerLimits:
    """What one client may take of the HTTP server (``server:`` keys; docs/security.md); seconds."""

    max_connections: Annotated[int, Meta(ge=1, le=100_000)] = 512
    read_header_timeout: _Duration = 10.0
    idle_timeout: _Duration = 90.0
    max_header_bytes: Annotated[int, Meta(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    spaces: tuple[SpaceConfig, ...]
    listen_address: str = "0.0.0.0:10092"
    poll: PollConfig = PollConfig()
    state_path: str | None = None
    max_backfill: float = 86400.0
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    member_buckets: tuple[float, ...] = DEFAULT_MEMBER_BUCKETS
    utilization_buckets: tuple[float, ...] = DEFAULT_UTILIZATION_BUCKETS
    members: MembersConfig = MembersConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    charges: ChargesConfig = ChargesConfig()
    billing: BillingConfig = BillingConfig()
    rooms_enabled: bool = False
    rooms_max: int = 50
    log_level: str = "info"
    log_format: str = "text"
    web_config_file: str | None = None
    server_limits: ServerLimits = ServerLimits()
    # Files holding secrets (the config file with a literal api_token, api_token_file paths),
    # checked for group/other read permission at start.
    secret_files: tuple[str, ...] = ()

    @property
    def listen_host_port(self) -> tuple[str, int]:
        """``listen_address`` split into host and port (validated on load)."""
        return split_host_port(self.listen_address)


# The file's schema (see schema.py); PollConfig and Filters above are sections of it too.


# The keys a space requires, each with the key that may stand in for it.
_REQUIRED = {"name": "", "space": "base_url", "project_id": "", "api_token": "api_token_file"}


@dataclass(frozen=True)
class _Budget:
    monthly: Annotated[float, Meta(gt=0, le=1e12, description="a positive number (dollars)")] | None = None


@dataclass(frozen=True)
class _Space:
    name: _Text = ""  # required: see _REQUIRED
    space: Annotated[str | None, Parse(_space_host)] = None  # read as https://<space>.signalwire.com
    base_url: Annotated[str | None, Parse(_base_url)] = None
    project_id: _Text = ""
    api_token: _Text = field(default="", repr=False)
    api_token_file: _OptionalText = None
    filters: Filters = Filters()
    budget: _Budget = _Budget()


@dataclass(frozen=True)
class _Server(ServerLimits):
    listen_address: Annotated[str, Parse(_listen_address)] = Config.listen_address
    web_config_file: _OptionalText = None


@dataclass(frozen=True)
class _State:
    path: _OptionalText = None
    max_backfill: _Duration = Config.max_backfill


@dataclass(frozen=True)
class _Rooms:
    enabled: bool = Config.rooms_enabled
    max: Annotated[int, Meta(ge=1, le=10_000)] = Config.rooms_max


@dataclass(frozen=True)
class _Metrics:
    duration_buckets: Annotated[tuple[float, ...], Parse(_buckets)] = DEFAULT_DURATION_BUCKETS
    member_buckets: Annotated[tuple[float, ...], Parse(_buckets)] = DEFAULT_MEMBER_BUCKETS
    utilization_buckets: Annotated[tuple[float, ...], Parse(_buckets)] = DEFAULT_UTILIZATION_BUCKETS
    rooms: _Rooms = _Rooms()


@dataclass(frozen=True)
class _Logging:
    level: Annotated[str, Parse(_choice(*LOG_LEVELS))] = Config.log_level
    format: Annotated[str, Parse(_choice(*LOG_FORMATS))] = Config.log_format


@dataclass(frozen=True)
class _File:
    server: _Server = _Server()
    poll: PollConfig = PollConfig()
    state: _State = _State()
    members: MembersConfig = MembersConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    charges: ChargesConfig = ChargesConfig()
    billing: BillingConfig = BillingConfig()
    metrics: _Metrics = _Metrics()
    logging: _Logging = _Logging()
    # Each entry is a _Space, decoded by _space with the rules that relate its keys.
    spaces: Annotated[list[Any], Meta(min_length=1, description=_SPACES)] | None = None


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
        return REPORTED
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


def _space(raw: object, path: str, errors: list[str]) -> _Space:
    """One entry of ``spaces``: its keys, the rules that relate them, the token read from its file."""
    space, present = decode(raw, _Space, path, errors), given(raw)
    if not isinstance(raw, Mapping):  # reported by decode
        return space
    for key, other in _REQUIRED.items():
        if not present & {key, other}:
            errors.append(f"{path}.{key}: required" + (f" (or {other})" if other else ""))
    if {"api_token", "api_token_file"} <= present:
        errors.append(f"{path}.api_token: give api_token or api_token_file, not both")
    if space.api_token_file:
        try:
            return replace(space, api_token=_read_token_file(space.api_token_file))
        except ValueError as exc:
            errors.append(f"{path}.api_token_file: {exc}")
    return space


def parse_config(raw: object, env: Mapping[str, str] | None = None, need_spaces: bool = True) -> Config:
    """Validate a parsed YAML document; raise :class:`ConfigError` listing every problem.

    ``need_spaces=False`` (demo mode) accepts a document without ``spaces``.
    """
    errors: list[str] = []
    raw = _expand_env(raw, "", os.environ if env is None else env, errors)
    doc = decode(raw, _File, "", errors)
    if need_spaces and "spaces" not in given(raw):
        errors.append(f"spaces: required ({_SPACES})")
    spaces = [_space(s, f"spaces[{i}]", errors) for i, s in enumerate(doc.spaces or ())]
    names = [s.name for s in spaces]
    errors.extend(
        f"spaces[{i}].name: duplicate space name {name!r}"
        for i, name in enumerate(names)
        if name and name in names[:i]
    )
    if errors:
        raise ConfigError(errors)
    return Config(
        spaces=tuple(
            SpaceConfig(
                s.name, s.base_url or s.space or "", s.project_id, s.api_token, s.filters, s.budget.monthly
            )
            for s in spaces
        ),
        listen_address=doc.server.listen_address,
        poll=doc.poll,
        state_path=doc.state.path,
        max_backfill=doc.state.max_backfill,
        duration_buckets=doc.metrics.duration_buckets,
        member_buckets=doc.metrics.member_buckets,
        utilization_buckets=doc.metrics.utilization_buckets,
        members=doc.members,
        recordings=doc.recordings,
        charges=doc.charges,
        billing=doc.billing,
        rooms_enabled=doc.metrics.rooms.enabled,
        rooms_max=doc.metrics.rooms.max,
        log_level=doc.logging.level,
        log_format=doc.logging.format,
        web_config_file=doc.server.web_config_file,
        server_limits=ServerLimits(**{f.name: getattr(doc.server, f.name) for f in fields(ServerLimits)}),
        secret_files=tuple(s.api_token_file for s in spaces if s.api_token_file),
    )


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


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader within bounds: no anchors or aliases (nothing expands, so no "billion
    laughs"), at most MAX_YAML_DEPTH levels and MAX_YAML_NODES nodes, checked while composing."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.check_event()  # parses the node's first event into current_event
        event: yaml.NodeEvent = self.current_event
        if isinstance(event, yaml.AliasEvent) or event.anchor:
            _refuse("anchors and aliases are not supported (quote a value that starts with & or *)", event)
        self.depth, self.nodes = self.depth + 1, self.nodes + 1
        if self.depth > MAX_YAML_DEPTH:
            _refuse(f"nested more than {MAX_YAML_DEPTH} levels deep", event)
        if self.nodes > MAX_YAML_NODES:
            _refuse(f"more than {MAX_YAML_NODES} keys, values and list items", event)
        node = super().compose_node(parent, index)
        self.depth -= 1
        return node


def _refuse(problem: str, where: yaml.Event | yaml.Node) -> NoReturn:
    raise yaml.MarkedYAMLError(problem=problem, problem_mark=cast(yaml.Mark, where.start_mark))


# An unknown tag is refused without repeating it: an unquoted token may start with "!".
_Loader.add_constructor(None, lambda _, node: _refuse("unknown tag (quote a value that starts with !)", node))


def _yaml_problem(exc: Exception) -> str:
    """What is wrong with a YAML file, in words that never repeat its text (it may be a secret)."""
    if not isinstance(exc, yaml.YAMLError):  # ValueError from a constructor: 2024-02-30, 5000 digits
        return "a date or number out of range"
    if not isinstance(exc, yaml.MarkedYAMLError):  # a ReaderError
        return "a character YAML does not allow"
    problem = exc.problem or "invalid syntax"
    return "invalid syntax (the text there is not repeated)" if _QUOTED_TEXT.search(problem) else problem


def read_yaml(path: str, what: str) -> object:
    """The YAML document in ``path`` ({} when empty); unreadable, invalid or too large: ConfigError.

    No error repeats text of the file: whatever it quotes may be a secret.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError([f"{path}: cannot read {what}: larger than {MAX_YAML_BYTES // 1024} KiB"])
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"{path}: cannot read {what}: {reason}"]) from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, ValueError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{path}: invalid YAML{where}: {_yaml_problem(exc)}"]) from None
    return raw if raw is not None else {}


def load_config(path: str | None, env: Mapping[str, str] | None = None, need_spaces: bool = True) -> Config:
    """Load ``path`` (YAML), or the environment when ``path`` is None."""
    if path is None:
        return config_from_env(env) if need_spaces else Config(spaces=())
    raw = read_yaml(path, "config file")
    config = parse_config(raw, env, need_spaces)
    if _has_literal_token(raw):
        config = replace(config, secret_files=(path, *config.secret_files))
    return config


def _has_literal_token(raw: object) -> bool:
    """Whether an ``api_token`` is written in the file itself, not only ``${VAR}`` references."""
    spaces = raw.get("spaces") if isinstance(raw, Mapping) else None
    return isinstance(spaces, list) and any(
        isinstance(s, Mapping) and _ENV_REF.sub("", str(s.get("api_token") or "")).strip() for s in spaces
    )


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
