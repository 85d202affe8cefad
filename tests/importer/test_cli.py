"""The importer's command line as a scheduler runs it: moto, the fake API, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATASETS_CONFIG, REPO, lake_settings
from tests.importer.test_import import fake_url  # noqa: F401 - the module-scoped fixture
from tributary.bootstrap import bootstrap
from tributary.settings import AwsSettings
from tributary_stack.inspect import read_lines
from tributary_stack.moto import MotoServer


@pytest.fixture
async def cli_env(moto: MotoServer, fake_url: str) -> dict[str, str]:  # noqa: F811
    lake = lake_settings(moto.endpoint)
    await bootstrap(lake, shards=1)
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "LAKE_BUCKET": lake.lake_bucket,
        "STATE_TABLE": lake.state_table,
        "FAKEAPI_URL": fake_url,
        "DATASETS_CONFIG": str(DATASETS_CONFIG),
        "SOURCES_CONFIG": str(REPO / "config" / "sources.yaml"),
        "LOG_LEVEL": "WARNING",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tributary_importer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lake_of(env: dict[str, str]) -> AwsSettings:
    return AwsSettings.model_validate(
        {k: env[k] for k in ("AWS_ENDPOINT_URL", "LAKE_BUCKET", "STATE_TABLE")}
    )


async def test_run_once_state_backfill_reset(cli_env: dict[str, str]) -> None:
    first = cli(cli_env, "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "posts: 100 new records in 5 pages" in first.stdout  # the 5th, empty, ends it
    assert "comments: 500 new records" in first.stdout
    again = cli(cli_env, "run", "--once", "--source", "items")
    assert "items: 0 new records" in again.stdout  # incremental: nothing new
    lines = await read_lines(lake_of(cli_env), "raw/")
    datasets = {key.split("/")[1] for key in lines}
    assert datasets == {"posts", "comments", "items"}
    shown = cli(cli_env, "state", "show", "--source", "items")
    assert '"cursor": "2026-01-01' in shown.stdout
    backfill = cli(
        cli_env,
        "backfill",
        "--source",
        "items",
        "--from",
        "2026-01-01T00:00:10Z",
        "--to",
        "2026-01-01T00:00:19Z",
    )
    assert "backfilled 10 records" in backfill.stdout, backfill.stderr
    assert cli(cli_env, "state", "reset", "--source", "items").returncode == 0
    assert "items: 50 new records" in cli(cli_env, "run", "--once", "--source", "items").stdout


async def test_exit_codes_a_scheduler_can_act_on(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert cli(cli_env, "run", "--once", "--source", "nope").returncode == 2
    broken = tmp_path / "sources.yaml"
    broken.write_text("sources:\n  bad:\n    base_url: http://x\n    path: /x\n    dataset: Bad\n")
    result = cli({**cli_env, "SOURCES_CONFIG": str(broken)}, "run", "--once")
    assert result.returncode == 2
    assert "dataset 'Bad' must match" in result.stderr
    down = cli(
        {**cli_env, "FAKEAPI_URL": "http://127.0.0.1:9"}, "run", "--once", "--source", "posts"
    )
    assert down.returncode == 1, down.stderr  # transient: the scheduler retries later


def test_loop_runs_again_and_stops_cleanly_on_sigterm(cli_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tributary_importer", "run", "--loop", "--interval", "0.5"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    runs = 0
    for line in process.stdout:  # the second pass finds posts again (a full-refresh source)
        runs += line.startswith("posts: ")
        if runs == 2:
            break
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    process.stdout.close()
    assert code == 0
