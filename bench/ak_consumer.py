"""async-kinesis consuming a stream the way its README suggests, landing batches in S3.

Used by bench/stream.py: in-process for the timed drain (`consume(..., expected=N)` returns once
N records are landed and its consumer and clients are closed, as ours is timed until its worker
is stopped and its clients are closed), as a subprocess for the kill -9 table. Checkpoints
persist in a JSON file (fsync + rename) through the library's own checkpointer interface, so a
restart resumes where the library says it was.

What it is given, as a careful user following its README would write it: object keys are
deterministic — the SHA-256 of the batch's content — so a replayed batch cut the same way
overwrites its own object instead of adding one. The library yields records without their shard
or sequence number (async-kinesis 3.0.1, kinesis/consumer.py:340-342 queues only
`processor.parse(row["Data"])`), from one queue shared by every shard, and checkpoints a page's
last sequence through the checkpointer only when the item after that page's `__CHECKPOINT__`
sentinel is requested (consumer.py:395-397, 1038-1045). A user batch of 500 therefore mixes shards
and does not end where a checkpoint falls, so (shard, checkpointed sequence) cannot name it:
content is the only deterministic key it allows. A replay that cuts its batches elsewhere (it
resumes at the library's checkpoint, not at a batch boundary) still writes those records again
under new keys.
`python bench/ak_consumer.py STREAM BUCKET PREFIX CHECKPOINT_FILE IDLE_EXIT_S`
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

from aiobotocore.session import get_session
from kinesis import Consumer
from kinesis.checkpointers import MemoryCheckPointer


class FileCheckPointer(MemoryCheckPointer):
    """MemoryCheckPointer whose checkpoints survive the process."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="bench")
        self._path = path
        if path.exists():
            for shard, sequence in json.loads(path.read_text()).items():
                self._items[shard] = {"sequence": sequence, "active": False}

    async def checkpoint(self, shard_id: str, sequence: str) -> None:
        await super().checkpoint(shard_id, sequence)
        data = {k: v["sequence"] for k, v in self._items.items()}
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self._path)


def batch_key(prefix: str, lines: list[bytes]) -> str:
    """A deterministic key: the same batch always gets the same one."""
    digest = hashlib.sha256(b"".join(line + b"\n" for line in lines)).hexdigest()
    return f"{prefix}{digest[:32]}.ndjson.gz"


async def consume(
    stream: str,
    bucket: str,
    prefix: str,
    checkpoint_file: Path,
    idle_exit: float,
    *,
    endpoint: str,
    expected: int | None = None,
) -> int:
    """Land the stream in 500-record objects until `idle_exit` seconds pass without records
    (or, with `expected`, until that many records are landed). Returns the records landed."""
    session = get_session()
    landed = 0
    async with session.create_client("s3", endpoint_url=endpoint) as s3:
        batch: list[bytes] = []

        async def flush() -> None:
            nonlocal landed
            if batch:
                body = gzip.compress(b"".join(line + b"\n" for line in batch), mtime=0)
                await s3.put_object(Bucket=bucket, Key=batch_key(prefix, batch), Body=body)
                landed += len(batch)
                batch.clear()

        async with Consumer(
            stream,
            endpoint_url=endpoint,
            region_name="us-east-1",
            checkpointer=FileCheckPointer(checkpoint_file),
            iterator_type="TRIM_HORIZON",
            sleep_time_no_records=0.2,
            idle_timeout=float(idle_exit),
            use_list_shards=True,
        ) as consumer:
            async for item in consumer:  # stops after `idle_exit` seconds without records
                batch.append(item if isinstance(item, bytes) else json.dumps(item).encode())
                if len(batch) >= 500 or (expected is not None and landed + len(batch) >= expected):
                    await flush()
                if expected is not None and landed >= expected:
                    break
        await flush()
    return landed


def main() -> None:
    stream, bucket, prefix, checkpoint_file, idle_exit = sys.argv[1:6]
    asyncio.run(
        consume(
            stream,
            bucket,
            prefix,
            Path(checkpoint_file),
            float(idle_exit),
            endpoint=os.environ["AWS_ENDPOINT_URL"],
        )
    )


if __name__ == "__main__":
    main()
