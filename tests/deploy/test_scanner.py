"""checkov over the CloudFormation addons and the Dockerfiles: every failed check is fixed or
suppressed in the file itself with a one-line reason (Metadata checkov skip, or a
`# checkov:skip=ID: reason` line in a Dockerfile)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

CHECKOV = REPO / ".local" / "checkov" / "bin" / "checkov"
DOCKERFILES = sorted(p for p in REPO.glob("**/Dockerfile") if ".venv" not in p.parts)


def checkov(*args: str) -> list[dict[str, object]]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make install` installs tools/checkov"
    result = subprocess.run(
        [str(CHECKOV), "--quiet", "--skip-download", "--output", "json", *args],
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


def skips_have_reasons(reports: list[dict[str, object]]) -> None:
    for report in reports:
        results = report.get("results", {})
        assert isinstance(results, dict)
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment", "")
            assert len(str(reason).split()) >= 4, f"{check['check_id']}: say why it is skipped"


@pytest.mark.timeout(600)
def test_checkov_cloudformation_addons() -> None:
    reports = checkov("--framework", "cloudformation", "--directory", "copilot")
    assert reports
    assert reports[0]["summary"]["passed"] > 0  # type: ignore[index]
    assert not failures(reports), "\n".join(failures(reports))
    skips_have_reasons(reports)


@pytest.mark.timeout(600)
def test_checkov_dockerfiles() -> None:
    files = [arg for path in DOCKERFILES for arg in ("--file", str(path.relative_to(REPO)))]
    reports = checkov("--framework", "dockerfile", *files)
    assert not failures(reports), "\n".join(failures(reports))
    skips_have_reasons(reports)


def test_lake_crawlers_are_generated_from_the_registry() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "lake_crawlers.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
