"""`python -m tributary_stream.health`: the container's health check (Docker HEALTHCHECK, the
Copilot manifest's `healthcheck.command`).

The worker touches `STREAM_HEALTH_FILE` after every renewal round, but only while its
coordination loop turns and no shard loop is stalled (see `Worker._heartbeat`). A worker whose
event loop is blocked, or which stopped renewing or polling, stops touching it; once the file
is older than `STREAM_HEALTH_MAX_AGE_S` (default 30 s), this exits 1 and ECS replaces the task.
Kept to the standard library: it runs every 30 s inside the container.
"""

from __future__ import annotations

import os
import sys
import time


def check(path: str, max_age_s: float, now: float | None = None) -> str | None:
    """None when healthy, else what is wrong."""
    try:
        age = (time.time() if now is None else now) - os.stat(path).st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: the worker has not renewed its leases yet"
    if age > max_age_s:
        return f"{path} is {age:.0f} s old (> {max_age_s:g} s): the worker is hung or not renewing"
    return None


def main() -> None:
    """Exit 0 when healthy, 1 (with the reason on stderr) otherwise."""
    path = os.environ.get("STREAM_HEALTH_FILE")
    if not path:
        print("STREAM_HEALTH_FILE is not set: no health signal to check", file=sys.stderr)
        sys.exit(1)
    problem = check(path, float(os.environ.get("STREAM_HEALTH_MAX_AGE_S", "30")))
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
