"""The public listener never serves the API over plain HTTP: every environment imports a
certificate (HTTPS:443), the api service has an alias on it and redirects HTTP:80 to HTTPS.

Opting out (a private test environment behind a VPN, say) is possible, but only on purpose: the
environment manifest must say `# tributary: plain-http-on-purpose: <reason>` on a line of its own.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

COPILOT = REPO / "copilot"
ENVIRONMENTS = sorted(p.parent.name for p in COPILOT.glob("environments/*/manifest.yml"))
OPT_OUT = re.compile(r"^# tributary: plain-http-on-purpose: \S.*$", re.MULTILINE)


def plain_http_problems(env_text: str, service: dict[str, Any], env: str) -> list[str]:
    """Why the `env` environment's public listener could serve the api over plain HTTP."""
    if OPT_OUT.search(env_text):
        return []
    problems: list[str] = []
    environment = yaml.safe_load(env_text) or {}
    certificates = ((environment.get("http") or {}).get("public") or {}).get("certificates")
    if not certificates or not all(isinstance(c, str) and c.strip() for c in certificates):
        problems.append(f"{env}: no http.public.certificates, so there is no HTTPS listener")
    http = {
        **(service.get("http") or {}),
        **(service.get("environments", {}).get(env) or {}).get("http", {}),
    }
    if not http.get("alias"):
        problems.append(f"{env}: the api has no http.alias, so the certificate is not served")
    if http.get("redirect_to_https") is False:
        problems.append(f"{env}: the api sets redirect_to_https: false, so HTTP:80 serves it")
    return problems


def _service() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COPILOT / "api" / "manifest.yml").read_text())
    return loaded


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_public_listener_serves_the_api_over_https_only(env: str) -> None:
    text = (COPILOT / "environments" / env / "manifest.yml").read_text()
    assert plain_http_problems(text, _service(), env) == []


def test_environments_are_checked() -> None:
    assert {"test", "prod"} <= set(ENVIRONMENTS)


PLAIN_ENV = "name: test\ntype: Environment\n"
HTTPS_ENV = (
    PLAIN_ENV + "http:\n  public:\n    certificates: [arn:aws:acm:us-east-1:1:certificate/x]\n"
)
SERVICE = {"http": {"path": "/", "alias": "ingest.example.com"}}


@pytest.mark.parametrize(
    ("env_text", "service", "problem"),
    [
        (PLAIN_ENV, SERVICE, "no http.public.certificates"),
        (HTTPS_ENV, {"http": {"path": "/"}}, "no http.alias"),
        (HTTPS_ENV, {"http": {**SERVICE["http"], "redirect_to_https": False}}, "false"),
        (
            HTTPS_ENV,
            {**SERVICE, "environments": {"test": {"http": {"redirect_to_https": False}}}},
            "false",
        ),
        (PLAIN_ENV + "http:\n  public:\n    certificates: ['']\n", SERVICE, "certificates"),
    ],
    ids=["no certificate", "no alias", "no redirect", "no redirect in one env", "empty arn"],
)
def test_the_check_catches_plain_http(env_text: str, service: dict[str, Any], problem: str) -> None:
    problems = plain_http_problems(env_text, service, "test")
    assert problems
    assert problem in " ".join(problems)


def test_opting_out_takes_a_stated_reason() -> None:
    assert (
        plain_http_problems(
            PLAIN_ENV + "# tributary: plain-http-on-purpose: VPN-only test stack\n", {}, "test"
        )
        == []
    )
    assert plain_http_problems(PLAIN_ENV + "# tributary: plain-http-on-purpose:\n", {}, "test")
    assert plain_http_problems(HTTPS_ENV, SERVICE, "test") == []
