"""The embedded stack for whole-pipeline tests: free ports, no loops, the repo's registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tributary_stack.settings import StackSettings


def stack_settings(tmp_path: Path, **update: Any) -> StackSettings:
    """The stack's defaults with free ports, no importer/curate loops (tests drive them)."""
    defaults: dict[str, Any] = {
        "aws_port": 0,
        "api_port": 0,
        "fakeapi_port": 0,
        "importer_loop": False,
        "curate_loop": False,
        "env_file": tmp_path / "stack.env",
        "datasets_config": REPO / "config" / "datasets.yaml",
        "sources_config": REPO / "config" / "sources.yaml",
    }
    return StackSettings().model_copy(update={**defaults, **update})
