"""Concurrent test runs share one dockerd: the run that started it does not stop it under
another run still using it; the last one out stops it. A stand-in daemon (a sleeping process
with a ready file) takes dockerd's place, so this runs without root or Docker."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.deploy.docker import Engine, docker_engine

DAEMON = """
import pathlib, signal, sys, time
ready = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (ready.unlink(missing_ok=True), sys.exit(0)))
ready.touch()
while True:
    time.sleep(0.1)
"""


def fake_engine(tmp: Path) -> tuple[Engine, Path]:
    ready = tmp / "ready"
    script = tmp / "daemon.py"
    script.write_text(DAEMON)
    engine = Engine(
        answers=ready.exists,
        command=(sys.executable, str(script), str(ready)),
        root=lambda: True,
        start_timeout_s=20,
    )
    return engine, ready


def test_a_started_daemon_outlives_the_run_that_started_it_while_another_uses_it(
    tmp_path: Path,
) -> None:
    engine, ready = fake_engine(tmp_path)
    state = tmp_path / "state"
    first = docker_engine(tmp_path / "a.log", engine, state)
    second = docker_engine(tmp_path / "b.log", engine, state)
    first.__enter__()
    assert ready.exists()
    second.__enter__()  # finds the engine the first run started
    first.__exit__(None, None, None)
    time.sleep(0.5)
    assert ready.exists(), "the first run stopped the daemon the second run still uses"
    second.__exit__(None, None, None)
    deadline = time.monotonic() + 10
    while ready.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ready.exists(), "the last run out did not stop the daemon a run started"
    assert not (state / "owner.pid").exists()


def test_an_engine_nobody_here_started_is_left_alone(tmp_path: Path) -> None:
    engine, ready = fake_engine(tmp_path)
    ready.touch()  # answers already: someone else's engine
    with docker_engine(tmp_path / "a.log", engine, tmp_path / "state"):
        pass
    assert ready.exists()
