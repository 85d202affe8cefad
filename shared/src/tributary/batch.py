"""A pure batcher: NDJSON lines in, gzip objects out, cut by record count or bytes."""

from __future__ import annotations

import gzip
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive lines and the input positions (e.g. sequence numbers) of the first and last."""

    lines: tuple[bytes, ...]
    first: str
    last: str
    size: int  # uncompressed bytes, newlines included

    def encode(self, compresslevel: int = 6) -> bytes:
        """Gzip NDJSON. mtime=0 makes the bytes a function of the lines alone."""
        return encode_ndjson_gz(self.lines, compresslevel)


def encode_ndjson_gz(lines: tuple[bytes, ...] | list[bytes], compresslevel: int = 6) -> bytes:
    """Join `lines` with newlines (one after each) and gzip them deterministically."""
    body = b"\n".join(lines) + b"\n" if lines else b""  # one copy of each line, not two
    return gzip.compress(body, compresslevel, mtime=0)


def decode_ndjson_gz(body: bytes) -> list[bytes]:
    """The lines of a gzip NDJSON object, without newlines."""
    return [line for line in gzip.decompress(body).split(b"\n") if line]


class Batcher:
    """Accumulates lines; hands back a `Batch` whenever adding one more would break a limit.

    A line bigger than `max_bytes` on its own becomes a batch of one: limits shape batches,
    they never drop data.
    """

    def __init__(self, max_records: int, max_bytes: int) -> None:
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be positive")
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._lines: list[bytes] = []
        self._first = ""
        self._last = ""
        self._size = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def size(self) -> int:
        """Uncompressed bytes pending."""
        return self._size

    def add(self, line: bytes, position: str) -> Batch | None:
        """Add one line; returns the batch completed by this call, if any.

        The returned batch never includes `line` unless it reached `max_records` exactly.
        """
        done = None
        if self._lines and self._size + len(line) + 1 > self._max_bytes:
            done = self.flush()
        if not self._lines:
            self._first = position
        self._lines.append(line)
        self._last = position
        self._size += len(line) + 1
        if len(self._lines) >= self._max_records:
            if done is not None:  # pragma: no cover - max_records=1 with an oversize line
                raise AssertionError("two batches completed by one line")
            done = self.flush()
        return done

    def flush(self) -> Batch | None:
        """Everything pending as a batch (None when empty)."""
        if not self._lines:
            return None
        batch = Batch(tuple(self._lines), self._first, self._last, self._size)
        self._lines, self._size = [], 0
        return batch
