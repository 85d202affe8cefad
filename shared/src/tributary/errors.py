"""The one error tree: every failure Tributary raises is transient (retry) or permanent (don't)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class TributaryError(Exception):
    """Base of every error Tributary raises on purpose."""


class TransientError(TributaryError):
    """A failure that may succeed when retried later (throttling, timeouts, a sink that is down)."""


class PermanentError(TributaryError):
    """A failure that will fail the same way again (bad input, bad configuration)."""


class ConfigError(PermanentError):
    """The configuration (environment or dataset registry) is invalid; the message says how."""


class SinkUnavailableError(TransientError):
    """The next hop did not make the data durable; nothing covered by it may be acknowledged."""


class RetriesExhaustedError(TransientError):
    """A transient failure persisted through every attempt the retry policy allowed."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def describe_problems(errors: Iterable[Mapping[str, Any]]) -> str:
    """`a.b: message; c: message` from pydantic-style error entries (`loc`, `msg`)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
