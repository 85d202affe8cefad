"""async-kinesis consuming a stream the way its README suggests, landing batches in S3.

Used by bench/stream.py. Checkpoints persist in a JSON file (fsync + rename) through the
library's own checkpointer interface, so a restart resumes where the library says it was.
`python bench/ak_consumer.py STREAM BUCKET PREFIX CHECKPOINT_FILE IDLE_EXIT_S`
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import uuid
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


async def main() -> None:
    stream, bucket, prefix, checkpoint_file, idle_exit = sys.argv[1:6]
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    session = get_session()
    async with session.create_client("s3", endpoint_url=endpoint) as s3:
        batch: list[bytes] = []

        async def flush() -> None:
            if batch:
                body = gzip.compress(b"".join(line + b"\n" for line in batch))
                await s3.put_object(
                    Bucket=bucket, Key=f"{prefix}{uuid.uuid4().hex}.ndjson.gz", Body=body
                )
                batch.clear()

        async with Consumer(
            stream,
            endpoint_url=endpoint,
            region_name="us-east-1",
            checkpointer=FileCheckPointer(Path(checkpoint_file)),
            iterator_type="TRIM_HORIZON",
            sleep_time_no_records=0.2,
            idle_timeout=float(idle_exit),
            use_list_shards=True,
        ) as consumer:
            async for item in consumer:  # stops after `idle_exit` seconds without records
                batch.append(item if isinstance(item, bytes) else json.dumps(item).encode())
                if len(batch) >= 500:
                    await flush()
        await flush()


if __name__ == "__main__":
    asyncio.run(main())
