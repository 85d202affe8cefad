"""Metrics as CloudWatch Embedded Metric Format (EMF) documents written to stdout.

Counters are aggregated in memory and flushed as one EMF document per dimension set, so a hot
path costs a dict update, not a write. CloudWatch Logs turns each document into metrics.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from enum import StrEnum
from typing import Protocol, TextIO

import orjson


class Unit(StrEnum):
    """CloudWatch metric units we use."""

    COUNT = "Count"
    BYTES = "Bytes"
    MILLISECONDS = "Milliseconds"


Dimensions = tuple[tuple[str, str], ...]


class Metrics(Protocol):
    """Where services record metrics."""

    def add(self, name: str, value: float, unit: Unit = Unit.COUNT, **dimensions: str) -> None:
        """Add `value` to the metric `name` under `dimensions` (summed until the next flush)."""

    def gauge(self, name: str, value: float, unit: Unit = Unit.COUNT, **dimensions: str) -> None:
        """Set the metric `name` under `dimensions` (the last value before a flush wins)."""

    def flush(self) -> None:
        """Emit everything recorded since the last flush."""


class EmfMetrics:
    """Aggregates metrics and flushes them to a text stream as EMF JSON lines."""

    def __init__(self, namespace: str, service: str, stream: TextIO | None = None) -> None:
        self._namespace = namespace
        self._service = service
        self._stream = stream or sys.stdout
        self._values: dict[Dimensions, dict[str, tuple[float, Unit]]] = defaultdict(dict)

    def add(self, name: str, value: float, unit: Unit = Unit.COUNT, **dimensions: str) -> None:
        """Add `value` to the metric `name` under `dimensions`."""
        key = tuple(sorted(dimensions.items()))
        previous, _ = self._values[key].get(name, (0.0, unit))
        self._values[key][name] = (previous + value, unit)

    def gauge(self, name: str, value: float, unit: Unit = Unit.COUNT, **dimensions: str) -> None:
        """Set `name` under `dimensions` to `value`."""
        self._values[tuple(sorted(dimensions.items()))][name] = (value, unit)

    def flush(self) -> None:
        """Write one EMF document per dimension set and forget the values."""
        values, self._values = self._values, defaultdict(dict)
        timestamp = int(time.time() * 1000)
        for dims, metrics in values.items():
            names = ["service", *(k for k, _ in dims)]
            doc: dict[str, object] = {
                "_aws": {
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": self._namespace,
                            "Dimensions": [names],
                            "Metrics": [
                                {"Name": n, "Unit": u.value} for n, (_, u) in metrics.items()
                            ],
                        }
                    ],
                },
                "service": self._service,
                **dict(dims),
                **{n: v for n, (v, _) in metrics.items()},
            }
            self._stream.write(orjson.dumps(doc).decode() + "\n")
        self._stream.flush()
