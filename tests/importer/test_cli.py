"""The importer's command line as a scheduler runs it: moto, the fake API, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
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
        "VENDOR_API_KEY": "test-vendor-key",  # the local stack's environment sets one too
        "VENDOR_OAUTH_SECRET": "fake-oauth-secret",  # the fake API's OAuth2 client
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
    assert datasets == {"posts", "comments", "items", "events", "users", "orders"}
    for line in (  # the richer vendors of issue 20, one source each
        "posts_jsonlink: 100 new records in 4 pages",
        "comments_hcursor: 500 new records in 5 pages",
        "posts_oauth: 100 new records in 2 pages",
        "items_graphql: 50 new records in 3 pages",
        "events_windowed: 1200 new records",
        "post_comments: 480 new records",  # every 25th post's 404 is declared empty
        "posts_archive: 0 new records in 1 pages",
    ):
        assert line in first.stdout, first.stdout
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


def loop_until(
    env: dict[str, str], marker: str, passes: int, *args: str, stream: str = "stdout"
) -> int:
    """Run `run --loop` until `marker` starts `passes` lines of `stream`, SIGTERM it; its code."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tributary_importer", "run", "--loop", "--interval", "0.5", *args],
        env=env,
        stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL,
        text=True,
    )
    lines = process.stdout if stream == "stdout" else process.stderr
    assert lines is not None
    runs = 0
    try:
        for line in lines:
            runs += line.startswith(marker)
            if runs == passes:
                break
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
        lines.close()
        assert runs == passes


def test_loop_runs_again_and_stops_cleanly_on_sigterm(cli_env: dict[str, str]) -> None:
    # The second pass finds posts again (a full-refresh source).
    assert loop_until(cli_env, "posts: ", 2) == 0


def test_loop_exits_with_the_code_of_its_last_pass(cli_env: dict[str, str]) -> None:
    """It used to exit 0 whatever happened: a supervisor could not tell a broken loop."""
    missing = {k: v for k, v in cli_env.items() if k != "VENDOR_API_KEY"}
    # posts cannot run (no secret); comments keeps importing on every pass meanwhile.
    args = ("--source", "posts", "--source", "comments")
    assert loop_until(missing, "comments: ", 2, *args) == 2
    down = {**cli_env, "FAKEAPI_URL": "http://127.0.0.1:9"}
    assert loop_until(down, "comments: failed", 1, "--source", "comments", stream="stderr") == 1


@pytest.mark.timeout(120)
def test_sigterm_mid_pass_stops_a_retrying_loop_at_once(cli_env: dict[str, str]) -> None:
    """A stop used to wait for the pass in progress: with the vendor gone (as when `make up`
    stops everything at once) every page of every source retried with backoff, for longer than
    the stack's stop budget, and the importer was SIGKILLed. The pass is now cancelled; it
    resumes from its last checkpoint next time, as after a crash. No pass finished: exit 1."""
    down = {**cli_env, "FAKEAPI_URL": "http://127.0.0.1:9", "LOG_LEVEL": "INFO"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tributary_importer", "run", "--loop", "--interval", "0.5"],
        env=down,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if '"retrying"' in line:
                break
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = process.wait(timeout=60)
        took = time.monotonic() - sent
        rest = process.stderr.read()
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert took < 5.0, f"stopped {took:.1f}s after SIGTERM"
    assert code == 1, rest
    assert "stopping: the pass in progress is cancelled" in rest, rest


def test_a_missing_secret_fails_its_source_with_exit_2_naming_the_variable(
    cli_env: dict[str, str],
) -> None:
    for env in (
        {k: v for k, v in cli_env.items() if k != "VENDOR_API_KEY"},
        {**cli_env, "VENDOR_API_KEY": ""},  # empty counts as unset
    ):
        result = cli(env, "run", "--once", "--source", "posts", "--source", "comments")
        assert result.returncode == 2, result.stderr
        assert "source 'posts' needs environment variable(s) VENDOR_API_KEY" in result.stderr
        assert "posts: " not in result.stdout  # nothing sent with an empty or development key
        assert "comments: 500 new records" in result.stdout or "comments: 0 new" in result.stdout


def test_a_secret_with_a_default_or_a_literal_is_refused(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    for secret in ("${VENDOR_API_KEY:-local-vendor-key}", "hunter2"):
        sources = tmp_path / "sources.yaml"
        sources.write_text(
            "sources:\n  posts:\n    base_url: http://x\n    path: /posts\n"
            f"    dataset: posts\n    auth: {{kind: header, secret: '{secret}'}}\n"
        )
        result = cli({**cli_env, "SOURCES_CONFIG": str(sources)}, "run", "--once")
        assert result.returncode == 2
        assert "sources.posts.auth.secret must be a bare ${VARIABLE} with no default" in (
            result.stderr
        )
    sources.write_text(
        "sources:\n  posts:\n    base_url: http://x\n    path: /posts\n"
        "    dataset: posts\n    auth: {kind: bearer}\n"
    )
    result = cli({**cli_env, "SOURCES_CONFIG": str(sources)}, "run", "--once")
    assert result.returncode == 2
    assert "sources.posts.auth.kind is 'bearer' but it names no secret" in result.stderr


def test_urls_are_redacted_in_logs_and_errors(
    cli_env: dict[str, str],
    fake_url: str,  # noqa: F811 - the module-scoped fixture
    tmp_path: Path,
) -> None:
    """A vendor's next-page link carries a token: neither httpx's request log, the retry log
    nor the failure message may show it."""
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n  signed:\n    base_url: ${FAKEAPI_URL}\n    path: /signed/posts\n"
        "    dataset: posts\n    params: {_page: '1'}\n"
        "    auth: {kind: query, param: api_key, secret: '${VENDOR_API_KEY}'}\n"
        "    max_attempts: 2\n    pagination: {kind: link_header, page_param: _page,\n"
        "                 size_param: _limit, page_size: 10}\n"
    )
    env = {**cli_env, "SOURCES_CONFIG": str(sources), "LOG_LEVEL": "INFO"}
    httpx.put(f"{fake_url}/__admin/faults", json={"fail_from_page": 3})
    try:
        result = cli(env, "run", "--once")
    finally:
        httpx.put(f"{fake_url}/__admin/faults", json={})
    assert result.returncode == 1, result.stderr  # page 3 kept failing: transient
    output = result.stdout + result.stderr
    assert "HTTP Request: GET" in output  # httpx did log the requests, and page 2 was fetched
    assert "_page=2" in output
    assert "tok-" not in output
    assert "test-vendor-key" not in output
    assert "token=***" in output
    assert "signed: failed, retry later: GET http://127.0.0.1" in result.stderr
    assert "_page=3&_limit=10&token=***" in result.stderr  # the failing page, redacted
