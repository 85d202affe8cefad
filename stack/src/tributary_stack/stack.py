"""The embedded stack: moto server + bootstrap + the services as child processes.

With `fault_proxy=True` the services reach moto through a `FaultProxy` (`stack.proxy.faults`
breaks S3 or Kinesis for them), and `kill9` / `start_service` crash and bring back any service:
the chaos test of the whole pipeline drives the stack this way.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary.settings import AwsSettings, CommonSettings
from tributary_api.auth import hash_key
from tributary_stack.faultproxy import FaultProxy
from tributary_stack.moto import MotoProcess, MotoServer, free_port
from tributary_stack.ports import Port, check_ports_free
from tributary_stack.process import ManagedProcess, StartCancelled
from tributary_stack.settings import StackSettings

# Credentials moto accepts; set for every child so nothing can reach a real account by mistake.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
LOCAL_KEY_NAME = "local-dev"
# The API signs its stream envelopes with it and the consumers trust only those: a development
# value for the embedded stack only (on AWS it is a Copilot secret from SSM).
LOCAL_ENVELOPE_SIGNING_KEY = "local-dev-envelope-signing-key-not-a-secret"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to (re)start one service: `python -m module args…`, ready when `ready_url` answers."""

    module: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ready_url: str | None = None


class LocalStack:
    """Start with `start()` (or `with`), stop with `stop()`; `env` is what the services get."""

    def __init__(
        self,
        settings: StackSettings,
        out: TextIO | None = None,
        log_level: str = "INFO",
        *,
        moto_process: bool = False,
        fault_proxy: bool = False,
    ) -> None:
        self.settings = settings
        self._out = out
        self._log_level = log_level
        self.moto: MotoServer | MotoProcess = (
            MotoProcess(settings.host, settings.aws_port)
            if moto_process
            else MotoServer(settings.host, settings.aws_port)
        )
        self.proxy = FaultProxy(self.moto.endpoint, settings.host) if fault_proxy else None
        self.api_port = settings.api_port or free_port(settings.host)
        self.fakeapi_port = settings.fakeapi_port or free_port(settings.host)
        self.services: dict[str, ManagedProcess] = {}
        self._specs: dict[str, ServiceSpec] = {}
        self._restarts = 0

    @property
    def processes(self) -> list[ManagedProcess]:
        """The running services, in start order."""
        return list(self.services.values())

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.settings.host}:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment every service of the stack runs with (same names as on AWS)."""
        s = self.settings
        return {
            **LOCAL_CREDENTIALS,
            "AWS_REGION": s.region,
            "AWS_DEFAULT_REGION": s.region,
            "AWS_ENDPOINT_URL": (self.proxy or self.moto).endpoint,
            "LAKE_BUCKET": s.lake_bucket,
            "STREAM_NAME": s.stream_name,
            "LEASE_TABLE": s.lease_table,
            "STATE_TABLE": s.state_table,
            "GLUE_DATABASE": s.glue_database,
            "DATASETS_CONFIG": str(s.datasets_config.resolve()),
            "API_KEYS": json.dumps([{"name": LOCAL_KEY_NAME, "sha256": hash_key(s.api_key)}]),
            "API_SINK": s.api_sink,
            "ENVELOPE_SIGNING_KEY": LOCAL_ENVELOPE_SIGNING_KEY,
            "API_HOST": s.host,
            "API_PORT": str(self.api_port),
            "TRIBUTARY_API_URL": self.api_url,
            "TRIBUTARY_API_KEY": s.api_key,
            "SOURCES_CONFIG": str(s.sources_config.resolve()),
            "FAKEAPI_URL": f"http://{s.host}:{self.fakeapi_port}",
            "FAKEAPI_HOST": s.host,
            "FAKEAPI_PORT": str(self.fakeapi_port),
            "VENDOR_API_KEY": "local-vendor-key",  # development only: sources.yaml has no default
            "VENDOR_OAUTH_SECRET": "fake-oauth-secret",  # the fake API's development client
            "LOG_LEVEL": self._log_level,
            # Per stack (`make up`, the demo, a test), so they never share Spark's staging.
            "CURATE_WORK_DIR": str(s.env_file.parent / f"{s.env_file.stem}-curate"),
            "CURATE_QUERY_CACHE": str(s.env_file.parent / f"{s.env_file.stem}-curated-cache"),
            # Local-friendly consumer timings (the defaults suit AWS): quick flushes and pickup.
            "IDLE_FLUSH_S": "1",
            "LEASE_FAILOVER_S": "6",
            "SHARD_SYNC_S": "10",
            # moto never returns a null iterator at a shard's end: the consumer's fallback.
            "STREAM_END_ON_EMPTY_CLOSED": "true",
        }

    def aws_settings(self) -> AwsSettings:
        """Settings for clients in this process that talk to the stack's AWS (never proxied)."""
        return AwsSettings.model_validate(
            {
                "AWS_REGION": self.settings.region,
                "AWS_ENDPOINT_URL": self.moto.endpoint,
                "LAKE_BUCKET": self.settings.lake_bucket,
                "STREAM_NAME": self.settings.stream_name,
                "LEASE_TABLE": self.settings.lease_table,
                "STATE_TABLE": self.settings.state_table,
                "GLUE_DATABASE": self.settings.glue_database,
            }
        )

    def crawlers(self) -> dict[str, str]:
        """The curated crawlers the deploy's addon creates: name → dataset."""
        common = CommonSettings.model_validate(self.env)
        registry = DatasetRegistry.from_file(common.datasets_config)
        return {common.crawler_for(name): name for name in registry}

    def fixed_ports(self) -> list[Port]:
        """The ports the settings pin (0 = a free one is picked, so never in the way)."""
        s = self.settings
        return [
            Port(s.aws_port, "the embedded AWS", "STACK_AWS_PORT"),
            Port(s.api_port, "the API", "STACK_API_PORT"),
            Port(s.fakeapi_port, "the fake vendor API", "STACK_FAKEAPI_PORT"),
        ]

    def start(self, cancelled: Callable[[], bool] = lambda: False) -> LocalStack:
        """moto, bootstrap, the services; returns once the API and the fake API are ready.

        Checks the pinned ports first and starts nothing when one is taken (ConfigError). When
        `cancelled()` turns true on the way, raises StartCancelled; `stop()` then stops what did
        start.
        """
        check_ports_free(self.settings.host, self.fixed_ports())
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ[name] = value
        self.moto.start()
        if self.proxy is not None:
            self.proxy.start()
        asyncio.run(bootstrap(self.aws_settings(), self.settings.shards, self.crawlers()))
        host = self.settings.host
        specs = {
            "api": ServiceSpec("tributary_api", ready_url=f"{self.api_url}/readyz"),
            "fakeapi": ServiceSpec(
                "tributary_fakeapi", ready_url=f"http://{host}:{self.fakeapi_port}/__admin/stats"
            ),
        }
        if self.settings.importer_loop:
            interval = str(self.settings.importer_interval_s)
            specs["importer"] = ServiceSpec(
                "tributary_importer", ("run", "--loop", "--interval", interval)
            )
        if self.settings.curate_loop:  # Spark local, one JVM, between runs mostly idle
            interval = str(self.settings.curate_interval_s)
            specs["curate"] = ServiceSpec(
                "tributary_curate", ("run", "--loop", "--interval", interval)
            )
        for n in range(1, self.settings.consumers + 1):
            specs[f"stream-{n}"] = ServiceSpec(
                "tributary_stream", env=(("WORKER_ID", f"local-stream-{n}"),)
            )
        for name, spec in specs.items():
            if cancelled():
                raise StartCancelled(f"stopped before {name} started")
            self._specs[name] = spec
            self.start_service(name, cancelled)
        self.write_env_file()
        return self

    def start_service(
        self, name: str, cancelled: Callable[[], bool] = lambda: False
    ) -> ManagedProcess:
        """Start the service `name` (again); waits until it is ready when it has a probe.

        Call it from a thread that outlives the service (see `die_with_parent`)."""
        spec = self._specs[name]
        env = {**os.environ, **self.env, **dict(spec.env)}
        if name in self.services and "WORKER_ID" in env:  # a restart is a new worker, as on ECS
            self._restarts += 1
            env["WORKER_ID"] += f"-r{self._restarts}"
        process = ManagedProcess.python_module(name, spec.module, spec.args, env, self._out)
        self.services[name] = process.start()
        if spec.ready_url:
            process.wait_http(spec.ready_url, cancelled=cancelled)
        return process

    def kill9(self, name: str) -> None:
        """SIGKILL the service `name`: no drain, no checkpoint, no goodbye."""
        process = self.services[name]
        process.signal(signal.SIGKILL)
        process.stop(timeout=5)

    def write_env_file(self) -> Path:
        """Write `export NAME=value` lines that other shells and commands can source."""
        path = self.settings.env_file
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"export {k}='{v}'" for k, v in self.env.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def stop(self, budget: float | None = None, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop within `budget` seconds (default STACK_STOP_TIMEOUT_S) as a whole.

        SIGTERM to every service at once (each drains: consumers checkpoint and release their
        leases, the curate loop cancels its Spark job), wait for the slowest until the budget
        runs out or `hurry()` turns true (a second Ctrl+C), SIGKILL what remains; then the proxy
        and moto, last, since the services drain into it.
        """
        deadline = time.monotonic() + (self.settings.stop_timeout_s if budget is None else budget)
        processes = self.processes
        for process in processes:
            process.terminate()
        for process in processes:
            while not process.wait(min(0.1, deadline - time.monotonic())):
                if hurry() or time.monotonic() >= deadline:
                    break
        for process in processes:
            if process.poll() is None:
                print(f"{process.name} did not stop in time: SIGKILL", flush=True)
                process.kill()
            process.close(timeout=max(deadline - time.monotonic(), 1.0))
        self.services.clear()
        if self.proxy is not None:
            self.proxy.stop()
        self.moto.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
