#!/usr/bin/env python3
"""Rewrite the curated crawlers of copilot/environments/addons/lake.yml from the dataset
registry (config/datasets.yaml): one crawler per dataset and child table, between the BEGIN/END
crawlers lines.

    python tools/lake_crawlers.py          # rewrite the block
    python tools/lake_crawlers.py --check  # exit 1 if the block is not current (the suite runs it)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LAKE = REPO / "copilot" / "environments" / "addons" / "lake.yml"
REGISTRY = REPO / "config" / "datasets.yaml"
BLOCK = re.compile(r"(  # BEGIN crawlers[^\n]*\n)(.*?)(  # END crawlers\n)", re.S)
CRAWLER = """\
  {resource}:
    Type: AWS::Glue::Crawler
    Properties:
      Name: !Sub "${{App}}_${{Env}}-{dataset}-curated"
      Role: !GetAtt CrawlerRole.Arn
      DatabaseName: !Ref GlueDatabase
      CrawlerSecurityConfiguration: !Ref GlueSecurity
      Targets:
        S3Targets:
          - Path: !Sub "s3://${{LakeBucket}}/curated/{dataset}/"
      RecrawlPolicy:
        RecrawlBehavior: CRAWL_NEW_FOLDERS_ONLY
      SchemaChangePolicy:
        UpdateBehavior: LOG
        DeleteBehavior: LOG
"""


def datasets() -> list[str]:
    """The append-only tables: every dataset and its child tables (`curated.relationalize`).
    Snapshot tables (`<dataset>_current`, `derived:`) get none: the job re-points their Glue
    table at each new snapshot, and a crawler would add a table per snapshot folder."""
    loaded = yaml.safe_load(REGISTRY.read_text())
    tables = []
    for name, spec in loaded["datasets"].items():
        tables.append(name)
        relationalize = ((spec or {}).get("curated") or {}).get("relationalize") or []
        tables += [f"{name}_{field}" for field in relationalize]
    return tables


def resource_name(dataset: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", dataset)) + "Crawler"


def render(text: str) -> str:
    body = "\n".join(CRAWLER.format(resource=resource_name(d), dataset=d) for d in datasets())
    found = BLOCK.search(text)
    if not found:
        raise SystemExit(f"{LAKE}: no '# BEGIN crawlers' … '# END crawlers' block")
    return text[: found.start(2)] + body + text[found.end(2) :]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the block is current")
    args = parser.parse_args()
    text = LAKE.read_text()
    rendered = render(text)
    if args.check:
        if rendered != text:
            print(f"{LAKE.relative_to(REPO)} is not current: run python tools/lake_crawlers.py")
            return 1
        return 0
    LAKE.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
