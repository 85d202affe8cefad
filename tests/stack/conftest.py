"""The embedded stack for whole-pipeline tests: free ports, no loops, the repo's registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tributary_stack.settings import StackSettings


def stack_settings(tmp_path: Path, **update: Any) -> StackSettings:
    """The stack's defaults with free ports, no importer/curate loops (tests drive them)."""
    defaults: dict[str, Any] = {
        "datasets_config": REPO / "config" / "datasets.yaml",
        "sources_config": REPO / "config" / "sources.yaml",
    }
    return StackSettings().one_off(tmp_path / "stack.env").model_copy(update={**defaults, **update})
