"""The embedded stack: moto server + bootstrap + the services as child processes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TextIO

from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary.settings import AwsSettings, CommonSettings
from tributary_api.auth import hash_key
from tributary_stack.moto import MotoServer, free_port
from tributary_stack.process import ManagedProcess
from tributary_stack.settings import StackSettings

# Credentials moto accepts; set for every child so nothing can reach a real account by mistake.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
LOCAL_KEY_NAME = "local-dev"


class LocalStack:
    """Start with `start()` (or `with`), stop with `stop()`; `env` is what the services get."""

    def __init__(
        self, settings: StackSettings, out: TextIO | None = None, log_level: str = "INFO"
    ) -> None:
        self.settings = settings
        self._out = out
        self._log_level = log_level
        self.moto = MotoServer(settings.host, settings.aws_port)
        self.api_port = settings.api_port or free_port(settings.host)
        self.fakeapi_port = settings.fakeapi_port or free_port(settings.host)
        self.processes: list[ManagedProcess] = []

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
            "AWS_ENDPOINT_URL": self.moto.endpoint,
            "LAKE_BUCKET": s.lake_bucket,
            "STREAM_NAME": s.stream_name,
            "LEASE_TABLE": s.lease_table,
            "STATE_TABLE": s.state_table,
            "GLUE_DATABASE": s.glue_database,
            "DATASETS_CONFIG": str(s.datasets_config.resolve()),
            "API_KEYS": json.dumps([{"name": LOCAL_KEY_NAME, "sha256": hash_key(s.api_key)}]),
            "API_SINK": s.api_sink,
            "API_HOST": s.host,
            "API_PORT": str(self.api_port),
            "TRIBUTARY_API_URL": self.api_url,
            "TRIBUTARY_API_KEY": s.api_key,
            "SOURCES_CONFIG": str(s.sources_config.resolve()),
            "FAKEAPI_URL": f"http://{s.host}:{self.fakeapi_port}",
            "FAKEAPI_HOST": s.host,
            "FAKEAPI_PORT": str(self.fakeapi_port),
            "LOG_LEVEL": self._log_level,
            # Local-friendly consumer timings (the defaults suit AWS): quick flushes and pickup.
            "IDLE_FLUSH_S": "1",
            "LEASE_FAILOVER_S": "6",
            "SHARD_SYNC_S": "10",
        }

    def aws_settings(self) -> AwsSettings:
        """Settings for clients in this process that talk to the stack's AWS."""
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

    def start(self) -> LocalStack:
        """moto, bootstrap, API; returns once the API is ready."""
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ[name] = value
        self.moto.start()
        asyncio.run(bootstrap(self.aws_settings(), self.settings.shards, self.crawlers()))
        child_env = {**os.environ, **self.env}
        api = ManagedProcess.python_module("api", "tributary_api", [], child_env, self._out)
        self.processes.append(api.start())
        api.wait_http(f"{self.api_url}/readyz")
        fakeapi = ManagedProcess.python_module(
            "fakeapi", "tributary_fakeapi", [], child_env, self._out
        )
        self.processes.append(fakeapi.start())
        fakeapi.wait_http(f"http://{self.settings.host}:{self.fakeapi_port}/__admin/stats")
        if self.settings.importer_loop:
            interval = str(self.settings.importer_interval_s)
            self.processes.append(
                ManagedProcess.python_module(
                    "importer",
                    "tributary_importer",
                    ["run", "--loop", "--interval", interval],
                    child_env,
                    self._out,
                ).start()
            )
        if self.settings.curate_loop:  # Spark local, one JVM, between runs mostly idle
            self.processes.append(
                ManagedProcess.python_module(
                    "curate",
                    "tributary_curate",
                    ["run", "--loop", "--interval", str(self.settings.curate_interval_s)],
                    child_env,
                    self._out,
                ).start()
            )
        for n in range(1, self.settings.consumers + 1):
            worker_env = {**child_env, "WORKER_ID": f"local-stream-{n}"}
            self.processes.append(
                ManagedProcess.python_module(
                    f"stream-{n}", "tributary_stream", [], worker_env, self._out
                ).start()
            )
        self.write_env_file()
        return self

    def write_env_file(self) -> Path:
        """Write `export NAME=value` lines that other shells and commands can source."""
        path = self.settings.env_file
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"export {k}='{v}'" for k, v in self.env.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def stop(self) -> None:
        """Stop services in reverse order (each drains on SIGTERM), then moto."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self.moto.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
