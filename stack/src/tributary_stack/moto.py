"""moto in server mode, embedded in this process (aiobotocore needs a real HTTP endpoint)."""

from __future__ import annotations

import bisect
import functools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moto.kinesis.models import Record, Shard
from moto.server import ThreadedMotoServer
from moto.server import main as moto_main

from tributary.errors import ConfigError
from tributary_stack.orphans import popen


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


_KINESIS_SHARD_LOCK = threading.RLock()


def fix_moto_kinesis() -> None:
    """Make moto's Kinesis shards safe under concurrency and linear in cost (idempotent).

    - A race: moto's threaded server runs requests at once, and its shard numbers a new record
      max + 1 without a lock ("not safe for concurrency", says its source): two PutRecords at
      once can get the same sequence number, and one record silently replaces the other though
      both were acknowledged (40 concurrent 100-record calls lost 14 here). Shard reads and
      writes are serialized.
    - A quadratic cost: it finds that max by copying every key of the shard, per record put, and
      GetRecords walks the shard from its first record on every call. Keys are ascending
      integers (every record is appended as max + 1), so the last key is O(1) and a GetRecords
      start is a bisection.
    Real Kinesis has neither problem; without this, the embedded stack would lose acknowledged
    records under load and slow down as the stream grows.
    """
    if getattr(Shard, "_tributary_fixed", False):
        return
    replacements: dict[str, Callable[..., Any]] = {
        "put_record": _put_record,
        "get_records": _get_records,
        "get_max_sequence_number": _max_sequence_number,
        "get_sequence_number_at": Shard.get_sequence_number_at,  # moto's own, serialized
    }
    for name, method in replacements.items():
        setattr(Shard, name, _serialized(method))
    setattr(Shard, "_tributary_fixed", True)  # noqa: B010 - moto's class, our mark


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _KINESIS_SHARD_LOCK:
            return method(*args, **kwargs)

    return locked


def _max_sequence_number(shard: Shard) -> int:
    return next(reversed(shard.records), 0)


def _put_record(shard: Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    sequence_number = _max_sequence_number(shard) + 1
    shard.records[sequence_number] = Record(partition_key, data, sequence_number, explicit_hash_key)
    return str(sequence_number)


def _get_records(
    shard: Shard, last_sequence_id: str, limit: int | None
) -> tuple[list[Record], int, int]:
    """moto's semantics: records after `last_sequence_id` (up to `limit`), the last sequence
    number returned (or the one given), and ms between the last returned and the newest."""
    after = int(last_sequence_id)
    keys = list(shard.records)  # ascending; a C-speed copy, then a bisection
    start = bisect.bisect_right(keys, after)
    chosen = keys[start : start + limit] if limit else keys[start:]
    if not chosen:
        return [], after, 0
    results = [shard.records[k] for k in chosen]
    newest = shard.records[keys[-1]]
    return results, chosen[-1], int((newest.created_at - results[-1].created_at) * 1000)


def serve_moto_process() -> None:
    """The entry of `MotoProcess`: moto's own server main, with its Kinesis fixed."""
    fix_moto_kinesis()
    moto_main()


class MotoServer:
    """A moto server on host:port (port 0 picks a free one), started and stopped explicitly."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        """`http://host:port`, the value for AWS_ENDPOINT_URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        """Start serving; fails clearly when the port is taken."""
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise ConfigError(
                    f"port {self.port} on {self.host} is taken (is `make up` already running?); "
                    "set STACK_AWS_PORT to another port"
                ) from exc
        # werkzeug logs every request at INFO: one line per AWS call drowns the stack's output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        fix_moto_kinesis()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving (state is lost)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MotoProcess:
    """moto server in its own process: for load tests, so it does not share our GIL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The value for AWS_ENDPOINT_URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoProcess:
        """Spawn `moto_server` and wait for its port."""
        self._proc = popen(
            [
                sys.executable,
                "-c",
                "from tributary_stack.moto import serve_moto_process; serve_moto_process()",
                "-H",
                self.host,
                "-p",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        """Terminate it (SIGKILL after 10 s)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> MotoProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


KINESIS_LOCAL_DIR = Path(__file__).resolve().parents[3] / "tools" / "kinesis-local"


class KinesisLocal:
    """kinesis-local (kinesis-mock on Node), started from its package folder on a free port.

    Faithful where moto is not: after a split or merge, new records go to the children, and a
    closed shard's end returns a null iterator and ChildShards. Installed by `make install`.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The value for AWS_ENDPOINT_URL_KINESIS."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> KinesisLocal:
        """Run `node main.js` in the package folder (it reads server.json from there)."""
        package = KINESIS_LOCAL_DIR / "node_modules" / "kinesis-local"
        if not (package / "main.js").exists():
            raise ConfigError(
                f"kinesis-local is not installed in {KINESIS_LOCAL_DIR}; "
                "run `make install` (npm ci)"
            )
        env = {
            **os.environ,
            "KINESIS_MOCK_PLAIN_PORT": str(self.port),
            "KINESIS_MOCK_TLS_PORT": str(free_port(self.host)),
            "CREATE_STREAM_DURATION": "100ms",
            "UPDATE_STREAM_DURATION": "100ms",
            "LOG_LEVEL": "WARN",
        }
        self._proc = popen(
            ["node", "main.js"],
            cwd=package,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.host, self.port, timeout=30)
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL: it does not always exit on SIGTERM."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(3)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> KinesisLocal:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
