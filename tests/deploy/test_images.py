"""Each Dockerfile's install, reproduced without Docker: the build stage's COPY and `uv sync`
steps run in a clean folder (only what the Dockerfile copies), then the image's CMD starts from
that environment against the embedded AWS and does its job."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, fake_vendor_api, lake_settings
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary_stack.moto import MotoServer, free_port


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    return [getattr(sys, "_base_executable", sys.executable), "-m", "uv"]


def build(dockerfile: str, root: Path) -> tuple[Path, list[str], dict[str, str]]:
    """Replay the build stage in `root`; the venv, the final CMD and the final ENV."""
    text = (REPO / dockerfile).read_text().replace("\\\n", " ")
    build_stage, final = text.split("\nFROM python:3.11-slim\n")
    workdir, venv = root / "src", root / "venv"
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    for line in build_stage.splitlines():
        if line.startswith("ENV "):
            env |= dict(re.findall(r"(\w+)=(\S+)", line))
        elif line.startswith("COPY ") and "--from" not in line:
            *sources, dest = line.split()[1:]
            for source in sources:  # Docker's rules for the forms used: files into dirs, dir to dir
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, workdir / dest, dirs_exist_ok=True)
                else:
                    target = (
                        workdir / dest / Path(source).name if dest.endswith("/") else workdir / dest
                    )
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(REPO / source, target)
        elif line.startswith("RUN uv "):
            # Same command; the venv goes to our folder, bytecode compiling is skipped (speed).
            env |= {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_COMPILE_BYTECODE": "0"}
            env.pop("UV_LINK_MODE", None)
            result = subprocess.run(
                [*_uv(), *line.split()[2:]],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"{line}\n{result.stderr}"
    cmd = json.loads(re.findall(r"^CMD (.+)$", final, re.M)[-1])
    final_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.+)$", final, re.M))))
    return venv, cmd, final_env


def run_env(venv: Path, final_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env |= {k: v for k, v in final_env.items() if k != "PATH"}
    env |= {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "DATASETS_CONFIG": str(REPO / "config" / "datasets.yaml"),
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    return env


def start(venv: Path, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    assert cmd[0] == "python"
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(venv / "bin" / "python"), *cmd[1:]], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_http(
    url: str, process: subprocess.Popen[bytes], log: Path, within: float = 60
) -> httpx.Response:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer: {log.read_text()}")


def post(url: str, key: str) -> httpx.Response:
    return httpx.post(
        url, headers={"Authorization": f"Bearer {key}"}, json=[{"type": "signup"}], timeout=30
    )


def run(venv: Path, cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), *cmd[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def stop_later() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.timeout(900)
async def test_api_image_install_serves_and_accepts(
    moto: MotoServer, tmp_path: Path, stop_later: list[subprocess.Popen[bytes]]
) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    venv, cmd, final_env = build("services/api/Dockerfile", tmp_path)
    port = free_port()
    env = run_env(
        venv,
        final_env,
        AWS_ENDPOINT_URL=moto.endpoint,
        LAKE_BUCKET=lake.lake_bucket,
        STREAM_NAME=lake.stream_name,
        API_PORT=str(port),
        API_HOST="127.0.0.1",
        API_KEYS=json.dumps([{"name": "t", "sha256": hashlib.sha256(b"k").hexdigest()}]),
        ENVELOPE_SIGNING_KEY="image-test-envelope-signing-key-0123456789",
    )
    log = tmp_path / "api.log"
    stop_later.append(start(venv, cmd, env, log))
    assert wait_http(f"http://127.0.0.1:{port}/healthz", stop_later[0], log).status_code == 200
    answer = post(f"http://127.0.0.1:{port}/v1/datasets/events/records", "k")
    assert answer.status_code == 202, answer.text


@pytest.mark.timeout(900)
async def test_stream_consumer_image_install_takes_the_leases(
    moto: MotoServer, tmp_path: Path, stop_later: list[subprocess.Popen[bytes]]
) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=2)
    venv, cmd, final_env = build("services/stream-consumer/Dockerfile", tmp_path)
    env = run_env(
        venv,
        final_env,
        AWS_ENDPOINT_URL=moto.endpoint,
        LAKE_BUCKET=lake.lake_bucket,
        STREAM_NAME=lake.stream_name,
        LEASE_TABLE=lake.lease_table,
        SHARD_SYNC_S="1",
        STREAM_HEALTH_FILE=str(tmp_path / "health"),  # the image's, in this test's folder
        ENVELOPE_SIGNING_KEY="image-test-envelope-signing-key-0123456789",
    )
    assert final_env["STREAM_HEALTH_FILE"].startswith("/tmp/")
    log = tmp_path / "consumer.log"
    stop_later.append(start(venv, cmd, env, log))
    async with AwsClients(lake) as clients:
        db = await clients.dynamodb()
        deadline = time.monotonic() + 60
        owners: set[str] = set()
        while time.monotonic() < deadline and len(owners) < 2:
            assert stop_later[0].poll() is None, log.read_text()
            items = (await db.scan(TableName=lake.lease_table))["Items"]
            owners = {i["leaseKey"]["S"] for i in items if "leaseOwner" in i}
            await asyncio.sleep(0.5)
    assert len(owners) == 2, log.read_text()
    dockerfile = (REPO / "services/stream-consumer/Dockerfile").read_text().replace("\\\n", " ")
    (check,) = re.findall(r"^HEALTHCHECK .*? CMD (\[.+\])$", dockerfile, re.M)
    argv = json.loads(check)
    assert argv[0] == "python"
    healthy = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "python"), *argv[1:], env=env, stderr=asyncio.subprocess.PIPE
    )
    _, complaint = await healthy.communicate()
    assert healthy.returncode == 0, complaint  # the worker renews: its file is fresh
    stop_later[0].terminate()
    assert stop_later[0].wait(30) in (0, -15), log.read_text()


@pytest.mark.timeout(900)
async def test_importer_image_install_runs_once(moto: MotoServer, tmp_path: Path) -> None:
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    venv, cmd, final_env = build("services/importer/Dockerfile", tmp_path)
    with fake_vendor_api(tmp_path) as url:
        env = run_env(
            venv,
            final_env,
            AWS_ENDPOINT_URL=moto.endpoint,
            LAKE_BUCKET=lake.lake_bucket,
            STATE_TABLE=lake.state_table,
            FAKEAPI_URL=url,
            VENDOR_API_KEY="test-vendor-key",  # sources.yaml has no default for a secret
            VENDOR_OAUTH_SECRET="fake-oauth-secret",  # the fake API's OAuth2 client
            SOURCES_CONFIG=str(REPO / "config" / "sources.yaml"),
        )
        result = run(venv, cmd, env)
    assert cmd[-2:] == ["run", "--once"]
    assert result.returncode == 0, result.stderr
    assert "posts: 100 new records" in result.stdout


@pytest.mark.timeout(900)
def test_fakeapi_image_install_serves(
    tmp_path: Path, stop_later: list[subprocess.Popen[bytes]]
) -> None:
    venv, cmd, final_env = build("fakeapi/Dockerfile", tmp_path)
    port = free_port()
    env = run_env(venv, final_env, FAKEAPI_PORT=str(port), FAKEAPI_HOST="127.0.0.1")
    log = tmp_path / "fakeapi.log"
    stop_later.append(start(venv, cmd, env, log))
    answer = wait_http(f"http://127.0.0.1:{port}/posts?_page=1&_limit=5", stop_later[0], log)
    assert len(answer.json()) == 5
