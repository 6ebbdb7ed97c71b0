"""The container image, built from the real Dockerfile without a Docker engine.

``scripts/build-image`` builds it with ``buildah bud --isolation=chroot`` on a local Debian bookworm
base made with debootstrap (passed as ``BASE_IMAGE``) and runs commands in it as its USER.
The exporter then runs from the image's filesystem in ``--demo --once`` mode, as UID 65534, and once
more with the image's root filesystem mounted read-only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import exporter

ROOT = Path(__file__).resolve().parent.parent
BUILD_IMAGE = ROOT / "scripts" / "build-image"
TAG = "localhost/signalwire-video-exporter:test"
UID = 65534
UP = 'signalwire_video_up{space="demo"} 1.0'
ACTIVE = re.compile(r"^signalwire_video_room_sessions_active\{[^}]*\} (\S+)$", re.MULTILINE)


def _report(message: str) -> None:
    print(f"[test_image] {message}", file=sys.stderr)


@pytest.fixture(scope="module")
def image() -> str:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing:
        reason = f"the image build needs {' and '.join(missing)} (apt-get install buildah debootstrap)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    start = time.monotonic()
    proc = subprocess.run([str(BUILD_IMAGE), "build", TAG], capture_output=True, text=True, timeout=900)
    _report(f"build took {time.monotonic() - start:.1f}s (base image included if it was not cached)")
    assert proc.returncode == 0, f"image build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return TAG


def _run(tag: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(BUILD_IMAGE), "run", tag, "--", *cmd], capture_output=True, text=True, timeout=timeout
    )
    _report(f"run {cmd[0]} took {time.monotonic() - start:.1f}s")
    return proc


def _check_demo_output(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert UP in proc.stdout, proc.stdout[-2000:]
    active = sum(float(value) for value in ACTIVE.findall(proc.stdout))
    assert active > 0, "no active sessions in the demo output"


@pytest.fixture(scope="module")
def config(image: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_demo_once_runs_in_the_image(image: str) -> None:
    _check_demo_output(_run(image, "signalwire-video-exporter", "--demo", "--once"))


def test_entrypoint_is_the_console_script(image: str, config: dict[str, Any]) -> None:
    # What `docker run IMAGE --demo --once` runs: the ENTRYPOINT followed by the arguments.
    entrypoint = config["Docker"]["config"]["Entrypoint"]
    assert entrypoint == ["signalwire-video-exporter"]
    proc = _run(image, *entrypoint, "--version")
    assert proc.returncode == 0 and exporter.__version__ in proc.stdout + proc.stderr, proc


def test_runs_as_fixed_non_root_uid(image: str) -> None:
    proc = _run(image, "python3", "-c", "import os; print(os.getuid(), os.getgid(), os.geteuid())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(UID)] * 3


def test_image_config(config: dict[str, Any]) -> None:
    cfg = config["Docker"]["config"]
    assert cfg["User"] == f"{UID}:{UID}"
    assert "10092/tcp" in cfg["ExposedPorts"]
    assert cfg["Entrypoint"] == ["signalwire-video-exporter"]
    assert any(e.startswith("PATH=/opt/venv/bin:") for e in cfg["Env"])
    health = cfg["Healthcheck"]["Test"]
    assert health[0] == "CMD" and health[1] == "python3", health
    assert "/-/healthy" in " ".join(health) and "curl" not in " ".join(health)
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.title"] == "signalwire-video-exporter"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == exporter.__version__, "Dockerfile ARG VERSION"
    assert labels["org.opencontainers.image.description"]


# Runs inside the image: no compiler, no pip, no wheels or sources left from the build stage,
# and the Python the venv uses is new enough.
_LEFTOVERS = r"""
import glob, os, shutil, sys
found = [t for t in ("gcc", "cc", "g++", "make", "pip", "pip3", "curl") if shutil.which(t)]
found += [p for p in ("/src", "/dist", "/opt/venv/bin/pip") if os.path.exists(p)]
found += glob.glob("/opt/venv/lib/python3*/site-packages/pip")
found += glob.glob("/opt/venv/lib/python3*/site-packages/setuptools")
found += glob.glob("/opt/venv/**/*.whl", recursive=True)
assert sys.version_info >= (3, 11), sys.version
assert sys.prefix == "/opt/venv", sys.prefix
print("LEFTOVERS", found)
"""


def test_runtime_stage_has_no_build_leftovers(image: str) -> None:
    proc = _run(image, "python3", "-c", _LEFTOVERS)
    assert proc.returncode == 0, proc.stderr
    assert "LEFTOVERS []" in proc.stdout, proc.stdout


STATE_DIR = "/var/lib/signalwire-video-exporter"

# Runs as root in a private mount namespace: the image's rootfs read-only, /tmp included as with
# `docker run --read-only` (probed by root, who could write anywhere otherwise), optionally a tmpfs
# owned by 65534 as the state volume; then the exporter under chroot as 65534 with an empty
# environment but PATH (no HOME).
_READ_ONLY_SCRIPT = f"""
set -e; r="$1"; volume="$2"; shift 2
mount --bind "$r" "$r"; mount -o remount,bind,ro "$r"
if touch "$r/probe" 2>/dev/null; then echo WRITABLE; fi
mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"
if [ "$volume" = 1 ]; then mount -t tmpfs -o uid={UID},gid={UID},mode=0750 tmpfs "$r{STATE_DIR}"; fi
set +e
chroot --userspec={UID}:{UID} "$r" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin "$@"
rc=$?
echo "STATE_DIR: $(ls "$r{STATE_DIR}")"
exit $rc
"""


@pytest.mark.parametrize("volume", [False, True], ids=["no-state", "state-volume"])
def test_read_only_root_and_no_home(image: str, volume: bool) -> None:
    """`--demo --once` works with a read-only root, /tmp included; only the state volume is writable.

    `buildah run` cannot make the root read-only, so the container is set up by hand from the
    image's rootfs (`buildah mount`) with unshare, mount and chroot.
    """
    if shutil.which("unshare") is None or shutil.which("chroot") is None:
        reason = "unshare/chroot (util-linux, coreutils) not available"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    ctr = subprocess.run(
        ["buildah", "from", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        mounted = subprocess.run(["buildah", "mount", ctr], capture_output=True, text=True, check=True)
        args = ["--demo", "--once"] + (["--state-file", f"{STATE_DIR}/state.json"] if volume else [])
        start = time.monotonic()
        unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _READ_ONLY_SCRIPT, "sh"]
        rootfs, flag = mounted.stdout.strip(), "1" if volume else "0"
        proc = subprocess.run(
            [*unshare, rootfs, flag, "signalwire-video-exporter", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        _report(f"read-only run took {time.monotonic() - start:.1f}s")
        assert "WRITABLE" not in proc.stdout, "the root filesystem was not read-only"
        _check_demo_output(proc)
        assert f"STATE_DIR: {'state.json' if volume else ''}\n" in proc.stdout, proc.stdout[-500:]
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True, timeout=60)


_HEALTH_DRIVER = r"""
import json, subprocess, sys, time
test = json.loads(sys.argv[1])
server = subprocess.Popen(["signalwire-video-exporter", "--demo", "--log-level", "warning"])
try:
    deadline = time.monotonic() + 20
    while True:
        if subprocess.run(test[1:], capture_output=True).returncode == 0:
            print("HEALTHY")
            break
        assert server.poll() is None, "exporter exited"
        assert time.monotonic() < deadline, "never healthy"
        time.sleep(0.5)
finally:
    server.terminate()
    server.wait(10)
"""


def test_healthcheck_passes_on_a_running_exporter(image: str, config: dict[str, Any]) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the exporter's server does
        try:
            sock.bind(("0.0.0.0", 10092))  # the container shares the host network
        except OSError:
            pytest.skip("port 10092 is in use on this machine")
    test = config["Docker"]["config"]["Healthcheck"]["Test"]
    proc = _run(image, "python3", "-c", _HEALTH_DRIVER, json.dumps(test))
    assert proc.returncode == 0 and "HEALTHY" in proc.stdout, f"{proc.stdout}\n{proc.stderr[-2000:]}"
