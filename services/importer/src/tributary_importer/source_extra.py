"""The keys of a source beyond a flat GET resource: parents (`resolve`), request bodies, date
windows, OAuth2 and response actions. Names follow dlt's rest_api where it has one."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

_STEP = re.compile(r"([1-9][0-9]*)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Placeholders a POST body (`json`) may hold; replaced by the run's bounds (dlt's spelling).
START_VALUE = "{incremental.start_value}"
END_VALUE = "{incremental.end_value}"


class Method(StrEnum):
    """The HTTP method of a resource's requests."""

    GET = "GET"
    POST = "POST"


class Action(StrEnum):
    """What a matching response means."""

    IGNORE = "ignore"  # the resource (or this parent's child resource) is empty
    RETRY = "retry"  # transient: retried with backoff like a 503
    FAIL = "fail"  # permanent: the run fails (what any other 4xx does)


class ResponseAction(BaseModel):
    """`{status_code: 404, action: ignore}`; `content` narrows it to answers whose body holds
    that text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status_code: int = Field(ge=100, le=599)
    content: str | None = None
    action: Action

    def matches(self, status: int, body: str) -> bool:
        """Whether this action applies to an answer."""
        return status == self.status_code and (self.content is None or self.content in body)


class ResolveSpec(BaseModel):
    """A path placeholder filled from each record of a parent source (dlt's `type: resolve`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource: str  # the parent source's name in the same file
    field: str  # the parent record's field


def parse_step(value: str) -> timedelta:
    """`1d`, `6h`, `15m`, `30s` as a timedelta; `ValueError` otherwise."""
    match = _STEP.fullmatch(value)
    if match is None:
        raise ValueError(f"step {value!r} must be a count and a unit s, m, h or d (e.g. 1d)")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


class WindowFields(BaseModel):
    """The end of an incremental range and its slicing (mixed into `IncrementalSpec`)."""

    # query parameter carrying the window's upper bound (exclusive); a POST body uses
    # "{incremental.end_value}" instead
    end_param: str | None = None
    end_value: str | None = None  # a fixed end (default: the run's start time)
    step: str | None = None  # slice [start, end) into windows of this length, each checkpointed

    @field_validator("step")
    @classmethod
    def _step(cls, value: str | None) -> str | None:
        if value is not None:
            parse_step(value)
        return value
