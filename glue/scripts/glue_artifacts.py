"""`make glue-artifacts`: build the curate job's artifacts and upload them to s3://<lake>/_deploy/.

1. Wheels of `tributary` and `tributary-curate` (uv build).
2. Resolve them as pip on Glue 5.0 would: `pip install --dry-run --report` into a venv holding
   Glue 5.0's own modules at Glue's versions (boto3/botocore 1.34.131, aiobotocore 2.13.1, s3fs
   2024.6.1, pandas 2.2.2, pyarrow 17.0.0; Spark is Glue's, not a pip package). The build stops
   if the resolution would replace any of those or install pyspark or duckdb.
3. A zip of wheels (Glue 5.0's `--additional-python-modules` form for production: everything in
   one download, no package index needed at run time): our two wheels, the manylinux x86_64
   cp311 wheels of what the resolution adds, and a requirements.txt naming them.
4. Upload `_deploy/glue/curate_job.py`, `_deploy/glue/tributary-curate-modules.zip` and
   `_deploy/config/datasets.yaml` (LAKE_BUCKET, the usual AWS variables); then, with
   `--start-trigger NAME`, start the schedule (the template creates it stopped, so it never
   fires before the artifacts exist).

Run: `LAKE_BUCKET=… make glue-artifacts [TRIGGER=<app>-<env>-curate-schedule]`, or
`python glue/scripts/glue_artifacts.py resolve` to print the resolution only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / ".local" / "glue-artifacts"
VENV = REPO / ".local" / "glue5-venv"
# Glue 5.0's own Python modules that a job must not replace (AWS's list of provided modules).
GLUE_PROVIDED = {
    "boto3": "1.34.131",
    "botocore": "1.34.131",
    "aiobotocore": "2.13.1",
    "s3fs": "2024.6.1",
    "pandas": "2.2.2",
    "pyarrow": "17.0.0",
}
FORBIDDEN = ("pyspark", "duckdb")  # Glue's Spark is not a pip package; DuckDB never runs there
PLATFORM = ["--platform", "manylinux2014_x86_64", "--python-version", "3.11"]
MODULES_ZIP = "tributary-curate-modules.zip"


def canonical(name: str) -> str:
    """PEP 503 name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def uv() -> list[str]:
    """The uv command (UV from the Makefile, else `python3 -m uv`)."""
    return shlex.split(os.environ.get("UV", "python3 -m uv"))


def build_wheels(out: Path) -> list[Path]:
    """`uv build --wheel` of both packages into `out/dist`."""
    dist = out / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for package in ("tributary", "tributary-curate"):
        subprocess.run(
            [*uv(), "build", "--package", package, "--wheel", "--out-dir", str(dist), "-q"],
            cwd=REPO,
            check=True,
        )
    return sorted(dist.glob("*.whl"))


def glue_venv(path: Path = VENV) -> Path:
    """A venv holding Glue 5.0's modules at Glue's versions (made once, then reused)."""
    python = path / "bin" / "python"
    stamp = path / "glue-modules.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == GLUE_PROVIDED:
        return python
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(
        [sys.executable if _has_venv_pip() else "python3", "-m", "venv", str(path)], check=True
    )
    pins = [f"{name}=={version}" for name, version in GLUE_PROVIDED.items()]
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--only-binary=:all:", *pins], check=True
    )
    stamp.write_text(json.dumps(GLUE_PROVIDED))
    return python


def _has_venv_pip() -> bool:
    return (
        subprocess.run(
            [sys.executable, "-m", "ensurepip", "--version"], capture_output=True, check=False
        ).returncode
        == 0
    )


def resolve(python: Path, wheels: list[Path]) -> list[dict[str, Any]]:
    """What `pip install <wheels>` would install next to Glue's modules: name, version, url."""
    answer = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--only-binary=:all:",
            "--report",
            "-",
            *map(str, wheels),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(answer.stdout)
    return [
        {
            "name": canonical(item["metadata"]["name"]),
            "version": item["metadata"]["version"],
            "url": item["download_info"]["url"],
            "ours": bool(item.get("is_direct")),
        }
        for item in report["install"]
    ]


def violations(installs: list[dict[str, Any]]) -> list[str]:
    """Why this resolution must not ship (empty when it may)."""
    problems = []
    for item in installs:
        if item["name"] in GLUE_PROVIDED:
            problems.append(
                f"{item['name']} {item['version']} would replace Glue's "
                f"{GLUE_PROVIDED[item['name']]}"
            )
        if item["name"] in FORBIDDEN:
            problems.append(f"{item['name']} {item['version']} would be installed on Glue")
    return problems


def bundle(installs: list[dict[str, Any]], wheels: list[Path], out: Path) -> Path:
    """The zip of wheels: ours, the third-party ones for Glue's platform, requirements.txt."""
    house = out / "wheelhouse"
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    for wheel in wheels:
        shutil.copy(wheel, house)
    others = [f"{i['name']}=={i['version']}" for i in installs if not i["ours"]]
    if others:
        subprocess.run(
            [
                str(glue_venv()),
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                *PLATFORM,
                "--dest",
                str(house),
                *others,
            ],
            check=True,
        )
    names = sorted(p.name for p in house.glob("*.whl"))
    (house / "requirements.txt").write_text("".join(f"{n}\n" for n in names))
    target = out / MODULES_ZIP
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in [*names, "requirements.txt"]:
            archive.write(house / name, name)
    return target


async def upload(modules: Path, trigger: str | None) -> list[str]:
    """Upload the script, the zip and the registry; start the trigger if named."""
    from tributary.aws import AwsClients
    from tributary.settings import CommonSettings

    settings = CommonSettings()
    files = {
        "_deploy/glue/curate_job.py": REPO / "glue" / "scripts" / "curate_job.py",
        f"_deploy/glue/{MODULES_ZIP}": modules,
        "_deploy/config/datasets.yaml": REPO / settings.datasets_config,
    }
    async with AwsClients(settings) as clients:
        s3 = await clients.s3()
        for key, path in files.items():
            await s3.put_object(Bucket=settings.lake_bucket, Key=key, Body=path.read_bytes())
            print(f"uploaded s3://{settings.lake_bucket}/{key}")
        if trigger:
            glue = await clients.glue()
            await glue.start_trigger(Name=trigger)
            print(f"started trigger {trigger}")
    return list(files)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", choices=["all", "resolve"], default="all")
    parser.add_argument("--start-trigger", help="start this Glue trigger after uploading")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    wheels = build_wheels(args.out)
    installs = resolve(glue_venv(), wheels)
    if args.command == "resolve":
        print(json.dumps({"wheels": [w.name for w in wheels], "install": installs}, indent=2))
        return
    problems = violations(installs)
    if problems:
        sys.exit("the job's wheels must not change Glue 5.0's modules:\n  " + "\n  ".join(problems))
    modules = bundle(installs, wheels, args.out)
    print(f"built {modules} ({', '.join(i['name'] + ' ' + i['version'] for i in installs)})")
    asyncio.run(upload(modules, args.start_trigger))


if __name__ == "__main__":
    main()
