"""The README's main command, as a user runs it: the whole pipeline on the embedded stack."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_demo_runs_end_to_end_and_exits_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACK_", "API_"))}
    result = subprocess.run(
        [sys.executable, "-m", "tributary_stack", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a bound on a hang, not a speed check: the demo runs every source and table
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo: OK" in result.stdout
    assert "MISMATCH" not in result.stdout
