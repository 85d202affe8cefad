"""One contract, every implementation: S3RawWriter (over the wire, moto), MemoryRawWriter, and
FileRawWriter with metadata in xattrs and in sidecar files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tributary.aws import AwsClients
from tributary.batch import decode_ndjson_gz, encode_ndjson_gz
from tributary.errors import PermanentError, SinkUnavailableError
from tributary.file_writer import FileRawWriter
from tributary.raw_writer import RawObject, RawWriter, WriteOutcome
from tributary.s3_writer import S3RawWriter
from tributary.settings import AwsSettings
from tributary.testing import MemoryRawWriter
from tributary_stack.moto import free_port


def raw_object(
    key: str = "raw/posts/year=2026/month=01/day=01/hour=00/api-b1.ndjson.gz",
    lines: tuple[bytes, ...] = (b'{"a":1}', b'{"a":2}'),
) -> RawObject:
    return RawObject(
        key, encode_ndjson_gz(list(lines)), len(lines), "s-1", "s-2", {"writer": "test"}
    )


@pytest.fixture(params=["s3", "memory", "file", "file-sidecar"])
async def writer(
    request: pytest.FixtureRequest, lake: AwsSettings, tmp_path: Path
) -> AsyncIterator[RawWriter]:
    if request.param == "memory":
        yield MemoryRawWriter()
        return
    if request.param.startswith("file"):
        yield FileRawWriter(tmp_path, xattrs=request.param == "file")
        return
    async with AwsClients(lake) as clients:
        yield S3RawWriter(await clients.s3(), lake.lake_bucket)


async def test_create_only_write_and_head(writer: RawWriter) -> None:
    obj = raw_object()
    assert await writer.head(obj.key) is None
    assert await writer.put(obj) is WriteOutcome.WRITTEN
    info = await writer.head(obj.key)
    assert info is not None
    assert info.size == len(obj.body)
    assert info.metadata["records"] == "2"
    assert (info.metadata["first"], info.metadata["last"]) == ("s-1", "s-2")
    assert info.metadata["writer"] == "test"


async def test_second_write_of_a_key_is_already_exists_and_keeps_the_first(
    writer: RawWriter, lake: AwsSettings, clients: AwsClients
) -> None:
    first = raw_object()
    second = raw_object(lines=(b'{"other":true}',))
    assert await writer.put(first) is WriteOutcome.WRITTEN
    assert await writer.put(second) is WriteOutcome.ALREADY_EXISTS
    info = await writer.head(first.key)
    assert info is not None
    assert info.metadata["records"] == "2"
    if isinstance(writer, S3RawWriter):  # the bytes in S3 are the first write's
        s3 = await clients.s3()
        body = await (await s3.get_object(Bucket=lake.lake_bucket, Key=first.key))["Body"].read()
        assert decode_ndjson_gz(body) == [b'{"a":1}', b'{"a":2}']


async def test_ping(writer: RawWriter) -> None:
    await writer.ping()


async def test_missing_bucket_is_permanent(lake: AwsSettings, clients: AwsClients) -> None:
    writer = S3RawWriter(await clients.s3(), "no-such-bucket-here")
    with pytest.raises(PermanentError, match="check LAKE_BUCKET"):
        await writer.put(raw_object())


async def test_unreachable_store_is_transient() -> None:
    dead = AwsSettings.model_validate(
        {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": 1}
    )
    async with AwsClients(dead) as clients:
        writer = S3RawWriter(await clients.s3(), "lake")
        with pytest.raises(SinkUnavailableError, match="retry later"):
            await writer.put(raw_object())
        with pytest.raises(SinkUnavailableError):
            await writer.ping()


async def test_memory_writer_fault_injection() -> None:
    writer = MemoryRawWriter()
    writer.fail_next(1)
    with pytest.raises(SinkUnavailableError):
        await writer.put(raw_object())
    assert await writer.put(raw_object()) is WriteOutcome.WRITTEN


async def test_keys_and_get(writer: RawWriter) -> None:
    for name in ("b", "a", "c"):
        await writer.put(
            raw_object(key=f"raw/posts/year=2026/month=01/day=01/hour=00/x-{name}.ndjson.gz")
        )
    await writer.put(raw_object(key="raw/events/year=2026/month=01/day=01/hour=00/x-a.ndjson.gz"))
    keys = await writer.keys("raw/posts/")
    assert [k.rsplit("-", 1)[1] for k in keys] == ["a.ndjson.gz", "b.ndjson.gz", "c.ndjson.gz"]
    assert decode_ndjson_gz(await writer.get(keys[0])) == [b'{"a":1}', b'{"a":2}']


async def test_missing_objects_are_none_on_head_and_permanent_on_get(writer: RawWriter) -> None:
    key = "quarantine/posts/year=2026/month=01/day=01/hour=00/x-missing.ndjson.gz"
    assert await writer.head(key) is None
    with pytest.raises(PermanentError):
        await writer.get(key)
    assert await writer.keys("quarantine/posts/") == []
