"""Child processes of the local stack, with prefixed output, a bounded stop, and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import httpx

from tributary_stack.orphans import popen


class StartCancelled(Exception):
    """A stop was requested while the stack was starting."""


class ManagedProcess:
    """A child process whose output lines are echoed as `<name> | <line>`.

    The child gets its own session (and process group), so Ctrl+C in the terminal reaches only
    the stack, which then stops it (`terminate`, `wait`, `kill`, or `stop` for all three); and
    it dies with the stack (`orphans.popen`).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        out: TextIO | None = None,
        width: int = 10,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = dict(env)
        self._out = out or sys.stdout
        self._prefix = f"{name:<{width}}| "
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def python_module(
        cls,
        name: str,
        module: str,
        args: Sequence[str],
        env: Mapping[str, str],
        out: TextIO | None = None,
    ) -> ManagedProcess:
        """`python -m module args…` with this interpreter."""
        return cls(name, [sys.executable, "-m", module, *args], env, out)

    @property
    def pid(self) -> int:
        """The child's pid (started processes only)."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._proc.pid

    def start(self) -> ManagedProcess:
        """Spawn the child and start echoing its output."""
        self._proc = popen(
            self._argv,
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._echo, name=f"echo-{self.name}", daemon=True)
        self._pump.start()
        return self

    def _echo(self) -> None:
        if self._proc is None or self._proc.stdout is None:
            return
        for raw in self._proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self._out.write(self._prefix + line + "\n")
                self._out.flush()

    def wait_http(
        self,
        url: str,
        timeout: float = 30.0,
        ok: tuple[int, ...] = (200,),
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """Block until GET `url` answers with a status in `ok`; fail fast if the child exits,
        and give up (StartCancelled) as soon as `cancelled()` is true."""
        deadline = time.monotonic() + timeout
        while True:
            if cancelled():
                raise StartCancelled(f"stopped while waiting for {self.name}")
            if self.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.poll()} during start-up")
            try:
                if httpx.get(url, timeout=1).status_code in ok:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not answer {url} within {timeout}s")
            time.sleep(0.05)

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        return None if self._proc is None else self._proc.poll()

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the child (e.g. SIGKILL for a crash test)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, sig)

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM: every service drains on it); returns at once."""
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the child's whole process group (a JVM it started, Spark's workers, …)."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)  # its own session: group id = its pid

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the child to exit; True when it has."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self, timeout: float = 5.0) -> int | None:
        """After the child has exited: finish echoing its output (up to `timeout`; a grandchild
        may still hold the pipe, and then the echo thread is left to end on its own)."""
        if self._proc is None:
            return None
        self._proc.wait()
        if self._pump is not None:
            self._pump.join(timeout=max(timeout, 0.0))
        if self._proc.stdout is not None and not (self._pump and self._pump.is_alive()):
            self._proc.stdout.close()
        return self._proc.returncode

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        self.terminate()
        if not self.wait(timeout):
            self.kill()
        return self.close()
