"""`make up` stops within its budget whatever moment the signal lands, and leaves nothing behind.

Every test runs the real supervisor (`python -m tributary_stack up`) as a process, with a marker
in its environment that every process it starts inherits — services, the curate job's JVM and
Spark's Python workers — so "nothing is left" is checked by scanning /proc for the marker.
The stop budget is a promise of the stack (a bounded stop), so these tests hold it to it; they
measure no performance.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO
from tributary_stack.moto import free_port
from tributary_stack.ports import is_free

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BUDGET_S = 30.0  # STACK_STOP_TIMEOUT_S, its default
SLACK_S = 10.0  # interpreter exit, moto's shutdown, a loaded CI machine
MARK = "TRIBUTARY_TEST_STACK"


def marked_pids(mark: str) -> dict[int, str]:
    """Live processes whose environment carries `MARK=mark`: pid → command line."""
    needle = f"{MARK}={mark}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":  # exited, waiting for its parent to reap it
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def wait_none_left(mark: str, timeout: float) -> dict[int, str]:
    """Wait until no marked process lives; what is left after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := marked_pids(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@dataclass
class Supervisor:
    """`python -m tributary_stack up` on free ports, its output collected line by line."""

    tmp: Path
    curate: bool = True
    mark: str = field(default_factory=lambda: uuid.uuid4().hex)
    ports: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None

    def start(self, **env: str) -> Supervisor:
        self.ports = {
            "STACK_AWS_PORT": free_port(),
            "STACK_API_PORT": free_port(),
            "STACK_FAKEAPI_PORT": free_port(),
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith(("STACK_", "API_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tributary_stack", "up"],
            cwd=REPO,
            env={
                **base,
                **{k: str(v) for k, v in self.ports.items()},
                MARK: self.mark,
                "STACK_ENV_FILE": str(self.tmp / f"{self.mark}.env"),
                "STACK_STOP_TIMEOUT_S": str(BUDGET_S),
                "STACK_CURATE_LOOP": "true" if self.curate else "false",
                "STACK_CURATE_INTERVAL_S": "2",
                "STACK_IMPORTER_INTERVAL_S": "3",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()
        return self

    def _collect(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"the stack exited ({self.proc.returncode}):\n" + self.output())
            if time.monotonic() > deadline:
                pytest.fail(f"no line with {text!r} within {timeout}s:\n" + self.output())
            time.sleep(0.05)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the stack did not exit within {timeout:.0f}s:\n" + self.output())
        finally:
            self.close()

    def close(self) -> None:
        """Once the supervisor has exited: the rest of its output, and the pipe closed."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        if self.proc.poll() is not None and self.reader is not None:
            self.reader.join(timeout=10)
            self.proc.stdout.close()

    def taken_ports(self) -> list[int]:
        return [port for port in self.ports.values() if not is_free("127.0.0.1", port)]


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[list[Supervisor]]:
    """Supervisors the test starts; whatever they left is killed afterwards (and reported)."""
    started: list[Supervisor] = []
    yield started
    for sup in started:
        if sup.proc is not None and sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()
        if sup.proc is not None:
            sup.close()
        for pid in marked_pids(sup.mark):
            os.kill(pid, signal.SIGKILL)


# Where in the stack's life the signal lands.
MOMENTS = ("starting", "up", "mid-curate")


@pytest.mark.timeout(1200)
def test_stop_by_sigterm_or_sigint_at_any_moment_is_bounded_and_leaves_nothing(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    rng = random.Random(21)
    seen: list[tuple[str, str, float]] = []
    for round_ in range(20):
        sig = signal.SIGTERM if round_ % 2 else signal.SIGINT
        moment = MOMENTS[round_ % 3]
        sup = Supervisor(tmp_path).start(STACK_CONSUMERS="1")
        supervisors.append(sup)
        if moment == "starting":  # moto, bootstrap, services starting one after another
            sup.wait_for("starting the embedded stack")
            time.sleep(rng.uniform(0, 3.0))
        elif moment == "up":
            sup.wait_for("Ctrl+C stops everything")
            time.sleep(rng.uniform(0, 2))
        else:  # the curate job has Spark actions in flight
            sup.wait_for(": checking ")
            time.sleep(rng.uniform(0, 1.5))
        sent = time.monotonic()
        sup.signal(sig)
        code = sup.wait(BUDGET_S + SLACK_S)
        took = time.monotonic() - sent
        left = wait_none_left(sup.mark, timeout=5)
        assert not left, f"round {round_} ({sig.name}, {moment}) left {left}\n{sup.output()}"
        assert code == 0, f"round {round_}: exit {code}\n{sup.output()}"
        assert took <= BUDGET_S + SLACK_S, f"round {round_}: {took:.1f}s"
        killed = [line for line in sup.lines if "did not stop in time" in line]
        assert not killed, f"round {round_} ({sig.name}, {moment}): {killed}\n{sup.output()}"
        assert not sup.taken_ports(), f"round {round_}: ports still bound"
        seen.append((sig.name, moment, took))
    print("\n".join(f"{s:8} {m:11} stopped in {t:5.1f}s" for s, m, t in seen))
    assert {m for _, m, _ in seen} == set(MOMENTS)


def test_a_stop_mid_curate_cancels_the_spark_job(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    sup = Supervisor(tmp_path).start()
    supervisors.append(sup)
    sup.wait_for(": checking ")
    sup.signal(signal.SIGTERM)
    assert sup.wait(BUDGET_S + SLACK_S) == 0
    assert not any("did not stop in time" in line for line in sup.lines), sup.output()
    assert any("Spark's jobs cancelled" in line for line in sup.lines), sup.output()


def test_sigkill_of_the_supervisor_takes_every_service_and_the_jvm_with_it(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    sup = Supervisor(tmp_path).start()
    supervisors.append(sup)
    sup.wait_for(": checking ")
    before = marked_pids(sup.mark)
    assert any("java" in cmd for cmd in before.values()), before  # Spark's JVM is up
    assert len(before) >= 6, before  # supervisor, api, fakeapi, importer, curate, consumers, JVM
    sup.signal(signal.SIGKILL)
    sup.wait(10)
    left = wait_none_left(sup.mark, timeout=15)
    assert not left, left
    assert not sup.taken_ports()
    # The next `make up` on the same ports starts.
    again = Supervisor(tmp_path, curate=False)
    supervisors.append(again)
    again.ports = sup.ports
    again.start(**{k: str(v) for k, v in sup.ports.items()})
    again.wait_for("Ctrl+C stops everything")
    again.signal(signal.SIGTERM)
    assert again.wait(BUDGET_S + SLACK_S) == 0


def test_sigkill_of_the_supervisors_parent_stops_the_stack_the_ordinary_way(
    tmp_path: Path,
) -> None:
    """`make up` killed with SIGKILL (or a closed terminal's shell): the supervisor drains."""
    mark = uuid.uuid4().hex
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STACK_", "API_"))}
    ports = {
        n: str(free_port()) for n in ("STACK_AWS_PORT", "STACK_API_PORT", "STACK_FAKEAPI_PORT")
    }
    parent = subprocess.Popen(  # `; true`: the shell forks the supervisor instead of exec'ing it
        ["bash", "-c", f"{sys.executable} -m tributary_stack up; true"],
        cwd=REPO,
        env={
            **base,
            **ports,
            MARK: mark,
            "STACK_ENV_FILE": str(tmp_path / f"{mark}.env"),
            "STACK_CURATE_LOOP": "false",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert parent.stdout is not None
    lines = []
    try:
        for line in parent.stdout:
            lines.append(line)
            if "Ctrl+C stops everything" in line:
                break
        parent.kill()  # SIGKILL the shell, as a closed terminal or `kill -9 make` would
        parent.wait()
        lines.extend(parent.stdout)  # the supervisor's output until it exits (it holds the pipe)
    finally:
        parent.stdout.close()
        for pid in marked_pids(mark) if parent.poll() is None else ():
            os.kill(pid, signal.SIGKILL)
    out = "".join(lines)
    assert "stopping…" in out, out
    assert out.splitlines()[-1] == "stopped", out
    assert "did not stop in time" not in out, out
    assert not wait_none_left(mark, timeout=5)


def test_a_service_restarted_from_a_worker_thread_outlives_that_thread(tmp_path: Path) -> None:
    """The kernel's parent-death signal follows the forking thread: the stack forks every child
    from one long-lived thread, so a restart from `asyncio.to_thread` (the chaos test) stays."""
    from tributary_stack.process import ManagedProcess

    with (tmp_path / "out.log").open("w") as out:
        argv = [sys.executable, "-c", "import time; time.sleep(60)"]
        process = ManagedProcess("sleeper", argv, os.environ, out)
        worker = threading.Thread(target=process.start)
        worker.start()
        worker.join()
        time.sleep(1.0)
        try:
            assert process.poll() is None, f"died with the thread that started it: {process.poll()}"
        finally:
            process.stop(timeout=5)


def test_sigkill_of_the_demo_leaves_nothing(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACK_", "API_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tributary_stack", "demo"],
        cwd=REPO,
        env={**env, MARK: mark},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the stack is up and the demo is driving it
            if "embedded AWS at" in line:
                break
        time.sleep(2)
        assert len(marked_pids(mark)) >= 4
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert not wait_none_left(mark, timeout=15)


def test_a_taken_port_fails_at_once_naming_its_holder_and_starts_nothing(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        sup = Supervisor(tmp_path)
        supervisors.append(sup)
        sup.start(STACK_API_PORT=str(port))
        code = sup.wait(30)
        out = sup.output()
    assert code == 2, out
    assert f"port {port}" in out, out
    assert f"pid {os.getpid()}" in out, out  # this test process holds it
    assert f"kill {os.getpid()}" in out, out
    assert "STACK_API_PORT" in out, out
    assert "embedded AWS (moto)" not in out  # never came up
    assert not wait_none_left(sup.mark, timeout=5)
