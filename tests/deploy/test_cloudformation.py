"""The addons deployed into moto's CloudFormation, as Copilot deploys them: the environment
addon first (parameters App, Env), then each workload addon (App, Env, Name) importing its
exports. Every export a manifest reads with `from_cfn` must exist with a value.

moto creates the bucket, stream, tables, roles and managed policies, but not the Glue resources
(Database, Crawler, Job, Trigger, SecurityConfiguration: blank CREATE_COMPLETE, so their exports
come back empty) nor the bucket policy, and it drops some properties (public access block,
lifecycle, point-in-time recovery): those are checked only by cfn-lint and checkov."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.conftest import REPO
from tests.deploy.test_static import manifest
from tributary_stack.moto import MotoServer

# moto warns for each resource type it does not implement (the list above).
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
COPILOT = REPO / "copilot"
APP = "tributary"
WORKLOADS = ("api", "stream-consumer", "importer")
# Outputs of resources moto does not implement: checked by cfn-lint only.
NOT_IN_MOTO = {"GlueDatabaseName", "CurateJobName"}


@pytest.fixture(scope="module")
def cloudformation() -> Iterator[Any]:
    moto = MotoServer().start()
    try:
        yield boto3.client("cloudformation", endpoint_url=moto.endpoint, region_name="us-east-1")
    finally:
        moto.stop()


def deploy(cfn: Any, name: str, template: Path, **parameters: str) -> dict[str, str]:
    cfn.create_stack(
        StackName=name,
        TemplateBody=template.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}


def manifest_imports() -> set[str]:
    """Export names (after ${App}-${Env}-) every manifest reads with from_cfn, commented-out
    optional ones included."""
    names = set()
    for workload in WORKLOADS:
        text = (COPILOT / workload / "manifest.yml").read_text()
        names |= set(
            re.findall(
                r"from_cfn: \$\{COPILOT_APPLICATION_NAME\}-\$\{COPILOT_ENVIRONMENT_NAME\}-(\w+)",
                text,
            )
        )
    return names


@pytest.mark.parametrize("env", ["test", "prod"])
def test_addons_deploy_and_export_what_the_manifests_read(cloudformation: Any, env: str) -> None:
    outputs = deploy(
        cloudformation, f"{APP}-{env}-addons", COPILOT / "environments" / "addons" / "lake.yml",
        App=APP, Env=env,
    )  # fmt: skip
    exports = {
        e["Name"]: e.get("Value", "")
        for page in cloudformation.get_paginator("list_exports").paginate()
        for e in page["Exports"]
    }
    read = manifest_imports()
    assert read >= {"LakeBucketName", "StreamName", "LeaseTableName", "StateTableName"}
    for name in read:
        value = exports.get(f"{APP}-{env}-{name}")
        assert value, f"{name}: no export with a value"
    for name, value in outputs.items():
        if name not in NOT_IN_MOTO:
            assert value, f"{name} has no value"
    for workload in WORKLOADS:
        policy = deploy(
            cloudformation, f"{APP}-{env}-{workload}-addons",
            COPILOT / workload / "addons" / "policy.yml", App=APP, Env=env, Name=workload,
        )  # fmt: skip
        assert policy["TaskPolicyArn"].startswith("arn:aws:iam::"), policy
    assert manifest("stream-consumer")["name"] == "stream-consumer"


def test_re_creating_an_environment_does_not_collide_with_what_it_retained(
    cloudformation: Any,
) -> None:
    template = COPILOT / "environments" / "addons" / "lake.yml"
    first = deploy(cloudformation, "again-1", template, App="again", Env="test")
    cloudformation.delete_stack(StackName="again-1")
    s3 = boto3.client("s3", endpoint_url=cloudformation.meta.endpoint_url, region_name="us-east-1")
    assert first["LakeBucketName"] in {b["Name"] for b in s3.list_buckets()["Buckets"]}, "retained"
    second = deploy(cloudformation, "again-2", template, App="again", Env="test")
    assert second["LakeBucketName"] != first["LakeBucketName"]
    assert second["StreamName"] != first["StreamName"]


def test_items_table_behind_a_parameter(cloudformation: Any) -> None:
    template = COPILOT / "environments" / "addons" / "lake.yml"
    off = deploy(cloudformation, "items-off", template, App="itemsoff", Env="test")
    assert off["ItemsTableName"] == "none"
    # No table can match the grant: table names allow only [A-Za-z0-9_.-].
    name = off["ItemsTableArn"].partition(":table/")[2]
    assert not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", name), off["ItemsTableArn"]
    on = deploy(cloudformation, "items-on", template, App="itemson", Env="test", StreamItems="true")
    db = boto3.client(
        "dynamodb", endpoint_url=cloudformation.meta.endpoint_url, region_name="us-east-1"
    )
    table = db.describe_table(TableName=on["ItemsTableName"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert on["ItemsTableArn"] == table["TableArn"]


def test_redrive_manifests_expire_with_the_quarantine() -> None:
    """Redrive manifests hold copies of the envelopes they recovered (iss19): the lake bucket
    expires them with the quarantine (moto's CloudFormation does not apply lifecycle rules, so
    the template is read)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, tag, node: f"{tag} {node.value}")
    template = yaml.load(
        (COPILOT / "environments" / "addons" / "lake.yml").read_text(), Loader=Loader
    )
    rules = template["Resources"]["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    days = {r.get("Prefix"): r.get("ExpirationInDays") for r in rules if r["Status"] == "Enabled"}
    assert days["_state/redrive/"] == days["quarantine/"] == "Ref QuarantineRetentionDays"
