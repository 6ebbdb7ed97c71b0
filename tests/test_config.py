"""Configuration: defaults, environment, durations, and every bad config with its exact errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import (
    ConfigError,
    config_from_env,
    load_config,
    parse_config,
    parse_duration,
)
from exporter.snapshot import DEFAULT_DURATION_BUCKETS

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((Path(__file__).parent / "bad_configs").glob("*.yaml"))


def _expected(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [
        line.removeprefix("# expect: ").replace("{path}", str(path))
        for line in lines
        if line.startswith("# expect: ")
    ]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_reports_every_error_with_its_path(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} declares no expected error"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert info.value.errors == expected


def test_example_config_is_valid_and_documents_every_default() -> None:
    env = {"SIGNALWIRE_PROJECT_ID": "pid", "SIGNALWIRE_API_TOKEN": "tok"}
    config = load_config(str(ROOT / "config.example.yaml"), env=env)
    assert config.spaces[0].project_id == "pid"
    assert config.spaces[0].api_token == "tok"
    assert config.spaces[0].base_url == "https://example.signalwire.com"
    assert config.poll.interval == 30 and config.poll.timeout == 10 and config.poll.lookback == 300
    assert config.poll.page_size == 1000 and config.poll.max_pages == 1000
    assert config.listen_address == "0.0.0.0:10092"
    assert config.web_config_file is None
    assert config.duration_buckets == DEFAULT_DURATION_BUCKETS
    assert (config.rooms_enabled, config.rooms_max) == (False, 50)
    assert (config.state_path, config.max_backfill) == (None, 86400)
    assert (config.log_level, config.log_format) == ("info", "text")


def test_minimal_config_gets_defaults() -> None:
    config = parse_config({"spaces": [{"name": "p", "space": "acme", "project_id": "x", "api_token": "y"}]})
    assert config.poll.interval == 30.0
    assert config.spaces[0].base_url == "https://acme.signalwire.com"
    assert config.listen_host_port == ("0.0.0.0", 10092)


def test_base_url_overrides_space_and_token_file_is_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    space = {
        "name": "p",
        "space": "acme",
        "base_url": "http://127.0.0.1:8080/",
        "project_id": "x",
        "api_token_file": str(token_file),
    }
    config = parse_config({"spaces": [space]})
    assert config.spaces[0].base_url == "http://127.0.0.1:8080"
    assert config.spaces[0].api_token == "file-token"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1d", 86400),
        (45, 45),
        ("2.5", 2.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 m", "m", "-1s", "1w", True, None, [1]])
def test_invalid_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_environment_defines_one_space_without_a_file(tmp_path: Path) -> None:
    env = {"SIGNALWIRE_SPACE": "acme", "SIGNALWIRE_PROJECT_ID": "pid", "SIGNALWIRE_API_TOKEN": "tok"}
    config = config_from_env(env)
    assert [(s.name, s.base_url, s.project_id, s.api_token) for s in config.spaces] == [
        ("acme", "https://acme.signalwire.com", "pid", "tok")
    ]
    token_file = tmp_path / "t"
    token_file.write_text("from-file")
    env = {
        "SIGNALWIRE_SPACE": "acme",
        "SIGNALWIRE_PROJECT_ID": "pid",
        "SIGNALWIRE_API_TOKEN_FILE": str(token_file),
    }
    assert config_from_env(env).spaces[0].api_token == "from-file"


def test_environment_missing_variables_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_env({"SIGNALWIRE_SPACE": "acme"})
    assert info.value.errors[:2] == [
        "SIGNALWIRE_PROJECT_ID: required when no --config file is given",
        "SIGNALWIRE_API_TOKEN (or SIGNALWIRE_API_TOKEN_FILE): required when no --config file is given",
    ]


def test_token_never_appears_in_config_errors_or_repr() -> None:
    secret = "s3cr3t-token-value"
    raw = {"spaces": [{"name": "p", "space": "bad.name", "project_id": "x", "api_token": secret}], "bogus": 1}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert secret not in str(info.value)
    good = parse_config({"spaces": [{"name": "p", "space": "ok", "project_id": "x", "api_token": secret}]})
    assert secret not in repr(good)


@pytest.mark.parametrize("token", [987654321, ["s3cr3t-token-value"], {"s3cr3t-token-value": 1}, "  "])
def test_a_token_of_the_wrong_type_is_reported_without_its_value(token: object) -> None:
    space = {"name": "p", "space": "acme", "project_id": "x", "api_token": token, "api_tokn": token}
    with pytest.raises(ConfigError) as info:
        parse_config({"spaces": [space]})
    assert info.value.errors == [
        "spaces[0].api_tokn: unknown key (did you mean api_token?)",
        "spaces[0].api_token: must be a non-empty string",
    ]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


def test_check_config_cli_exit_codes_and_no_traceback() -> None:
    bad = _cli("--check-config", "--config", str(ROOT / "tests/bad_configs/missing_project_id.yaml"), env={})
    assert bad.returncode == 2
    assert bad.stderr == "config error: spaces[0].project_id: required\n"
    assert "secret-token-value" not in bad.stdout + bad.stderr
    env = {"SIGNALWIRE_PROJECT_ID": "pid", "SIGNALWIRE_API_TOKEN": "tok-abc"}
    good = _cli("--check-config", "--config", str(ROOT / "config.example.yaml"), env=env)
    assert good.returncode == 0, good.stderr
    assert good.stdout == "config OK: 1 space(s): production\n"


@pytest.mark.parametrize(("token", "warns"), [("${SIGNALWIRE_API_TOKEN}", False), ("tok-literal", True)])
def test_only_a_literal_token_makes_the_config_file_a_secret(tmp_path: Path, token: str, warns: bool) -> None:
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.example.yaml").read_text().replace("${SIGNALWIRE_API_TOKEN}", token))
    config.chmod(0o644)
    env = {"SIGNALWIRE_SPACE": "example", "SIGNALWIRE_PROJECT_ID": "pid", "SIGNALWIRE_API_TOKEN": "tok-env"}
    result = _cli("--check-config", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "config OK: 1 space(s): production\n"
    warning = f"config warning: {config} holds secrets but is readable by group or others (chmod 600 it)\n"
    assert result.stderr == (warning if warns else "")


def test_secret_files_are_the_config_with_inline_tokens_and_token_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    inline = tmp_path / "inline.yaml"
    inline.write_text(
        "server: {web_config_file: web.yml}\nspaces: [{name: a, space: acme, project_id: p, api_token: t}]\n"
    )
    by_file = tmp_path / "by_file.yaml"
    by_file.write_text(f"spaces: [{{name: a, space: acme, project_id: p, api_token_file: {token}}}]\n")
    config = load_config(str(inline), env={})
    assert config.secret_files == (str(inline),) and config.web_config_file == "web.yml"
    assert load_config(str(by_file), env={}).secret_files == (str(token),)


HOSTILE = [ROOT / f"tests/bad_configs/{name}.yaml" for name in ("alias_bomb", "deep_nesting", "token_tag")]


@pytest.mark.parametrize("path", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_yaml_is_a_config_error_for_the_config_and_the_web_config(path: Path) -> None:
    """A "billion laughs", 5,000 levels of nesting, a token read as a tag: exit 2, each problem
    on one line, no traceback, nothing of the file repeated."""
    expected = "".join(f"config error: {error}\n" for error in _expected(path))
    for args in (("--config", str(path)), ("--demo", "--web.config.file", str(path))):
        result = _cli("--check-config", *args, env={})
        assert (result.returncode, result.stdout, result.stderr) == (2, "", expected)
        assert "SECRET" not in expected


def test_credentials_in_base_url_are_refused_without_repeating_them() -> None:
    path = ROOT / "tests/bad_configs/base_url_credentials.yaml"
    result = _cli("--check-config", "--config", str(path), env={})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "".join(f"config error: {error}\n" for error in _expected(path))
    assert "SECRET" not in result.stderr


@pytest.mark.parametrize(
    "token",
    [
        *("!SECRET", "!SECRET!x y", "!<SECRET> y", "*SECRET", "&SECRET x", "@SECRET", "`SECRET", "%SECRET"),
        *('"SECRET\\q"', '"\\qSECRET"', "|SECRET", ">SECRET", "'SECRET", "[SECRET", "{SECRET: 1"),
    ],
)
def test_yaml_errors_never_repeat_text_of_the_file(tmp_path: Path, token: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"spaces:\n  - name: p\n    space: example\n    project_id: pid\n    api_token: {token}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    [error] = info.value.errors
    assert error.startswith(f"{path}: invalid YAML (line ")
    assert "SECRET" not in error


def test_yaml_files_have_a_size_and_a_node_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("spaces: []\n# " + "x" * 256 * 1024 + "\n")
    many = tmp_path / "many.yaml"
    many.write_text("spaces: [" + "1, " * 10_000 + "]\n")
    assert _errors(big) == [f"{big}: cannot read config file: larger than 256 KiB"]
    assert _errors(many) == [
        f"{many}: invalid YAML (line 1, column 30001): more than 10000 keys, values and list items"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("when: 2024-02-30", "a date or number out of range"), ("x: a\x01b", "a character YAML does not allow")],
)
def test_yaml_values_python_cannot_build_are_config_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert _errors(path) == [f"{path}: invalid YAML: {problem}"]


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    return info.value.errors
