"""Least privilege, enforced: the API, a stream consumer and the importer run as real processes,
each under the access key of an IAM user holding exactly its addon's task policy (rendered with
this test's account, region and resource names), against moto with IAM enforcement on
(INITIAL_NO_AUTH_ACTION_COUNT). moto authorizes actions for every service and resources for S3;
every call the services made is recorded at the fault proxy and evaluated against the full
rendered policy (resources and conditions, e.g. ListBucket's s3:prefix) with the
@cloud-copilot/iam-simulate policy simulator. A call the policy does not allow fails the test;
the grants no call used must be exactly those checked in (unused_grants.json). A canary proves
enforcement is on: calls outside a policy are refused by moto and denied by the simulator."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import REPO, fake_vendor_api, lake_settings
from tests.deploy.iam_actions import Authorization, authorizations
from tests.deploy.policies import (
    ACCOUNT,
    APP,
    ENV,
    REGION,
    Names,
    as_moto_enforces,
    role_policy,
    task_policy,
)
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary_stack.faultproxy import FaultProxy, RecordedCall
from tributary_stack.inspect import read_lines, read_parquet, wait_checkpointed
from tributary_stack.moto import MotoProcess, free_port
from tributary_stack.process import ManagedProcess

SIMULATOR = REPO / "tools" / "iam-simulate"
# Grants no call of the run uses, each with its reason in README ("What each deploy check
# covers"): checked in, so a grant that becomes unused (or used) fails the test until the list
# is updated on purpose.
UNUSED = Path(__file__).with_name("unused_grants.json")
SERVICES = ("api", "stream-consumer", "importer")
# The curate job's role (lake.yml), exercised by the curate command line: the same job code
# Glue runs, with Spark local (the Glue crawler role has no code of ours to run).
CURATE = "curate"
PRINCIPALS = (*SERVICES, CURATE)
DATABASE = f"{APP}_{ENV}"  # lake.yml's database name; the role's crawler ARNs follow it
FREE_REQUESTS = 3  # CreateUser, PutUserPolicy, CreateAccessKey of the admin user


@pytest.fixture
def enforcing_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoProcess]:
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(FREE_REQUESTS))
    moto = MotoProcess().start()
    try:
        yield moto
    finally:
        moto.stop()


def admin_client(service: str, endpoint: str) -> Any:
    """A client with the admin user's keys from the environment. A fresh session each time:
    boto3's default session keeps the credentials it resolved first (an earlier test's)."""
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=REGION)


def iam_user(iam: Any, name: str, policy: dict[str, Any]) -> dict[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="task", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def stream_tips(kinesis: Any, stream: str) -> dict[str, str]:
    """The last sequence number on each shard (not-JSON poison included)."""
    tips = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        if records:
            tips[shard["ShardId"]] = records[-1]["SequenceNumber"]
    return tips


def rewind_leases(table: str, endpoint: str) -> None:
    db = admin_client("dynamodb", endpoint)
    for item in db.scan(TableName=table)["Items"]:
        db.update_item(
            TableName=table,
            Key={"leaseKey": item["leaseKey"]},
            UpdateExpression="SET checkpoint = :start",
            ExpressionAttributeValues={":start": {"S": "TRIM_HORIZON"}},
        )


def simulate(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert (SIMULATOR / "node_modules").exists(), "`make install` runs npm ci in tools/iam-simulate"
    result = subprocess.run(
        ["node", str(SIMULATOR / "simulate.mjs")],
        input=json.dumps({"account": ACCOUNT, "requests": requests}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: list[dict[str, Any]] = json.loads(result.stdout)
    return answer


def unused_grants(policy: dict[str, Any], used: set[Authorization]) -> list[str]:
    """Each (action, resource pattern, s3:prefix pattern) of the policy no recorded call used."""
    out = []
    for statement in policy["Statement"]:
        actions = listed(statement["Action"])
        resources = listed(statement["Resource"])
        conditions = statement.get("Condition", {})
        prefixes = [
            p for values in conditions.values() for p in listed(values.get("s3:prefix", []))
        ] or [None]
        for action in actions:
            for pattern in resources:
                for prefix in prefixes:
                    if not any(
                        u.action == action
                        and fnmatch.fnmatchcase(u.resource, pattern)
                        and (
                            prefix is None
                            or fnmatch.fnmatchcase(dict(u.context).get("s3:prefix", ""), prefix)
                        )
                        for u in used
                    ):
                        out.append(
                            f"{action} on {pattern}" + (f" prefix {prefix}" if prefix else "")
                        )
    return sorted(out)


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def canaries(names: Names) -> list[tuple[str, str, str, dict[str, str]]]:
    """Requests each principal's policy must deny: the simulator's half of the canary."""
    bucket = f"arn:aws:s3:::{names.bucket}"
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
    return [
        ("api", "s3:ListBucket", bucket, {}),  # HeadBucket, or a listing of the whole bucket
        ("api", "s3:ListBucket", bucket, {"s3:prefix": "curated/"}),
        ("api", "s3:GetObject", f"{bucket}/curated/events/x.parquet", {}),
        ("stream-consumer", "dynamodb:BatchWriteItem", f"{table}/{names.state_table}", {}),
        (
            "stream-consumer",
            "kinesis:GetRecords",
            f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/other",
            {},
        ),
        ("importer", "s3:PutObject", f"{bucket}/curated/posts/x", {}),
        (CURATE, "glue:GetDatabase", f"arn:aws:glue:{REGION}:{ACCOUNT}:database/other", {}),
    ]


def assert_moto_enforces(endpoint: str, keys: dict[str, str], names: Names) -> None:
    """moto's half of the canary: calls outside the API's policy are refused (AccessDenied),
    one for an action it lacks, one for an S3 resource outside its prefixes."""
    session = boto3.session.Session(
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    db = session.client("dynamodb", endpoint_url=endpoint)
    with pytest.raises(ClientError) as denied:
        db.scan(TableName=names.lease_table)
    assert "not authorized to perform: dynamodb:Scan" in str(denied.value), denied.value
    s3 = session.client("s3", endpoint_url=endpoint)
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=names.bucket, Key="curated/events/canary", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied", denied.value
    # The same key may write where its policy allows: the refusals above are the policy's.
    s3.put_object(Bucket=names.bucket, Key="quarantine/canary", Body=b"x")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_services_run_under_exactly_their_task_policies(
    enforcing_moto: MotoProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = lake_settings(enforcing_moto.endpoint).model_copy(update={"glue_database": DATABASE})
    items_table = f"items-{lake.state_table}"  # lake.yml's ItemsTable (StreamItems=true)
    names = Names(
        lake.lake_bucket, lake.stream_name, lake.lease_table, lake.state_table, items_table,
        lake.fleet_table,
    )  # fmt: skip
    iam = boto3.client(
        "iam", endpoint_url=enforcing_moto.endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    admin = iam_user(iam, "admin", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})  # fmt: skip
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name, value in admin.items():
        monkeypatch.setenv(name, value)
    iam = admin_client("iam", enforcing_moto.endpoint)
    policies = {
        s: task_policy(REPO / "copilot" / s / "addons" / "policy.yml", s, names) for s in SERVICES
    }
    lake_yml = REPO / "copilot" / "environments" / "addons" / "lake.yml"
    policies[CURATE] = role_policy(lake_yml, "CurateJobRole", names, DATABASE)
    keys = {s: iam_user(iam, s, as_moto_enforces(policies[s])) for s in PRINCIPALS}
    by_key = {keys[s]["AWS_ACCESS_KEY_ID"]: s for s in PRINCIPALS}
    registry = DatasetRegistry.from_file(REPO / "config" / "datasets.yaml")
    asyncio.run(bootstrap(lake, 2, {f"{DATABASE}-{d}-curated": d for d in registry}))
    admin_client("dynamodb", enforcing_moto.endpoint).create_table(
        TableName=items_table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )

    proxy = FaultProxy(enforcing_moto.endpoint, record=True).start()
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base |= {
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": proxy.endpoint,
        "LAKE_BUCKET": names.bucket, "STREAM_NAME": names.stream, "LEASE_TABLE": names.lease_table,
        "STATE_TABLE": names.state_table, "GLUE_DATABASE": lake.glue_database,
        "DATASETS_CONFIG": str(REPO / "config" / "datasets.yaml"), "LOG_LEVEL": "INFO",
        "ENVELOPE_SIGNING_KEY": "iam-test-envelope-signing-key-0123456789",
    }  # fmt: skip
    api_env = base | keys["api"] | {
        "API_SINK": "kinesis", "API_HOST": "127.0.0.1", "API_PORT": str(port),
        "API_KINESIS_AGGREGATE": "true",  # KPL aggregates: ListShards, then PutRecords
        "API_KEYS": json.dumps([{"name": "t", "sha256": hashlib.sha256(b"k").hexdigest()}]),
    }  # fmt: skip
    consumer_env = base | keys["stream-consumer"] | {
        "IDLE_FLUSH_S": "1", "LEASE_FAILOVER_S": "6", "SHARD_SYNC_S": "5", "WORKER_ID": "iam-1",
        # The optional processor (the shipped example): one item per record with a text body.
        "STREAM_PROCESSOR": "tributary_stream.processing:body_length",
        "STREAM_ITEMS_TABLE": items_table,
    }  # fmt: skip
    logs = tmp_path / "services.log"
    with logs.open("w") as out:
        api = ManagedProcess.python_module("api", "tributary_api", [], api_env, out).start()
        consumer = ManagedProcess.python_module(
            "stream-consumer", "tributary_stream", [], consumer_env, out
        ).start()
        try:
            api.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
            url = f"http://127.0.0.1:{port}/v1/datasets/events/records"
            auth = {"Authorization": "Bearer k"}
            good = [{"type": "signup", "n": i, "body": "x" * i} for i in range(100)]
            assert httpx.post(url, json=good, headers=auth, timeout=30).status_code == 202
            mixed = [{"type": "ok"}, {"no_type": 1}]  # the invalid one goes to quarantine/
            keyed = auth | {"Idempotency-Key": "iam-mixed-1"}  # a claim under _idempotency/
            answer = httpx.post(url, json=mixed, headers=keyed, timeout=30)
            assert answer.status_code == 202, answer.text
            # The API's other sink (API_SINK=s3: straight into raw/), same task policy.
            s3_port = free_port()
            s3_api = ManagedProcess.python_module(
                "api-s3", "tributary_api", [],
                api_env | {"API_SINK": "s3", "API_PORT": str(s3_port)}, out,
            ).start()  # fmt: skip
            try:
                s3_api.wait_http(f"http://127.0.0.1:{s3_port}/readyz", timeout=60)
                direct = [{"type": "direct", "n": i} for i in range(10)]
                for _ in range(2):  # a keyed retry: the claim, then the existing object
                    answer = httpx.post(
                        f"http://127.0.0.1:{s3_port}/v1/datasets/events/records",
                        json=direct, headers=auth | {"Idempotency-Key": "iam-direct-1"},
                        timeout=30,
                    )  # fmt: skip
                    assert answer.status_code == 202, answer.text
            finally:
                s3_api.stop()
            # A record no schema accepts, put on the stream directly: the consumer quarantines it.
            kinesis = admin_client("kinesis", enforcing_moto.endpoint)
            kinesis.put_record(StreamName=names.stream, Data=b"not json", PartitionKey="x")
            tips = stream_tips(kinesis, names.stream)
            asyncio.run(wait_checkpointed(lake, tips, within=120))
            # Replay: a new worker from TRIM_HORIZON meets every object already written (412),
            # and reads the existing raw and quarantine objects' metadata (HeadObject).
            consumer.stop()
            rewind_leases(names.lease_table, enforcing_moto.endpoint)
            consumer = ManagedProcess.python_module(
                "stream-consumer",
                "tributary_stream",
                [],
                consumer_env | {"WORKER_ID": "iam-2"},
                out,
            ).start()
            asyncio.run(wait_checkpointed(lake, tips, within=120))
            with fake_vendor_api(tmp_path) as vendor:
                importer_env = base | keys["importer"] | {
                    "SOURCES_CONFIG": str(REPO / "config" / "sources.yaml"), "FAKEAPI_URL": vendor,
                    "VENDOR_API_KEY": "iam-test-vendor-key",
                    "VENDOR_OAUTH_SECRET": "fake-oauth-secret",
                }  # fmt: skip
                for _ in range(2):  # a second run resumes from the saved state
                    run = subprocess.run(
                        [sys.executable, "-m", "tributary_importer", "run", "--once"],
                        env=importer_env, capture_output=True, text=True, timeout=300, check=False,
                    )  # fmt: skip
                    assert run.returncode == 0, run.stdout + run.stderr
            curate_env = base | keys[CURATE] | {"CURATE_WORK_DIR": str(tmp_path / "curate")}
            curate = subprocess.run(
                [sys.executable, "-m", "tributary_curate", "run", "--dataset", "events"],
                env=curate_env, capture_output=True, text=True, timeout=400, check=False,
            )  # fmt: skip
            assert curate.returncode == 0, curate.stdout + curate.stderr[-4000:]
        finally:
            consumer.stop()
            api.stop()
            proxy.stop()
    text = logs.read_text()
    assert "AccessDenied" not in text, text[-4000:]
    raw = asyncio.run(read_lines(lake, "raw/events/"))
    imported = sum(len(lines) for key, lines in raw.items() if "/importer-" in key)
    assert imported > 0, "the importer's windowed events source landed nothing"
    ingested = sum(len(lines) for key, lines in raw.items() if "/importer-" not in key)
    assert ingested == 111  # 101 through Kinesis, 10 direct (the rest: events_windowed)
    assert asyncio.run(read_lines(lake, "raw/posts/")), "the importer landed nothing"
    assert asyncio.run(read_lines(lake, "quarantine/")), "nothing was quarantined"
    items = admin_client("dynamodb", enforcing_moto.endpoint).scan(TableName=items_table)
    assert items["Count"] == 100, "the processor's items (BatchWriteItem) are all in the table"
    curated = asyncio.run(read_parquet(lake, "curated/events/")).values()
    assert sum(t.num_rows for t in curated) == 111 + imported, "curate curated every event"

    assert proxy.recorded is not None
    calls = [c for c in proxy.recorded if c.access_key in by_key]
    assert {by_key[c.access_key] for c in calls} == set(PRINCIPALS)
    assert not [c for c in proxy.recorded if c.access_key not in by_key], "unsigned or unknown"
    requests: list[dict[str, Any]] = []
    used: dict[str, set[Authorization]] = {s: set() for s in PRINCIPALS}
    distinct: dict[tuple[str, Authorization], RecordedCall] = {}
    for call in calls:
        service = by_key[call.access_key]
        for check in authorizations(call, names.stream):
            used[service].add(check)
            distinct[(service, check)] = call
    for service, check in distinct:
        requests.append({
            "principal": f"arn:aws:iam::{ACCOUNT}:user/{service}", "policy": policies[service],
            "action": check.action, "resource": check.resource, "context": dict(check.context),
        })  # fmt: skip
    canary = [
        {"principal": f"arn:aws:iam::{ACCOUNT}:user/{who}", "policy": policies[who],
         "action": action, "resource": resource, "context": context}
        for who, action, resource, context in canaries(names)
    ]  # fmt: skip
    decisions = simulate(requests + canary)
    denied = [
        f"{r['principal']} {r['action']} {r['resource']} {r['context']}: {d}"
        for r, d in zip(requests, decisions, strict=False)
        if d["decision"] != "Allowed"
    ]
    assert not denied, "calls the task policy does not allow:\n" + "\n".join(denied)
    allowed = [
        f"{r['principal']} {r['action']} {r['resource']} {r['context']}"
        for r, d in zip(canary, decisions[len(requests) :], strict=True)
        if d["decision"] == "Allowed"
    ]
    assert not allowed, "the simulator allowed calls outside the policies:\n" + "\n".join(allowed)
    assert_moto_enforces(enforcing_moto.endpoint, keys["api"], names)
    placeholders = {  # the fleet table's name starts with the lease table's: replaced first
        names.fleet_table: "<fleet table>",
        names.bucket: "<lake bucket>", names.lease_table: "<lease table>",
        items_table: "<items table>", names.state_table: "<state table>",
        names.stream: "<stream>",
    }  # fmt: skip
    report = {}
    for service in PRINCIPALS:
        unused = []
        for grant in unused_grants(policies[service], used[service]):
            for name, placeholder in placeholders.items():  # the run's random names
                grant = grant.replace(name, placeholder)
            unused.append(grant)
        report[service] = sorted(unused)
    print(f"IAM: {len(calls)} calls, {len(requests)} distinct checks, all allowed")
    expected = json.loads(UNUSED.read_text())
    assert report == expected, (
        f"the grants no call used changed: update {UNUSED.relative_to(REPO)} (and README) on "
        f"purpose, or drop the grant.\nnow: {json.dumps(report, indent=2)}"
    )
