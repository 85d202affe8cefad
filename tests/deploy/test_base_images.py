"""tools/base_images.py decides per image: build when absent or when its own recipe changed;
an image of that name it did not build is used as it is (never overwritten); a machine without
mmdebstrap gets a distinct exit status the compose tier skips on, and nothing is changed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO
from tests.deploy.docker import CANNOT_BUILD_HERE


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("base_images", REPO / "tools" / "base_images.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inspected(labels: dict[str, str] | None) -> Any:
    def run(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert cmd[:3] == ["docker", "image", "inspect"], cmd
        if labels is None:
            return subprocess.CompletedProcess(cmd, 1, "", "No such image")
        info = [{"Id": "sha256:abc", "Config": {"Labels": labels}}]
        return subprocess.CompletedProcess(cmd, 0, json.dumps(info), "")

    return run


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (None, None),  # absent: build
        ({}, "sha256:abc"),  # someone else's (a registry's, the user's): use it, never overwrite
        ({"maintainer": "x"}, "sha256:abc"),
        ({"org.tributary.recipe": "r1"}, "sha256:abc"),  # ours, same recipe: keep
        ({"org.tributary.recipe": "r0"}, None),  # ours, recipe changed: rebuild
    ],
)
def test_build_only_what_is_absent_or_ours_and_stale(
    monkeypatch: pytest.MonkeyPatch, labels: dict[str, str] | None, expected: str | None
) -> None:
    base = tool()
    monkeypatch.setattr(base.subprocess, "run", inspected(labels))
    assert base.current("python:3.11-slim", "r1") == expected


def test_no_mmdebstrap_is_a_skip_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = tool()
    monkeypatch.setattr(base.subprocess, "run", inspected(None))
    monkeypatch.setattr(base.shutil, "which", lambda _: None)
    monkeypatch.setattr(base.sys, "argv", ["base_images.py"])
    assert base.main() == CANNOT_BUILD_HERE
