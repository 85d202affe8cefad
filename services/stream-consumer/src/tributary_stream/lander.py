"""Landing a shard's batches in the lake exactly once, whoever else writes the same shard.

Per target (zone + dataset), a shard's objects form a chain: each object covers that target's
records after the previous object's last one, and its key is `<shardId>-<first sequence
number>`. A writer that finds its key taken (412) adopts the existing object's last sequence
number (from its metadata) and carries on after it. So any two writers that start from the same
checkpoint — a restart after a crash, or a paused "zombie" racing the lease's new owner — walk
the same chain: neither duplicates nor skips a record, however each cut its batches.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tributary.batch import encode_ndjson_gz
from tributary.errors import PermanentError, TransientError
from tributary.layout import object_key
from tributary.metrics import Metrics, Unit
from tributary.raw_writer import META_LAST, RawObject, RawWriter, WriteOutcome
from tributary_stream.route import Target


class PutRefusedError(PermanentError):
    """The store refused to create an object for good (a 403, say): its lines are not in the
    lake. Unlike a refused HeadObject after a 412, whose lines are."""


@dataclass(frozen=True, slots=True)
class Line:
    """A line to land and where it came from."""

    sequence: str
    arrival: datetime
    line: bytes

    @property
    def position(self) -> int:
        """The sequence number as an integer (they compare numerically)."""
        return int(self.sequence)


def landed_through(landed: MutableMapping[str, str], target: Target, stage: str = "") -> int:
    """The last sequence number already landed for `target` beyond the checkpoint (or -1)."""
    value = landed.get(f"{stage}:{target.name}" if stage else target.name)
    return -1 if value is None else int(value)


class Lander:
    """Writes a shard's lines to create-only objects, following each target's chain.

    A `stage` (e.g. "processing") makes chains of its own: objects `<shardId>.<stage>-<first>`
    and landed-map entries `<stage>:<zone>/<dataset>`, so they never meet the routed chains.
    """

    def __init__(
        self,
        writer: RawWriter,
        shard_id: str,
        metrics: Metrics,
        compresslevel: int = 6,
        stage: str = "",
    ) -> None:
        self.writer = writer
        self.compresslevel = compresslevel
        self._shard = shard_id
        self._name = f"{shard_id}.{stage}" if stage else shard_id
        self._stage = stage
        self._metrics = metrics

    async def land(
        self, target: Target, lines: Sequence[Line], landed: MutableMapping[str, str]
    ) -> None:
        """Make `lines` durable (or find them already durable); record the chain end in `landed`.

        `lines` are in sequence order. Lines at or before `landed[target]` are skipped.
        """
        chain = f"{self._stage}:{target.name}" if self._stage else target.name
        done = landed_through(landed, target, self._stage)
        pending = list(lines) if done < 0 else [line for line in lines if line.position > done]
        while pending:
            first = pending[0]
            key = object_key(target.zone, target.dataset, first.arrival, self._name, first.sequence)
            body = encode_ndjson_gz([line.line for line in pending], self.compresslevel)
            obj = RawObject(
                key,
                body,
                len(pending),
                first.sequence,
                pending[-1].sequence,
                {"shard": self._shard},
            )
            try:
                outcome = await self.writer.put(obj)
            except PutRefusedError:
                raise
            except PermanentError as exc:
                raise PutRefusedError(str(exc)) from exc
            if outcome is WriteOutcome.WRITTEN:
                landed[chain] = pending[-1].sequence
                self._metrics.add("ObjectsWritten", 1, dataset=target.dataset)
                self._metrics.add("RecordsLanded", len(pending), dataset=target.dataset)
                self._metrics.add("BytesLanded", len(body), Unit.BYTES, dataset=target.dataset)
                return
            info = await self.writer.head(key)
            if info is None or META_LAST not in info.metadata:
                raise TransientError(f"{key} exists but its metadata is not readable yet")
            end = info.metadata[META_LAST]
            if not end.isdigit() or int(end) < first.position:
                # Adopting it would make no progress: the same key, the same answer, forever.
                raise PermanentError(
                    f"{key} exists but claims to end at {end!r}, before its own first record "
                    f"{first.sequence}: not an object of this chain; move it aside"
                )
            self._metrics.add("ObjectsAdopted", 1, dataset=target.dataset)
            if int(end) > landed_through(landed, target, self._stage):
                landed[chain] = end
            pending = [line for line in pending if line.position > int(end)]
