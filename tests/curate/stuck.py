"""Run the curate command with a Spark call that never returns (test only): the prepare step
starts the session, writes the JVM's pid to `<marker>`, then parks inside the JVM for good
(`Thread.sleep`, which cancelling Spark's jobs does not end), as a Spark action can when the
session stops under it (spark_thread.py says where that was seen).

`python tests/curate/stuck.py <marker> <curate args…>`
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

from tributary_curate.job import CurateJob

MARKER = Path(sys.argv[1])


def _prepare_parked_in_the_jvm(self: Any, *args: Any) -> Any:
    jvm = self._spark._jvm
    MARKER.write_text(str(jvm.java.lang.ProcessHandle.current().pid()))
    jvm.java.lang.Thread.sleep(10**9)


CurateJob._prepare = _prepare_parked_in_the_jvm  # type: ignore[method-assign]
sys.argv = ["tributary_curate", *sys.argv[2:]]
runpy.run_module("tributary_curate", run_name="__main__", alter_sys=True)
