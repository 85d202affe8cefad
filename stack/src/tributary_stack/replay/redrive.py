"""`redrive --dataset D`: quarantined records that the current registry accepts go back to raw.

Quarantine objects are never changed or deleted. Each one has manifests of its own under
`_state/redrive/<quarantine key>/<n>.json`, written create-only before anything reaches raw:
manifest n names the quarantine lines it recovers, the envelopes made from them, and the one raw
object that holds them, `raw/D/<hour of the run>/redrive-<digest of the quarantine key>.<n>`.
A line named by any manifest is never redriven again. So:

- a second run finds every recovered line already in a manifest and adds nothing;
- a run killed after a manifest and before its raw object: the rerun writes that raw object
  from the manifest (the same bytes; create-only, so a 412 means it is there), in the hour of
  the rerun when that is later (a retarget marker names the new key; see `Redriver._complete`);
- two runs at once race for manifest n; the loser reads it and moves on to n + 1;
- a registry fixed again later recovers more lines of the same object: manifest n + 1.

The raw object lands in the hour of the run, so curate lists it as new (its watermark only
trails the newest hours); the envelope inside keeps the record's original id and received time,
and curate's anti-join drops it if that id is curated already. A line the current registry
accepts whose id curate already holds (where it would place it: see `CuratedIds`) is counted
as "already curated", neither recovered nor written: a reprocess under the fixed registry
curated it from its raw line, which still sits in the old quarantine object.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from tributary.batch import decode_ndjson_gz, encode_ndjson_gz
from tributary.clock import Clock, iso_utc
from tributary.errors import PermanentError
from tributary.layout import Zone, object_key, parse_key
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary_stack.replay.curated import CuratedIds, partition_of
from tributary_stack.replay.recheck import (
    Origin,
    Rechecker,
    Verdict,
    origin_of,
    reason_of,
    reasons_text,
)
from tributary_stream.route import UNROUTED

UNREADABLE = "quarantine object not readable (not gzip NDJSON)"
MANIFEST_PREFIX = "_state/redrive/"
META_REGISTRY = "registry"  # raw object metadata: the registry digest a redrive checked under
WRITER = "redrive"


@dataclass(frozen=True, slots=True)
class RedriveRequest:
    """One `redrive` command."""

    dataset: str
    since: datetime | None = None
    until: datetime | None = None
    reason: str | None = None  # substring of a reason, case-insensitive
    by: str = ""
    run_id: str = ""
    dry_run: bool = False


@dataclass
class Tally:
    """Per reason: recovered now, staying, already redriven earlier."""

    recovered: Counter[str] = field(default_factory=Counter)
    stayed: Counter[str] = field(default_factory=Counter)
    earlier: Counter[str] = field(default_factory=Counter)
    curated: Counter[str] = field(default_factory=Counter)  # valid now and curated already
    objects: int = 0
    raw_objects: int = 0  # raw objects written (or completed) by this run
    why: dict[str, str] = field(default_factory=dict)  # reason → why one such line stays

    def counts(self) -> dict[str, Any]:
        """The figures history keeps."""
        return {
            "objects": self.objects,
            "recovered": sum(self.recovered.values()),
            "stayed": sum(self.stayed.values()),
            "earlier": sum(self.earlier.values()),
            "already_curated": sum(self.curated.values()),
            "raw_objects": self.raw_objects,
            "by_reason": {
                r: {"recovered": self.recovered[r], "stayed": self.stayed[r]}
                for r in sorted(set(self.recovered) | set(self.stayed))
            },
        }


def manifest_folder(quarantine_key: str) -> str:
    """Where the manifests of one quarantine object live."""
    return f"{MANIFEST_PREFIX}{quarantine_key}/"


class Redriver:
    """Redrives one dataset's quarantine through a create-only store of the lake bucket."""

    def __init__(
        self,
        lake: RawWriter,
        rechecker: Rechecker,
        clock: Clock,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._lake = lake
        self._check = rechecker
        self._clock = clock
        self._progress = progress
        self._curated = CuratedIds(lake)

    async def run(self, request: RedriveRequest) -> Tally:
        """Every quarantine object of the dataset (and unrouted ones naming it), in key order."""
        tally = Tally()
        prefixes = [f"{Zone.QUARANTINE}/{request.dataset}/"]
        if request.dataset != UNROUTED:
            prefixes.append(f"{Zone.QUARANTINE}/{UNROUTED}/")
        for prefix in prefixes:
            for key in await self._lake.keys(prefix):
                parsed = parse_key(key)
                if parsed is None or not _in_window(parsed.hour, request):
                    continue
                await self._object(key, parsed.name, request, tally)
        return tally

    async def _object(self, key: str, name: str, request: RedriveRequest, tally: Tally) -> None:
        manifests = await self._manifests(key)
        done = {i for m in manifests for i in m["lines"]}
        if not request.dry_run:
            for manifest in manifests:  # a run killed between manifest and raw object
                tally.raw_objects += await self._complete(manifest)
        try:
            lines = decode_ndjson_gz(await self._lake.get(key))
        except (OSError, EOFError, zlib.error) as exc:  # one bad object never stops the run
            tally.stayed[UNREADABLE] += 1
            tally.why.setdefault(UNREADABLE, f"{key}: {exc}"[:200])
            tally.objects += 1
            return
        chosen: list[tuple[int, bytes, str]] = []
        counted = False
        stamps: dict[str, str] = {}  # redrive raw key → the registry digest it was written under
        for index, line in enumerate(lines):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict) or not _selected(doc, request):
                continue
            reason = reason_of(doc)
            origin = origin_of(name, doc)
            verdict = self._check.check(origin, doc)
            if origin is Origin.CURATE and verdict.envelope is not None:
                verdict = await self._curate_again(doc, verdict, request.dataset, stamps)
            if verdict.dataset != request.dataset:
                if doc.get("dataset") == request.dataset:
                    tally.stayed[reason] += 1
                    tally.why.setdefault(reason, verdict.why)
                continue  # an unrouted record of another dataset
            counted = True
            if index in done:
                tally.earlier[reason] += 1
            elif verdict.envelope is None:
                tally.stayed[reason] += 1
                tally.why.setdefault(reason, verdict.why)
            elif await self._already_curated(verdict.envelope, request.dataset):
                tally.curated[reason] += 1  # a reprocess (or a retry) curated it since
            else:
                chosen.append((index, verdict.envelope, reason))
        tally.objects += counted
        if not chosen:
            return
        if request.dry_run:
            tally.recovered.update(reason for _, _, reason in chosen)
            return
        written = await self._redrive(key, len(manifests), chosen, request)
        tally.recovered.update(reason for index, _, reason in chosen if index in written)
        tally.earlier.update(reason for index, _, reason in chosen if index not in written)
        tally.raw_objects += 1 if written else 0

    async def _already_curated(self, envelope: bytes, name: str) -> bool:
        """Whether the record's id is curated where curate would place it (the day of its
        `partition_by` and the dedupe look-back days before, as curate's anti-join looks):
        a record curated since it was quarantined (a reprocess under the fixed registry
        curated its raw line) is neither recovered again nor written to raw again."""
        dataset = self._check.dataset(name)
        doc = orjson.loads(envelope)
        day = partition_of(dataset, doc) if dataset is not None else None
        if dataset is None or day is None:
            return False
        return str(doc.get("id")) in await self._curated.seen_from(dataset, day)

    async def _curate_again(
        self, doc: dict[str, Any], verdict: Verdict, dataset: str, stamps: dict[str, str]
    ) -> Verdict:
        """A line curate quarantined from a redrive's own raw object, under the registry that
        redrive ran with, failed a check of curate's the validator does not make (a cast, a
        partition value): it stays until the registry changes (else every redrive would
        write it to raw again, and curate quarantine it again)."""
        raw_key = str(doc.get("raw_key") or "")
        parsed = parse_key(raw_key)
        if parsed is None or not parsed.name.startswith(f"{WRITER}-"):
            return verdict
        if raw_key not in stamps:
            info = await self._lake.head(raw_key)
            stamps[raw_key] = info.metadata.get(META_REGISTRY, "") if info else ""
        if stamps[raw_key] and stamps[raw_key] == self._check.digest(dataset):
            why = "curate rejected it again after a redrive under this registry: fix the registry"
            return Verdict(None, verdict.dataset, why)
        return verdict

    async def _redrive(
        self,
        key: str,
        n: int,
        chosen: list[tuple[int, bytes, str]],
        request: RedriveRequest,
    ) -> set[int]:
        """Write manifest n (or the first free one after it), then its raw object; the lines
        this run redrove (none when a concurrent run had them in its manifest)."""
        while True:
            digest = hashlib.sha256(key.encode()).hexdigest()[:24]
            raw_key = object_key(
                Zone.RAW, request.dataset, self._clock.now(), WRITER, f"{digest}.{n}"
            )
            manifest = {
                "quarantine_key": key,
                "n": n,
                "raw_key": raw_key,
                "lines": [index for index, _, _ in chosen],
                "envelopes": [line.decode() for _, line, _ in chosen],
                "run_id": request.run_id,
                "registry": self._check.digest(request.dataset),
                "by": request.by,
                "at": iso_utc(self._clock.now()),
            }
            body = orjson.dumps(manifest)
            outcome = await self._lake.put(
                RawObject(
                    f"{manifest_folder(key)}{n:06d}.json",
                    body,
                    len(chosen),
                    str(chosen[0][0]),
                    str(chosen[-1][0]),
                    content_type="application/json",
                    content_encoding="identity",
                )
            )
            if outcome is WriteOutcome.WRITTEN:
                await self._complete(manifest)
                self._progress(f"{key}: {len(chosen)} recovered → {raw_key}")
                return {index for index, _, _ in chosen}
            taken = orjson.loads(await self._lake.get(f"{manifest_folder(key)}{n:06d}.json"))
            chosen = [c for c in chosen if c[0] not in set(taken["lines"])]
            if not chosen:
                return set()
            n += 1

    async def _complete(self, manifest: dict[str, Any]) -> int:
        """Make sure the manifest's raw object exists; 1 when this call wrote it.

        Curate never lists an hour behind its watermark, so a raw object still missing is
        written in the hour of *this* run: when that is not the hour its manifest (or the
        latest retarget marker) named, a create-only marker `<n>.target-<k>.json` names the
        new key first (two reruns at once agree on it), and the old key is never written."""
        folder = manifest_folder(manifest["quarantine_key"])
        n = int(manifest["n"])
        target, k = str(manifest["raw_key"]), 0
        for name in await self._lake.keys(f"{folder}{n:06d}.target-"):
            doc = orjson.loads(await self._lake.get(name))
            if int(doc["k"]) > k:
                target, k = str(doc["raw_key"]), int(doc["k"])
        if await self._lake.head(target) is not None:
            return 0
        old = parse_key(target)
        if old is None:
            raise PermanentError(f"{folder}{n:06d}.json names {target!r}, not a raw object key")
        digest = hashlib.sha256(str(manifest["quarantine_key"]).encode()).hexdigest()[:24]
        now = object_key(Zone.RAW, old.dataset, self._clock.now(), WRITER, f"{digest}.{n}")
        if now != target:
            marker = f"{folder}{n:06d}.target-{k + 1:03d}.json"
            body = orjson.dumps(
                {
                    "quarantine_key": manifest["quarantine_key"],
                    "n": n,
                    "k": k + 1,
                    "raw_key": now,
                    "was": target,
                    "at": iso_utc(self._clock.now()),
                }
            )
            put = await self._lake.put(
                RawObject(
                    marker,
                    body,
                    1,
                    str(n),
                    str(n),
                    content_type="application/json",
                    content_encoding="identity",
                )
            )
            target = (
                now
                if put is WriteOutcome.WRITTEN
                else str(orjson.loads(await self._lake.get(marker))["raw_key"])
            )
        envelopes = [line.encode() for line in manifest["envelopes"]]
        outcome = await self._lake.put(
            RawObject(
                target,
                encode_ndjson_gz(envelopes),
                len(envelopes),
                str(manifest["lines"][0]),
                str(manifest["lines"][-1]),
                {
                    "quarantine": manifest["quarantine_key"][-1000:],
                    META_REGISTRY: str(manifest.get("registry", "")),
                },
            )
        )
        return 1 if outcome is WriteOutcome.WRITTEN else 0

    async def _manifests(self, key: str) -> list[dict[str, Any]]:
        found = []
        for name in await self._lake.keys(manifest_folder(key)):
            if ".target-" in name:
                continue  # a retarget marker (see _complete), not a manifest
            doc = orjson.loads(await self._lake.get(name))
            if not isinstance(doc, dict) or doc.get("quarantine_key") != key:
                raise PermanentError(f"{name} is not a redrive manifest of {key}; move it aside")
            found.append(doc)
        return found


def _in_window(hour: datetime, request: RedriveRequest) -> bool:
    """Whether an object's hour can hold lines inside --since/--until (a coarse first cut)."""
    if request.until is not None and hour > request.until:
        return False
    return not (request.since is not None and hour.timestamp() + 3600 <= request.since.timestamp())


def _selected(doc: dict[str, Any], request: RedriveRequest) -> bool:
    if request.reason and request.reason.lower() not in reasons_text(doc):
        return False
    if request.since is None and request.until is None:
        return True
    received = doc.get("received_at")
    try:
        at = datetime.fromisoformat(received) if isinstance(received, str) else None
    except ValueError:
        at = None
    if at is None:
        return False
    if request.since is not None and at < request.since:
        return False
    return not (request.until is not None and at >= request.until)


__all__ = ["Origin", "RedriveRequest", "Redriver", "Tally"]
