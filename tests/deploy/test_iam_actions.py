"""The recorded-call → IAM mapping the enforced run relies on, over the wire: real botocore
requests through the recording fault proxy to moto, each mapped from botocore's service model.
Operations it does not know fail instead of being guessed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.deploy.iam_actions import (
    ACCOUNT,
    REGION,
    Authorization,
    UnknownOperationError,
    authorizations,
)
from tributary_stack.faultproxy import FaultProxy, RecordedCall
from tributary_stack.moto import MotoProcess

BUCKET = "lake-map"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
GLUE = f"arn:aws:glue:{REGION}:{ACCOUNT}"


@pytest.fixture(scope="module")
def proxy() -> Iterator[FaultProxy]:
    moto = MotoProcess().start()
    try:
        with FaultProxy(moto.endpoint, record=True) as proxy:
            yield proxy
    finally:
        moto.stop()


def client(proxy: FaultProxy, service: str) -> Any:
    return boto3.session.Session().client(
        service, endpoint_url=proxy.endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def last(proxy: FaultProxy, make: Any) -> RecordedCall:
    assert proxy.recorded is not None
    before = len(proxy.recorded)
    make()
    calls = proxy.recorded[before:]
    assert len(calls) == 1, calls
    return calls[0]


def checks(call: RecordedCall) -> list[Authorization]:
    return authorizations(call, "the-stream")


def test_s3_operations_map_to_their_iam_actions(proxy: FaultProxy) -> None:
    s3 = client(proxy, "s3")
    s3.create_bucket(Bucket=BUCKET)
    obj = f"arn:aws:s3:::{BUCKET}"
    put = last(proxy, lambda: s3.put_object(Bucket=BUCKET, Key="raw/a b", Body=b"x"))
    assert checks(put) == [Authorization("s3:PutObject", f"{obj}/raw/a b")]
    head = last(proxy, lambda: s3.head_object(Bucket=BUCKET, Key="raw/a b"))
    assert checks(head) == [Authorization("s3:GetObject", f"{obj}/raw/a b")]
    copy = last(
        proxy,
        lambda: s3.copy_object(
            Bucket=BUCKET, Key="curated/c", CopySource={"Bucket": BUCKET, "Key": "raw/a b"}
        ),
    )
    assert checks(copy) == [
        Authorization("s3:PutObject", f"{obj}/curated/c"),
        Authorization("s3:GetObject", f"{obj}/raw/a b"),
    ]
    delete = last(proxy, lambda: s3.delete_object(Bucket=BUCKET, Key="curated/c"))
    assert checks(delete) == [Authorization("s3:DeleteObject", f"{obj}/curated/c")]
    batch = last(
        proxy,
        lambda: s3.delete_objects(
            Bucket=BUCKET, Delete={"Objects": [{"Key": "raw/a b"}, {"Key": "_staging/x&y"}]}
        ),
    )
    assert checks(batch) == [
        Authorization("s3:DeleteObject", f"{obj}/raw/a b"),
        Authorization("s3:DeleteObject", f"{obj}/_staging/x&y"),
    ]
    listing = last(proxy, lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="raw/", MaxKeys=1))
    assert checks(listing) == [Authorization("s3:ListBucket", obj, (("s3:prefix", "raw/"),))]
    whole = last(proxy, lambda: s3.head_bucket(Bucket=BUCKET))
    assert checks(whole) == [Authorization("s3:ListBucket", obj)]  # no s3:prefix at all
    policy = last(proxy, lambda: s3.get_bucket_location(Bucket=BUCKET))
    with pytest.raises(UnknownOperationError, match="GetBucketLocation"):
        checks(policy)


def test_dynamodb_index_and_batch_resources(proxy: FaultProxy) -> None:
    db = client(proxy, "dynamodb")
    db.create_table(
        TableName="t",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    query = last(
        proxy,
        lambda: db.query(
            TableName="t", IndexName="by-g", KeyConditionExpression="g = :g",
            ExpressionAttributeValues={":g": {"S": "x"}},
        ),
    )  # fmt: skip
    assert checks(query) == [Authorization("dynamodb:Query", f"{TABLE}/t/index/by-g")]
    batch = last(
        proxy,
        lambda: db.batch_write_item(
            RequestItems={"t": [{"PutRequest": {"Item": {"pk": {"S": "1"}, "g": {"S": "x"}}}}]}
        ),
    )
    assert checks(batch) == [Authorization("dynamodb:BatchWriteItem", f"{TABLE}/t")]
    transact = last(
        proxy,
        lambda: db.transact_write_items(
            TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "2"}}}}]
        ),
    )
    with pytest.raises(UnknownOperationError, match="TransactWriteItems"):
        checks(transact)


def test_glue_get_database_maps_to_catalog_and_database(proxy: FaultProxy) -> None:
    glue = client(proxy, "glue")
    glue.create_database(DatabaseInput={"Name": "db"})
    get = last(proxy, lambda: glue.get_database(Name="db"))
    assert checks(get) == [
        Authorization("glue:GetDatabase", f"{GLUE}:catalog"),
        Authorization("glue:GetDatabase", f"{GLUE}:database/db"),
    ]
    jobs = last(proxy, lambda: glue.get_jobs())
    with pytest.raises(UnknownOperationError, match="GetJobs"):
        checks(jobs)
