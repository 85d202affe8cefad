"""SIGKILL mid-run, and SIGTERM mid-pass of `run --loop` (which cancels the pass at whatever
await it is at), on the production path (the CLI process, S3 via moto, the DynamoDB state
table, the fake API over the wire): a windowed and a child source resumed after the kill or
the stop land every record once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import orjson
import pytest

from tests.importer.test_cli import cli, cli_env, lake_of
from tests.importer.test_import import fake_url
from tributary_stack.inspect import read_lines

__all__ = ["cli_env", "fake_url"]  # the fixtures


async def landed(env: dict[str, str], source: str) -> tuple[int, Counter[str]]:
    objects = await read_lines(lake_of(env), "raw/")
    mine = {k: v for k, v in objects.items() if f"/importer-{source}-" in k}
    return len(mine), Counter(orjson.loads(line)["id"] for lines in mine.values() for line in lines)


SOURCES = [("events_windowed", 250, 5, 1200), ("post_comments", 60, 25, 480)]
STOP_WITHIN_S = 10.0  # a stop cancels the pass at once: well under the 30 s ECS stop timeout


async def signal_mid_run(
    env: dict[str, str], args: tuple[str, ...], source: str, slow_ms: int, after: int, sig: int
) -> tuple[int | None, bytes, float]:
    """Start the importer with `args`, send `sig` once `after` of the source's objects landed;
    (exit code, stderr, seconds from the signal to the exit)."""
    url = env["FAKEAPI_URL"]
    async with httpx.AsyncClient() as http:
        await http.put(f"{url}/__admin/faults", json={"slow_ms": slow_ms})
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tributary_importer", *args, "--source", source),
            env={**env, "LOG_LEVEL": "INFO"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            while (await landed(env, source))[0] < after:
                assert process.returncode is None, "the run ended before the signal"
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            process.send_signal(sig)
            signalled = time.monotonic()
            _, err = await asyncio.wait_for(process.communicate(), 30)
            took = time.monotonic() - signalled
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await http.put(f"{url}/__admin/faults", json={})
    return process.returncode, err, took


async def rerun_lands_every_record_once(env: dict[str, str], source: str, records: int) -> None:
    _, before = await landed(env, source)
    assert 0 < sum(before.values()) < records  # stopped half way
    rerun = cli(env, "run", "--once", "--source", source)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stdout
    _, after = await landed(env, source)
    assert sum(after.values()) == records
    assert max(after.values()) == 1


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("source", "slow_ms", "kill_after", "records"), SOURCES)
async def test_a_sigkill_mid_run_then_a_rerun_lands_every_record_once(
    cli_env: dict[str, str], source: str, slow_ms: int, kill_after: int, records: int
) -> None:
    args = ("run", "--once")
    await signal_mid_run(cli_env, args, source, slow_ms, kill_after, signal.SIGKILL)
    await rerun_lands_every_record_once(cli_env, source, records)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("source", "slow_ms", "stop_after", "records"), SOURCES)
async def test_a_sigterm_mid_pass_of_the_loop_then_a_rerun_lands_every_record_once(
    cli_env: dict[str, str], source: str, slow_ms: int, stop_after: int, records: int
) -> None:
    """`run --loop` stopped mid-pass cancels the pass: it exits 1 (no pass finished) within
    seconds of the signal without finishing the pass, and the next run resumes it and lands
    every record once. The signal lands where the pass waits most (a page request, the fake
    slowed); test_cancel.py sweeps every landing and checkpoint in process."""
    args = ("run", "--loop", "--interval", "0.5")
    code, err, took = await signal_mid_run(
        cli_env, args, source, slow_ms, stop_after, signal.SIGTERM
    )
    assert code == 1, err.decode()
    assert took < STOP_WITHIN_S, took
    assert b"stopping: the pass in progress is cancelled" in err
    shown = cli(cli_env, "state", "show", "--source", source)
    assert orjson.loads(shown.stdout)["run"] is not None  # recorded, not finished: to resume
    await rerun_lands_every_record_once(cli_env, source, records)
