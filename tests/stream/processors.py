"""Processors for tests that run the worker as a process (`STREAM_PROCESSOR=tests.stream...`)."""

from __future__ import annotations

from typing import Any


def explode_on_fives(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """An item per record, except that it raises for every fifth one (a processor's bug)."""
    if envelope["data"]["i"] % 5 == 0:
        raise ZeroDivisionError(f"record {envelope['id']} divides by zero")
    return {"dataset": envelope["dataset"], "id": envelope["id"], "i": envelope["data"]["i"]}
