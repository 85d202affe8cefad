"""The task policies of the workload addons, rendered as IAM would see them: CloudFormation's
Ref / Sub / ImportValue resolved with a test's account, region and resource names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.test_static import load_cfn

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
APP, ENV = "tributary", "test"


@dataclass(frozen=True, slots=True)
class Names:
    bucket: str
    stream: str
    lease_table: str
    state_table: str
    items_table: str = "none"  # lake.yml exports "none" without StreamItems=true
    fleet_table: str = "none"

    def exports(self) -> dict[str, str]:
        """The environment addon's exports (lake.yml Outputs) for these resources."""
        table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
        values = {
            "LakeBucketArn": f"arn:aws:s3:::{self.bucket}",
            "StreamArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{self.stream}",
            "LeaseTableArn": f"{table}/{self.lease_table}",
            "StateTableArn": f"{table}/{self.state_table}",
            "FleetTableArn": f"{table}/{self.fleet_table}",
            "ItemsTableArn": f"{table}/{self.items_table}",
        }
        return {f"{APP}-{ENV}-{name}": value for name, value in values.items()}


def _resolve(node: Any, scope: dict[str, str], exports: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, scope, exports) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), = node.items()  # fmt: skip
        name = key.removeprefix("Fn::")
        if name == "Ref":
            return scope[value]
        if name == "GetAtt":
            return scope[value if isinstance(value, str) else ".".join(value)]
        if name == "ImportValue":
            return exports[_resolve(value, scope, exports)]
        if name == "Sub":
            text, extra = (value, {}) if isinstance(value, str) else value
            local = {**scope, **{k: _resolve(v, scope, exports) for k, v in extra.items()}}
            return re.sub(r"\$\{([\w:.]+)\}", lambda m: local[m[1]], text)
    return {key: _resolve(value, scope, exports) for key, value in node.items()}


def task_policy(addon: Path, service: str, names: Names) -> dict[str, Any]:
    """The policy document of `addon`'s ManagedPolicy, as deployed for `service`."""
    scope = {
        "App": APP,
        "Env": ENV,
        "Name": service,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
    }
    resources = load_cfn(addon)["Resources"]
    (policy,) = [r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    document: dict[str, Any] = _resolve(
        policy["Properties"]["PolicyDocument"], scope, names.exports()
    )
    return document


def role_policy(template: Path, role: str, names: Names, database: str) -> dict[str, Any]:
    """The (single) inline policy of `role` in the environment addon, for these resources."""
    scope = {
        "App": APP,
        "Env": ENV,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "LakeBucket": names.bucket,
        "LakeBucket.Arn": f"arn:aws:s3:::{names.bucket}",
        "GlueDatabase": database,
    }
    (policy,) = load_cfn(template)["Resources"][role]["Properties"]["Policies"]
    document: dict[str, Any] = _resolve(policy["PolicyDocument"], scope, names.exports())
    return document


def as_moto_enforces(document: dict[str, Any]) -> dict[str, Any]:
    """What moto's IAM enforcement can check: actions for every service, resources for S3 only
    (it authorizes DynamoDB and Kinesis against "*"), no conditions (it evaluates none of the
    S3 keys, and a failed condition there denies). The simulator checks the full document."""
    out = []
    for statement in document["Statement"]:
        s = {k: v for k, v in statement.items() if k not in ("Condition", "Sid")}
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if not all(a.startswith("s3:") for a in actions):
            s["Resource"] = "*"
        out.append(s)
    return {"Version": document["Version"], "Statement": out}
