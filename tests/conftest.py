"""Fixtures shared by every test: the embedded AWS (a real moto server) and fresh resources."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary.settings import AwsSettings
from tributary_stack.moto import MotoServer, free_port
from tributary_stack.process import ManagedProcess
from tributary_stack.stack import LOCAL_CREDENTIALS

REPO = Path(__file__).resolve().parents[1]
DATASETS_CONFIG = REPO / "config" / "datasets.yaml"

# Tests never reach real AWS: fake credentials, and every client gets an explicit endpoint.
for _name, _value in LOCAL_CREDENTIALS.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


# `make test` runs the suite on two pytest-xdist workers (`-n 2`). Tests that share one heavy
# resource stay together on one worker, one after another: Spark (the curate tests' session,
# one JVM started once rather than one a worker, and the IAM-enforced runs of the curate command
# line: never two of these Spark jobs at once) and the Docker engine (one image build, one
# compose project at a time); also the two tests that run `tributary_stack demo`, which writes
# the repo's `.local/demo.*` files (its log, its env file). Every other test goes to
# whichever worker is free, so each runs beside at most one other: the stack tests that start
# the curate job as a process of their own among them (they passed so, within their deadlines,
# in the runs the README's test section names).
XDIST_GROUPS = {
    "tests/curate/": "spark",
    "tests/deploy/test_iam_enforced.py": "spark",
    "tests/deploy/test_iam_snapshots.py": "spark",
    "tests/deploy/test_base_images.py": "docker",
    "tests/deploy/test_compose.py": "docker",
    "tests/deploy/test_docker_engine.py": "docker",
    "tests/stack/test_demo.py::": "demo",
    "tests/stack/test_stop.py::test_sigkill_of_the_demo_leaves_nothing": "demo",
}


def xdist_group(nodeid: str) -> str | None:
    """The `XDIST_GROUPS` group of a test, by the start of its id: a folder, a file or one test
    (None: it runs wherever a worker is free)."""
    return next((g for prefix, g in XDIST_GROUPS.items() if nodeid.startswith(prefix)), None)


@pytest.hookimpl(optionalhook=True)  # a run without pytest-xdist never calls it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `-n`: each group one work unit (one worker runs it whole, in order), every other
    test a unit of its own. (pytest-xdist's `--dist loadgroup` reads `xdist_group` marks from
    a suffix it writes into the test's id attribute, which pytest 9.2 no longer reads back.)"""
    from xdist.scheduler import LoadScopeScheduling  # imported only when -n is given

    class SharedResourceScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid) or nodeid

    return SharedResourceScheduling(config, log)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto server for the session; each test makes its own uniquely named resources."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def registry() -> DatasetRegistry:
    """The example dataset registry shipped in config/."""
    return DatasetRegistry.from_file(DATASETS_CONFIG)


def lake_settings(endpoint: str) -> AwsSettings:
    """Settings naming a fresh set of resources on `endpoint`."""
    suffix = uuid.uuid4().hex[:10]
    return AwsSettings.model_validate(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
            "LAKE_BUCKET": f"lake-{suffix}",
            "STREAM_NAME": f"stream-{suffix}",
            "LEASE_TABLE": f"leases-{suffix}",
            "STATE_TABLE": f"state-{suffix}",
            "GLUE_DATABASE": f"db_{suffix}",
            "AWS_MAX_ATTEMPTS": 2,
        }
    )


@pytest.fixture
async def lake(moto: MotoServer) -> AwsSettings:
    """Freshly bootstrapped lake resources (2-shard stream) on the session's moto."""
    settings = lake_settings(moto.endpoint)
    await bootstrap(settings, shards=2)
    return settings


@pytest.fixture
async def clients(lake: AwsSettings) -> AsyncIterator[AwsClients]:
    """Open AWS clients on the lake's endpoint."""
    async with AwsClients(lake) as opened:
        yield opened


@contextmanager
def fake_vendor_api(logs: Path, scale: int = 1, env: dict[str, str] | None = None) -> Iterator[str]:
    """A fake third-party API process of its own (its data changes under some tests)."""
    port = free_port()
    with (logs / f"fakeapi-{port}.log").open("w") as log:
        process = ManagedProcess.python_module(
            "fakeapi",
            "tributary_fakeapi",
            [],
            {**os.environ, "FAKEAPI_PORT": str(port), "FAKEAPI_SCALE": str(scale), **(env or {})},
            log,
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            process.wait_http(f"{url}/__admin/stats")
            yield url
        finally:
            process.stop(timeout=10)
