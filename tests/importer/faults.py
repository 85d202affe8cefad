"""Crashes injected through the importer's collaborators (the raw writer, the state store),
where a dying process would leave them: before or after the n-th write of either."""

from __future__ import annotations

from tributary.raw_writer import RawObject, WriteOutcome
from tributary.testing import MemoryRawWriter
from tributary_importer.state import MemoryStateStore, SourceState


class Crash(Exception):
    """A process dying at that point."""


class CrashingWriter(MemoryRawWriter):
    """Dies before or after its `at`-th put (counting from 1), once."""

    def __init__(self) -> None:
        super().__init__()
        self.at: tuple[int, bool] | None = None  # (nth put, after it landed)
        self.count = 0

    async def put(self, obj: RawObject) -> WriteOutcome:
        self.count += 1
        crash = self.at is not None and self.at[0] == self.count
        if crash and self.at is not None and not self.at[1]:
            raise Crash("before page")
        outcome = await super().put(obj)
        if crash:
            raise Crash("after page")
        return outcome


class CrashingStore(MemoryStateStore):
    """Dies before or after its `at`-th put (the run start, then the cursor), once."""

    def __init__(self) -> None:
        super().__init__()
        self.at: tuple[int, bool] | None = None
        self.count = 0

    async def put(self, state: SourceState) -> SourceState:
        self.count += 1
        crash = self.at is not None and self.at[0] == self.count
        if crash and self.at is not None and not self.at[1]:
            raise Crash("before state")
        stored = await super().put(state)
        if crash:
            raise Crash("after state")
        return stored
