"""Importer state per source: the cursor, the ids at its boundary, and the run in progress.

Written with a conditional version check, so two runs of one source cannot both advance it.
The stored item stays far below DynamoDB's 400 KB item limit whatever the look-back holds: a
look-back set (with a child's per-parent cursors and look-backs) larger than
`INLINE_SEEN_BYTES` goes to a state blob (`state_blob`), written before the item that names it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import orjson

from tributary.errors import PermanentError, TributaryError
from tributary_importer.state_blob import BLOB_PREFIX, MemoryStateBlobs, StateBlobs

log = logging.getLogger(__name__)

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB refuses a larger item (names and values, UTF-8)
INLINE_SEEN_BYTES = 32 * 1024  # a larger look-back set is stored as a blob


class StateConflictError(PermanentError):
    """Someone else changed the state since we read it (another run of the same source)."""


class StateBlobMissingError(PermanentError):
    """The state names a look-back blob that is missing or not what was written."""


class StateTooLargeError(PermanentError):
    """The state item would pass DynamoDB's 400 KB item limit; nothing was stored."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run in progress: a rerun after a crash resumes it (same window, same keys)."""

    window: str
    started_at: str
    lower: str | None
    # windowed runs (date windows, parents): the end, the segments done, the last one's key,
    # and the highest cursor value landed so far
    upper: str | None = None
    done: int = 0
    mark: str | None = None
    high: str | None = None
    chain: str | None = None  # a digest of the keys of the segments done, in order
    readback_all: bool = False  # the parents moved: every landed id is read back on resume


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
    # a child resource's cursor and look-back ids per parent key
    parents: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            dict(doc.get("parents", {})),
        )


@dataclass(frozen=True, slots=True)
class StateItem:
    """The stored form of one version: the table item's attributes and the blob it names."""

    pk: str
    version: int
    doc: str
    blob_key: str | None = None
    blob: bytes = b""

    def size(self) -> int:
        """The item's size as DynamoDB documents it: attribute names plus values, strings as
        UTF-8 bytes, a number as 1 byte per two significant digits plus 1 (AWS calls that
        approximate; the version is the only number and a few bytes either way)."""
        digits = len(str(self.version).strip("0")) or 1
        return (
            len("pk")
            + len(self.pk.encode())
            + len("version")
            + (digits + 1) // 2
            + 1
            + len("doc")
            + len(self.doc.encode())
        )


def item_key(source: str) -> str:
    """The state table's hash key for a source."""
    return f"importer#{source}"


class StateCodec:
    """Turns a state into its stored form and back, and keeps its blobs tidy.

    Both stores use it, so the in-memory store holds exactly what the table would.
    """

    def __init__(self, blobs: StateBlobs) -> None:
        self._blobs = blobs

    def encode(self, state: SourceState) -> StateItem:
        """The item that stores `state` as version `state.version + 1`."""
        version = state.version + 1
        doc = state.document()
        seen = orjson.dumps(doc["seen"])
        parents = orjson.dumps(doc["parents"])
        if len(seen) + len(parents) <= INLINE_SEEN_BYTES:
            return StateItem(item_key(state.source), version, orjson.dumps(doc).decode())
        if state.parents:  # a child's per-parent cursors and look-backs go with the ids
            body = orjson.dumps({"seen": doc.pop("seen"), "parents": doc.pop("parents")})
            digest = hashlib.sha256(body).hexdigest()
            key = f"{BLOB_PREFIX}{state.source}/v{version:010d}-{digest[:16]}.json.gz"
            doc["state_blob"] = {"key": key, "parents": len(state.parents), "sha256": digest}
            blob = gzip.compress(body, compresslevel=6, mtime=0)
            return StateItem(item_key(state.source), version, orjson.dumps(doc).decode(), key, blob)
        digest = hashlib.sha256(seen).hexdigest()
        key = f"{BLOB_PREFIX}{state.source}/v{version:010d}-{digest[:16]}.json.gz"
        del doc["seen"]
        doc["seen_blob"] = {"key": key, "ids": len(state.seen), "sha256": digest}
        body = gzip.compress(seen, compresslevel=6, mtime=0)
        return StateItem(item_key(state.source), version, orjson.dumps(doc).decode(), key, body)

    async def write_blob(self, item: StateItem) -> None:
        """Make the item's blob durable (before the item is written)."""
        if item.blob_key is not None:
            await self._blobs.put(item.blob_key, item.blob)

    async def decode(self, source: str, version: int, doc_text: str) -> SourceState:
        """The state a stored item holds (reading its blob)."""
        doc = orjson.loads(doc_text)
        ref = doc.pop("seen_blob", None) or doc.pop("state_blob", None)
        if ref is not None:
            body = await self._blobs.get(ref["key"])
            seen = gzip.decompress(body) if body is not None else None
            if seen is None or hashlib.sha256(seen).hexdigest() != ref["sha256"]:
                raise StateBlobMissingError(
                    f"importer state of {source} names the look-back blob {ref['key']}, which "
                    f"is {'missing' if seen is None else 'not what was written'}; "
                    f"`state reset --source {source}` imports the source from the start"
                )
            if "parents" in ref:  # a state blob: the look-back ids and the parents
                doc.update(orjson.loads(seen))
            else:
                doc["seen"] = orjson.loads(seen)
        return SourceState.from_document(source, version, doc)

    async def prune(self, source: str, version: int, keep: str | None) -> None:
        """Drop the blobs of versions up to `version` other than `keep` (older versions', and
        those of attempts that lost the conditional write or crashed before it).

        Best effort: it runs after the item is written, so the write has happened whatever
        pruning does; a failure is logged and the next put prunes what is left."""
        try:
            for key in await self._blobs.keys(f"{BLOB_PREFIX}{source}/"):
                name = key.rsplit("/", 1)[-1]
                if key != keep and name[1:11].isdigit() and int(name[1:11]) <= version:
                    await self._blobs.delete(key)
        except TributaryError as exc:
            log.warning(
                "importer state of %s stored as version %d; pruning its old look-back blobs "
                "failed (the next write retries): %s",
                source,
                version,
                exc,
            )


def too_large(item: StateItem, source: str) -> StateTooLargeError:
    """The error both stores raise for an item over the limit."""
    return StateTooLargeError(
        f"state of {source} is {item.size()} bytes, over DynamoDB's {MAX_ITEM_BYTES}-byte item "
        "limit; nothing was stored (is a cursor value or a run summary unusually large?)"
    )


class StateStore(Protocol):
    """Per-source state with optimistic concurrency."""

    async def get(self, source: str) -> SourceState:
        """The stored state, or a fresh one (version 0). Raises `PermanentError` when the
        stored state names a look-back blob that is missing or damaged."""

    async def put(self, state: SourceState) -> SourceState:
        """Store `state` if the stored version is still `state.version`; returns it with
        version + 1. Raises `StateConflictError` otherwise, and `StateTooLargeError` (nothing
        stored) when the item would pass 400 KB."""

    async def reset(self, source: str) -> SourceState:
        """Forget the cursor, look-back and run in progress (a full re-import follows): a put of
        an empty state at the next version (versions never restart, so a run that read the
        state before the reset cannot write after it). Works when the blob is missing."""


class MemoryStateStore:
    """`StateStore` in a dict, as strict as the table: conditional on the version, and refusing
    items over 400 KB; large look-back sets go to `blobs` as they do on AWS."""

    def __init__(self, blobs: StateBlobs | None = None) -> None:
        self.items: dict[str, tuple[int, str]] = {}  # pk -> (version, doc)
        self.blobs = blobs if blobs is not None else MemoryStateBlobs()
        self._codec = StateCodec(self.blobs)

    async def get(self, source: str) -> SourceState:
        """Stored or fresh."""
        stored = self.items.get(item_key(source))
        if stored is None:
            return SourceState(source)
        try:
            return await self._codec.decode(source, *stored)
        except StateBlobMissingError:
            if self.items.get(item_key(source)) == stored:
                raise
            return await self.get(source)  # a writer moved on (and pruned) while we read

    async def put(self, state: SourceState) -> SourceState:
        """Blob first, then the item, conditional on the version and within the size limit."""
        item = self._codec.encode(state)
        await self._codec.write_blob(item)
        if item.size() > MAX_ITEM_BYTES:
            raise too_large(item, state.source)
        current = self.items.get(item.pk, (0, ""))[0]
        if current != state.version:
            raise StateConflictError(
                f"state of {state.source} changed underneath this run; is another run of it "
                "going on?"
            )
        self.items[item.pk] = (item.version, item.doc)
        await self._codec.prune(state.source, item.version, item.blob_key)
        return replace(state, version=item.version)

    async def reset(self, source: str) -> SourceState:
        """A versioned put of an empty state (keeping the run count), blobs pruned."""
        stored = self.items.get(item_key(source))
        return await self.put(reset_state(source, *stored) if stored else SourceState(source))


def reset_state(source: str, version: int, doc_text: str) -> SourceState:
    """The empty state a reset writes over stored version `version` (the run count kept: run
    windows stay new). Reads the item only, never its blob (which may be what is wrong)."""
    try:
        runs = int(orjson.loads(doc_text).get("runs", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        runs = 0
    return SourceState(source, version, runs=runs)
