"""The fault proxy is transparent when no fault is set: S3 bytes, HEAD metadata, JSON calls."""

from __future__ import annotations

from tests.conftest import lake_settings
from tributary.aws import AwsClients
from tributary.batch import decode_ndjson_gz, encode_ndjson_gz
from tributary.bootstrap import bootstrap
from tributary.raw_writer import RawObject
from tributary.s3_writer import S3RawWriter
from tributary_stack.faultproxy import FaultProxy
from tributary_stack.moto import MotoServer

KEY = "raw/x/year=2026/month=01/day=01/hour=00/a-b.ndjson.gz"


async def test_proxy_passes_gzip_objects_and_head_metadata_through(moto: MotoServer) -> None:
    with FaultProxy(moto.endpoint) as proxy:
        lake = lake_settings(moto.endpoint)
        await bootstrap(lake, shards=1)
        async with AwsClients(lake.model_copy(update={"aws_endpoint_url": proxy.endpoint})) as c:
            s3 = await c.s3()
            writer = S3RawWriter(s3, lake.lake_bucket)
            body = encode_ndjson_gz([b'{"a":1}'])
            await writer.put(RawObject(KEY, body, 1, "1", "1"))
            info = await writer.head(KEY)
            assert info is not None
            assert (info.size, info.metadata["records"]) == (len(body), "1")
            got = await (await s3.get_object(Bucket=lake.lake_bucket, Key=KEY))["Body"].read()
            assert decode_ndjson_gz(got) == [b'{"a":1}']
            kinesis = await c.kinesis()
            assert (await kinesis.list_shards(StreamName=lake.stream_name))["Shards"]
    assert proxy.calls["s3."] == 3  # put, head, get (S3 calls carry no operation name)
    assert proxy.calls["kinesis.ListShards"] == 1
