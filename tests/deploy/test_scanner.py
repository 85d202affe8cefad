"""checkov over the CloudFormation addons and the Dockerfiles: every failed check is fixed or
suppressed in the file itself with a one-line reason (Metadata checkov skip, or a
`# checkov:skip=ID: reason` line in a Dockerfile), and checkov reports each of those skips with
that reason (so a skip checkov no longer sees, or one whose resource is not scanned, fails)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.deploy.test_static import DOCKERFILES as STATIC_DOCKERFILES
from tests.deploy.test_static import load_cfn

CHECKOV = REPO / ".local" / "checkov" / "bin" / "checkov"
DOCKERFILES = [REPO / path for path in STATIC_DOCKERFILES]
LAKE = REPO / "copilot" / "environments" / "addons" / "lake.yml"
ADDONS = sorted((REPO / "copilot").glob("*/addons/*.yml"))

Skip = tuple[str, str, str]  # (check id, resource name, reason)


def checkov(*args: str) -> list[dict[str, object]]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make install` installs tools/checkov"
    # No --quiet: with it checkov's JSON keeps only failed checks, and the skips go unseen.
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "--output", "json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return [r for r in reports if isinstance(r, dict)]


def failures(reports: list[dict[str, object]]) -> list[str]:
    found = []
    for report in reports:
        results = report.get("results", {})
        assert isinstance(results, dict)
        for check in results.get("failed_checks", []):
            found.append(f"{check['check_id']} {check['resource']} ({check['file_path']})")
    return found


def reported_skips(reports: list[dict[str, object]]) -> set[Skip]:
    found: set[Skip] = set()
    for report in reports:
        results = report.get("results", {})
        assert isinstance(results, dict)
        for check in results.get("skipped_checks", []):
            reason = str((check.get("check_result") or {}).get("suppress_comment", ""))
            name = str(check["resource"]).rsplit(".", 1)[-1]
            if report.get("check_type") == "dockerfile":
                name = str(Path(str(check["file_path"])).parent.name)
            found.add((str(check["check_id"]), name, reason.strip()))
    return found


def template_skips(path: Path) -> set[Skip]:
    template = load_cfn(path)
    found: set[Skip] = set()
    for name, resource in template["Resources"].items():
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
            found.add((skip["id"], name, str(skip.get("comment", "")).strip()))
    return found


def dockerfile_skips(path: Path) -> set[Skip]:
    pattern = re.compile(r"^#\s*checkov:skip=(\w+):?(.*)$", re.MULTILINE)
    return {(m[1], path.parent.name, m[2].strip()) for m in pattern.finditer(path.read_text())}


def assert_skips(declared: set[Skip], reports: list[dict[str, object]]) -> None:
    assert declared, "no skips declared: this check would prove nothing"
    for check_id, name, reason in declared:
        assert len(reason.split()) >= 4, f"{check_id} on {name}: say why it is skipped"
    assert reported_skips(reports) == declared


def lake_with_stream_items(tmp: Path) -> Path:
    """lake.yml with StreamItems defaulting to "true": checkov drops resources whose condition
    is false, so the optional items table is scanned only this way."""
    text = LAKE.read_text()
    marker = '  StreamItems:\n    Type: String\n    Default: "false"\n'
    assert marker in text, "StreamItems parameter moved: update this test"
    copy = tmp / "lake-stream-items.yml"
    copy.write_text(text.replace(marker, marker.replace('"false"', '"true"')))
    return copy


@pytest.mark.timeout(600)
def test_checkov_cloudformation_addons() -> None:
    reports = checkov("--framework", "cloudformation", "--directory", "copilot")
    assert reports
    assert reports[0]["summary"]["passed"] > 0  # type: ignore[index]
    assert not failures(reports), "\n".join(failures(reports))
    declared = set().union(*(template_skips(p) for p in ADDONS))
    # ItemsTable exists only with StreamItems; its skip is checked by the next test.
    assert_skips({s for s in declared if s[1] != "ItemsTable"}, reports)


@pytest.mark.timeout(600)
def test_checkov_lake_with_stream_items(tmp_path: Path) -> None:
    copy = lake_with_stream_items(tmp_path)
    reports = checkov("--framework", "cloudformation", "--file", str(copy))
    assert not failures(reports), "\n".join(failures(reports))
    assert any(s[1] == "ItemsTable" for s in reported_skips(reports)), "ItemsTable not scanned"
    assert_skips(template_skips(LAKE), reports)


@pytest.mark.timeout(600)
def test_checkov_dockerfiles() -> None:
    files = [arg for path in DOCKERFILES for arg in ("--file", str(path.relative_to(REPO)))]
    reports = checkov("--framework", "dockerfile", *files)
    assert not failures(reports), "\n".join(failures(reports))
    assert_skips(set().union(*(dockerfile_skips(p) for p in DOCKERFILES)), reports)


def test_lake_crawlers_are_generated_from_the_registry() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "lake_crawlers.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
