"""Run the curate command with a barrier after it reads the bookmark (test only): the test
releases every run at once (`go`), so two runs overlap whatever the scheduling.

`python tests/curate/overlap.py <barrier dir> <curate args…>`; each run touches `read-<pid>`
in the barrier directory once it has read its bookmark, then waits for `go`.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
from pathlib import Path
from typing import Any

from tributary_curate import bookmark

BARRIER = Path(sys.argv[1])
_read = bookmark.S3BookmarkStore.get


async def _get_then_wait(self: Any, dataset: str) -> Any:
    mark = await _read(self, dataset)
    (BARRIER / f"read-{os.getpid()}").touch()
    for _ in range(6000):  # at most 5 minutes
        if (BARRIER / "go").exists():
            break
        await asyncio.sleep(0.05)
    return mark


bookmark.S3BookmarkStore.get = _get_then_wait  # type: ignore[method-assign]
sys.argv = ["tributary_curate", *sys.argv[2:]]
runpy.run_module("tributary_curate", run_name="__main__", alter_sys=True)
