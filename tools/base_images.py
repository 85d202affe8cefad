#!/usr/bin/env python3
"""Build, without any image registry, the base images the Dockerfiles and docker-compose.yml
start from, under the names they use:

- ``python:3.11-slim``: a Debian bookworm root made by mmdebstrap (minbase + python3.11, venv,
  pip, ca-certificates, passwd for ``useradd``) and ``docker import``, with ``python`` on PATH,
  the host's CA bundle (downloads here pass a TLS-intercepting proxy) and pip allowed to install
  into the system Python, as in the official image;
- ``ghcr.io/astral-sh/uv:<v>``: ``FROM scratch`` with ``/uv`` and ``/uvx`` from the uv wheel;
- ``motoserver/moto:<v>``: that Python image plus ``pip install moto[server]==<v>``, serving on
  port 5000 like the official image.

Versions are read from the Dockerfiles and docker-compose.yml. Each image carries a label with
the hash of its recipe (this file's recipe text, the version, the CA bundle, its base's id):
an image whose label matches is kept, so a second run costs a few ``docker image inspect``.

    sudo python3 tools/base_images.py          # needs a running Docker engine, root, mmdebstrap
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABEL = "org.tributary.recipe"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PYTHON = "python:3.11-slim"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3.11,python3.11-venv,python3-pip,ca-certificates,passwd"
PYTHON_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    "UV_NATIVE_TLS": "1",
}
# Run inside the new root before it is packed (mmdebstrap --customize-hook; $1 is the root).
PYTHON_HOOKS = (
    'ln -sf /usr/bin/python3 "$1/usr/local/bin/python"',
    'ln -sf /usr/bin/python3 "$1/usr/local/bin/python3"',
    f'cp {CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"',
    'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
)
UV_DOCKERFILE = 'FROM scratch\nCOPY uv uvx /\nENTRYPOINT ["/uv"]\n'
MOTO_DOCKERFILE = (
    "FROM {python}\n"
    "RUN pip install --no-cache-dir 'moto[server]=={version}'\n"
    "EXPOSE 5000\n"
    'ENTRYPOINT ["moto_server", "-H", "0.0.0.0", "-p", "5000"]\n'
)


class BuildError(RuntimeError):
    """A base image could not be built; the message says which step failed."""


class CannotBuildHereError(BuildError):
    """This machine lacks a tool the build needs (mmdebstrap): nothing was changed."""


CANNOT_BUILD_HERE = 3  # main()'s exit status for CannotBuildHereError (the compose tier skips)
# Read for the versions: listed, not globbed (a glob walks .local/ and node_modules).
DOCKERFILES = ("services/api/Dockerfile", "services/stream-consumer/Dockerfile",
               "services/importer/Dockerfile", "fakeapi/Dockerfile")  # fmt: skip


def sh(*cmd: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, input=stdin, capture_output=True, cwd=cwd, check=False)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:4])} … failed:\n{result.stderr.decode()[-3000:]}")
    return result.stdout.decode()


def versions() -> tuple[str, str]:
    """The uv and moto versions the repository's Dockerfiles and compose file name."""
    texts = [(REPO / path).read_text() for path in DOCKERFILES]
    uv = {v for t in texts for v in re.findall(r"ghcr\.io/astral-sh/uv:([\w.]+)", t)}
    moto = set(re.findall(r"motoserver/moto:([\w.]+)", (REPO / "docker-compose.yml").read_text()))
    if len(uv) != 1 or len(moto) != 1:
        raise BuildError(f"expected one uv and one moto version, found uv {uv}, moto {moto}")
    return uv.pop(), moto.pop()


def pip() -> str:
    """A Python with pip: this one, or the interpreter a venv (uv's have no pip) was made from."""
    for python in (sys.executable, getattr(sys, "_base_executable", None), "python3"):
        if python and subprocess.run([python, "-m", "pip", "--version"], capture_output=True,
                                     check=False).returncode == 0:  # fmt: skip
            return python
    raise BuildError("no Python with pip found to download the uv wheel")


def recipe_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def current(name: str, recipe: str) -> str | None:
    """The image id to use for `name`, or None to build it: an image of that name we did not
    build (no recipe label: pulled from a registry, or the user's own) is used as it is, never
    overwritten; one we built is kept while its recipe is unchanged."""
    found = subprocess.run(
        ["docker", "image", "inspect", name], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        return None
    info = json.loads(found.stdout)[0]
    labels = (info.get("Config") or {}).get("Labels") or {}
    if LABEL not in labels:
        print(f"{name}: an image not built by this tool exists; using it as it is", flush=True)
        return str(info["Id"])
    return str(info["Id"]) if labels[LABEL] == recipe else None


def image_id(name: str) -> str:
    return sh("docker", "image", "inspect", "--format", "{{.Id}}", name).strip()


def build_python(work: Path) -> str:
    ca = hashlib.sha256(CA_BUNDLE.read_bytes()).hexdigest()
    recipe = recipe_hash(PYTHON, PACKAGES, MIRROR, *PYTHON_HOOKS, json.dumps(PYTHON_ENV), ca)
    if found := current(PYTHON, recipe):
        return found
    if not shutil.which("mmdebstrap"):
        raise CannotBuildHereError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    tarball = work / "root.tar"
    hooks = [f"--customize-hook={hook}" for hook in PYTHON_HOOKS]
    print(f"building {PYTHON} with mmdebstrap (about 90 s)", flush=True)
    sh(
        "mmdebstrap", "--quiet", "--variant=minbase", f"--include={PACKAGES}", "--mode=root",
        *hooks,
        "bookworm", str(tarball), MIRROR,
    )  # fmt: skip
    changes = [f"ENV {k}={v}" for k, v in PYTHON_ENV.items()]
    changes += [f"LABEL {LABEL}={recipe}", 'CMD ["python3"]']
    args = [arg for change in changes for arg in ("--change", change)]
    sh("docker", "import", *args, str(tarball), PYTHON)
    return image_id(PYTHON)


def build_uv(work: Path, version: str) -> str:
    name = f"ghcr.io/astral-sh/uv:{version}"
    recipe = recipe_hash(name, UV_DOCKERFILE)
    if found := current(name, recipe):
        return found
    print(f"building {name} from the uv wheel", flush=True)
    wheels = work / "wheels"
    sh(
        pip(), "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
        "-d", str(wheels), f"uv=={version}",
    )  # fmt: skip
    context = work / "uv"
    context.mkdir()
    (wheel,) = wheels.glob("uv-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for binary in ("uv", "uvx"):
            member = f"uv-{version}.data/scripts/{binary}"
            (context / binary).write_bytes(archive.read(member))
            (context / binary).chmod(0o755)
    (context / "Dockerfile").write_text(UV_DOCKERFILE)
    docker_build(context, name, recipe)
    return image_id(name)


def build_moto(work: Path, version: str, python_id: str) -> str:
    name = f"motoserver/moto:{version}"
    dockerfile = MOTO_DOCKERFILE.format(python=PYTHON, version=version)
    recipe = recipe_hash(name, dockerfile, python_id)
    if found := current(name, recipe):
        return found
    print(f"building {name} with pip (about 60 s)", flush=True)
    context = work / "moto"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    docker_build(context, name, recipe)
    return image_id(name)


def docker_build(context: Path, name: str, recipe: str) -> None:
    # The classic builder: BuildKit would fetch the docker/dockerfile frontend from a registry.
    result = subprocess.run(
        ["docker", "build", "--quiet", "--label", f"{LABEL}={recipe}", "-t", name, str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"docker build {name} failed:\n{result.stdout[-2000:]}{result.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    try:
        uv, moto = versions()
        with tempfile.TemporaryDirectory(prefix="tributary-base-") as tmp:
            python_id = build_python(Path(tmp))
            build_uv(Path(tmp), uv)
            build_moto(Path(tmp), moto, python_id)
    except CannotBuildHereError as error:
        print(f"base images: cannot build here: {error}", file=sys.stderr)
        return CANNOT_BUILD_HERE
    except BuildError as error:
        print(f"base images: {error}", file=sys.stderr)
        return 1
    print(f"base images ready: {PYTHON}, ghcr.io/astral-sh/uv:{uv}, motoserver/moto:{moto}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
