"""Importer state per source: the cursor, the ids at its boundary, and the run in progress.

Written with a conditional version check, so two runs of one source cannot both advance it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from tributary.errors import PermanentError


class StateConflictError(PermanentError):
    """Someone else changed the state since we read it (another run of the same source)."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run in progress: a rerun after a crash resumes it (same window, same keys)."""

    window: str
    started_at: str
    lower: str | None


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the importer remembers about one source."""

    source: str
    version: int = 0
    cursor: str | None = None
    seen: dict[str, str] = field(default_factory=dict)  # id -> cursor value, in the look-back
    runs: int = 0
    run: RunInfo | None = None
    last_run: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """Everything but the key and version, as JSON-ready data."""
        doc = asdict(self)
        del doc["source"], doc["version"]
        return doc

    @classmethod
    def from_document(cls, source: str, version: int, doc: dict[str, Any]) -> SourceState:
        """Rebuild from `document()`."""
        run = doc.get("run")
        return cls(
            source,
            version,
            doc.get("cursor"),
            dict(doc.get("seen", {})),
            int(doc.get("runs", 0)),
            RunInfo(**run) if run else None,
            dict(doc.get("last_run", {})),
        )


class StateStore(Protocol):
    """Per-source state with optimistic concurrency."""

    async def get(self, source: str) -> SourceState:
        """The stored state, or a fresh one (version 0)."""

    async def put(self, state: SourceState) -> SourceState:
        """Store `state` if the stored version is still `state.version`; returns it with
        version + 1. Raises `StateConflictError` otherwise."""

    async def delete(self, source: str) -> None:
        """Forget the source (a full re-import follows)."""


class MemoryStateStore:
    """`StateStore` in a dict."""

    def __init__(self) -> None:
        self.states: dict[str, SourceState] = {}

    async def get(self, source: str) -> SourceState:
        """Stored or fresh."""
        return self.states.get(source, SourceState(source))

    async def put(self, state: SourceState) -> SourceState:
        """Conditional on the version."""
        current = self.states.get(state.source, SourceState(state.source))
        if current.version != state.version:
            raise StateConflictError(f"state of {state.source} changed underneath this run")
        stored = replace(state, version=state.version + 1)
        self.states[state.source] = stored
        return stored

    async def delete(self, source: str) -> None:
        """Forget it."""
        self.states.pop(source, None)
