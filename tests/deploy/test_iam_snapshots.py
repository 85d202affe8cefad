"""Least privilege for snapshot publishing on the S3 staging path Glue uses, enforced: the curate
command line runs under the access key of an IAM user holding exactly CurateJobRole's policy
(lake.yml, rendered for this test's resources) against moto with IAM enforcement on, with
CURATE_STAGING=s3 (each run's output is uploaded to s3://<lake>/_staging/curate/<table>/<run id>/,
published from there, and the staging cleaned up). Run 1 curates posts, users, orders and items:
the dataset tables, a derived join (posts_with_users), a child table (orders_lines) and the
current-state tables go through staging, and are read back through `query`. Runs 2 and 3 add
item versions with CURATE_SNAPSHOT_RETAIN_S=0, so the third expires items_current's first
snapshot: the pointer and claim under _state/curate/, the snapshot files' PutObject, Glue's
CreateTable/UpdateTable and the DeleteObjects on curated/*/snapshot-* all run under the role.
Every recorded call is checked against the full policy by the IAM simulator; the snapshot and
staging grants that tests/deploy/unused_grants.json lists as unused by test_iam_enforced's
events-only run must be used here; the expiry's deletes against the policy without its
ExpireSnapshots statement are denied (the grant is needed, not decoration). A canary: moto
refuses the curate key a PutObject under raw/ (enforcement is on).

What this does not prove: locally Spark reads its inputs from a local copy and writes a local
folder that the staging code uploads; on Glue, Spark reads s3:// and writes the staging prefix
itself. The listing, publishing and cleanup of the staged objects are the production code.

moto authorizes a multi-object delete (POST ?delete) against the bucket ARN first and then
checks each key against bucket policies only (moto s3/responses.py `_bucket_response_post`),
where AWS checks s3:DeleteObject per key. So the policy moto enforces also grants DeleteObject
on the bucket ARN; the per-key decision for deletes is the simulator's only, on the full rendered
policy."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from copy import deepcopy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import REPO, lake_settings
from tests.curate.lake import envelope, land
from tests.deploy.iam_actions import Authorization, authorizations
from tests.deploy.policies import ACCOUNT, REGION, Names, as_moto_enforces, role_policy
from tests.deploy.test_iam_enforced import (
    DATABASE,
    FREE_REQUESTS,
    UNUSED,
    admin_client,
    iam_user,
    simulate,
    unused_grants,
)
from tributary.aws import AwsClients
from tributary.bootstrap import bootstrap
from tributary.dataset import DatasetRegistry
from tributary.s3_writer import S3RawWriter
from tributary.version import canonical_instant, versioned_id
from tributary_curate.bookmark import S3BookmarkStore
from tributary_stack.faultproxy import FaultProxy
from tributary_stack.moto import MotoProcess

SNAPSHOT_GRANTS = (
    "s3:DeleteObject on arn:aws:s3:::{bucket}/curated/*/snapshot-*",
    "s3:PutObject on arn:aws:s3:::{bucket}/curated/*",
    "s3:PutObject on arn:aws:s3:::{bucket}/_state/curate/*",
    f"glue:UpdateTable on arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}/*",
    f"glue:CreateTable on arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}/*",
    "s3:PutObject on arn:aws:s3:::{bucket}/_staging/curate/*",
    "s3:GetObject on arn:aws:s3:::{bucket}/_staging/curate/*",
    "s3:DeleteObject on arn:aws:s3:::{bucket}/_staging/curate/*",
    "s3:ListBucket on arn:aws:s3:::{bucket} prefix _staging/curate/*",
)
# The lines of unused_grants.json (unused by the events-only run) this test uses, exactly.
USED_HERE = (
    f"glue:UpdateTable on arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
    f"glue:UpdateTable on arn:aws:glue:{REGION}:{ACCOUNT}:database/{DATABASE}",
    f"glue:UpdateTable on arn:aws:glue:{REGION}:{ACCOUNT}:table/{DATABASE}/*",
    "s3:DeleteObject on arn:aws:s3:::<lake bucket>/_staging/curate/*",
    "s3:DeleteObject on arn:aws:s3:::<lake bucket>/curated/*/snapshot-*",
    "s3:GetObject on arn:aws:s3:::<lake bucket>/_staging/curate/*",
    "s3:GetObject on arn:aws:s3:::<lake bucket>/curated/*",
    "s3:ListBucket on arn:aws:s3:::<lake bucket> prefix _staging/curate/*",
    "s3:PutObject on arn:aws:s3:::<lake bucket>/_staging/curate/*",
)


@pytest.fixture
def enforcing_moto(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(FREE_REQUESTS))
    moto = MotoProcess().start()
    try:
        yield moto
    finally:
        moto.stop()


def without_statement(policy: dict[str, Any], sid: str) -> dict[str, Any]:
    out = deepcopy(policy)
    out["Statement"] = [s for s in out["Statement"] if s.get("Sid") != sid]
    assert len(out["Statement"]) == len(policy["Statement"]) - 1, f"no statement {sid}"
    return out


def moto_deletes(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy moto enforces, with s3:DeleteObject also on the bucket ARN (module docstring:
    moto's multi-object delete checks the bucket, not each key)."""
    out = deepcopy(policy)
    for statement in out["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if "s3:DeleteObject" in actions:
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            bucket = resources[0].split("/", 1)[0]
            statement["Resource"] = [*resources, bucket]
    return out


def version(n: int) -> str:
    return f"2026-03-01T0{n}:00:00Z"


def post(i: int) -> dict[str, Any]:
    return {"id": i, "userId": 2, "title": f"t{i}", "body": "b"}


def order(i: int, lines: Any) -> bytes:
    data = {"id": i, "userId": 1, "placed_at": "2026-03-01T09:00:00Z", "status": "paid"}
    return envelope("orders", str(i), {**data, "lines": lines})


def ann() -> bytes:
    data: dict[str, Any] = {
        "updated_at": "2026-03-01T00:00:00Z", "id": 2, "name": "Ann", "username": "ann",
        "email": "u2@example.test", "address": {"city": "C", "zipcode": "1", "geo": {
            "lat": "1.5", "lng": "2.5"}}, "company": {"name": "Co", "catchPhrase": "x", "bs": "y"},
    }  # fmt: skip
    return envelope("users", versioned_id("2", canonical_instant("2026-03-01T00:00:00Z")), data)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_snapshot_publishing_and_expiry_run_under_the_curate_role(
    enforcing_moto: MotoProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = lake_settings(enforcing_moto.endpoint).model_copy(update={"glue_database": DATABASE})
    names = Names(
        lake.lake_bucket, lake.stream_name, lake.lease_table, lake.state_table,
        f"items-{lake.state_table}", lake.fleet_table,
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
    policy = role_policy(
        REPO / "copilot" / "environments" / "addons" / "lake.yml", "CurateJobRole", names, DATABASE
    )
    keys = iam_user(iam, "curate", moto_deletes(as_moto_enforces(policy)))
    registry = DatasetRegistry.from_file(REPO / "config" / "datasets.yaml")
    asyncio.run(bootstrap(lake, 1, {f"{DATABASE}-{d}-curated": d for d in registry}))

    async def land_version(n: int) -> None:
        data = {"id": 7, "name": f"v{n}", "price": 1.5, "updated_at": version(n)}
        line = envelope("items", versioned_id("7", canonical_instant(version(n))), data)
        async with AwsClients(lake) as clients:
            writer = S3RawWriter(await clients.s3(), lake.lake_bucket)
            await land(writer, "items", datetime(2026, 3, 1, n, tzinfo=UTC), f"i{n}", [line])
            if n == 1:  # the first run also curates a join, a child table and users_current
                hour = datetime(2026, 3, 1, 1, tzinfo=UTC)
                await land(writer, "posts", hour, "p", [envelope("posts", "1", post(1))])
                await land(writer, "users", hour, "u", [ann()])
                line_a = {"sku": "A", "qty": 2, "price": 1.25}
                orders = [order(1, [line_a, None]), order(2, []), order(3, None)]
                await land(writer, "orders", hour, "o", orders)

    async def staged() -> list[str]:
        async with AwsClients(lake) as clients:
            return await S3RawWriter(await clients.s3(), lake.lake_bucket).keys("_staging/")

    async def pointer() -> dict[str, Any]:
        async with AwsClients(lake) as clients:
            mark = await S3BookmarkStore(await clients.s3(), lake.lake_bucket).get("items_current")
            return dict(mark.last_run)

    async def folders() -> set[str]:
        async with AwsClients(lake) as clients:
            writer = S3RawWriter(await clients.s3(), lake.lake_bucket)
            return {k.split("/")[2] for k in await writer.keys("curated/items_current/")}

    proxy = FaultProxy(enforcing_moto.endpoint, record=True).start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base |= {
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": proxy.endpoint,
        "LAKE_BUCKET": names.bucket, "STREAM_NAME": names.stream, "LEASE_TABLE": names.lease_table,
        "STATE_TABLE": names.state_table, "GLUE_DATABASE": lake.glue_database,
        "DATASETS_CONFIG": str(REPO / "config" / "datasets.yaml"), "LOG_LEVEL": "INFO",
        "CURATE_WORK_DIR": str(tmp_path / "curate"), "CURATE_SNAPSHOT_RETAIN_S": "0",
        "CURATE_STAGING": "s3", "CURATE_QUERY_CACHE": str(tmp_path / "cache"),
    }  # fmt: skip

    def curate(credentials: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tributary_curate", *args],
            env=base | credentials, capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip

    def query(table: str, *columns: str) -> list[str]:
        joined = ", ".join(f"coalesce(cast({c} as varchar), '-')" for c in columns)
        sql = f"select concat_ws('|', {joined}) from {table} order by 1"
        done = curate(admin | {"AWS_ENDPOINT_URL": enforcing_moto.endpoint}, "query", sql)
        assert done.returncode == 0, done.stderr[-4000:]
        return [line.strip() for line in done.stdout.splitlines()[2:]]

    curate_s3 = boto3.client("s3", endpoint_url=enforcing_moto.endpoint, region_name=REGION,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    with pytest.raises(ClientError, match="AccessDenied"):  # canary: enforcement is on
        curate_s3.put_object(Bucket=names.bucket, Key="raw/canary", Body=b"x")
    try:
        ids = []
        for n in (1, 2, 3):
            asyncio.run(land_version(n))
            datasets = ("posts", "users", "orders", "items") if n == 1 else ("items",)
            done = curate(keys, "run", *[x for d in datasets for x in ("--dataset", d)])
            assert done.returncode == 0, done.stdout + done.stderr[-4000:]
            ids.append(asyncio.run(pointer())["snapshot"]["id"])
            assert asyncio.run(staged()) == [], "staging is cleaned up after publishing"
        # The third run expired the first snapshot (kept: the pointer's and Glue's previous).
        assert asyncio.run(folders()) == {ids[1], ids[2]}
        recorded = list(proxy.recorded or [])
    finally:
        proxy.stop()

    staged_tables = {
        unquote(c.path).split("/")[4]
        for c in recorded
        if c.service == "s3" and c.method == "PUT" and "/_staging/curate/" in unquote(c.path)
    }
    # Each dataset run and each snapshot table went through S3 staging (the child table
    # orders_lines is staged with its parent's run, under orders).
    tables = {"posts", "users", "orders", "items", "posts_with_users", "items_current"}
    assert tables | {"users_current"} <= staged_tables, staged_tables
    assert query("posts_with_users", "id", "user_name") == ["1|Ann"]
    assert query("orders_lines", "_id", "sku") == ["1#0|A"]
    assert query("items_current", "id", "name") == ["7|v3"]
    assert query("users_current", "id", "name") == ["2|Ann"]

    calls = [c for c in recorded if c.access_key == keys["AWS_ACCESS_KEY_ID"]]
    assert calls
    used: set[Authorization] = set()
    for call in calls:
        used |= set(authorizations(call, names.stream))
    requests = [
        {"principal": f"arn:aws:iam::{ACCOUNT}:user/curate", "policy": policy,
         "action": u.action, "resource": u.resource, "context": dict(u.context)}
        for u in sorted(used, key=repr)
    ]  # fmt: skip
    decisions = simulate(requests)
    denied = [
        f"{r['action']} {r['resource']} {r['context']}: {d}"
        for r, d in zip(requests, decisions, strict=True)
        if d["decision"] != "Allowed"
    ]
    assert not denied, "calls CurateJobRole does not allow:\n" + "\n".join(denied)
    # The same calls under the policy without ExpireSnapshots: the expiry's deletes are denied.
    bare = without_statement(policy, "ExpireSnapshots")
    expiry = [
        r for r in requests if r["action"] == "s3:DeleteObject" and "/snapshot-" in r["resource"]
    ]
    assert expiry, "the third run expired no snapshot"
    verdicts = simulate([{**r, "policy": bare} for r in expiry])
    assert all(v["decision"] != "Allowed" for v in verdicts), verdicts
    unused = unused_grants(policy, used)
    needed = [g.format(bucket=names.bucket) for g in SNAPSHOT_GRANTS]
    still_unused = [g for g in needed if g in unused]
    assert not still_unused, f"snapshot publishing did not use: {json.dumps(still_unused)}"
    # The events-only run's unused list (unused_grants.json): the lines used here, exactly
    # (the snapshot, staging and snapshot-input reads; if this changes, update USED_HERE).
    listed = json.loads(UNUSED.read_text())["curate"]
    here = sorted(g for g in listed if g.replace("<lake bucket>", names.bucket) not in unused)
    print("unused_grants.json curate lines used by snapshot publishing:", json.dumps(here))
    assert here == sorted(USED_HERE), here
