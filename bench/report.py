"""Run every benchmark and write BENCHMARKS.md (`make bench`), or only re-assemble it.

Each benchmark (bench/api.py, stream.py, importer.py, curate.py, curate_bookmark.py) saves its
tables and headline rows in bench/results/<name>.report.json through `save()`; this script runs
them one after the other (never in parallel: they would measure each other), then writes
BENCHMARKS.md — the machine, how to reproduce, the headline table and every table with its
same-run baseline — and refreshes the headline table in README.md between its `bench:headline`
markers.

Run: `make bench`, `python bench/report.py [--only api,curate]`, or `--assemble` to rebuild the
files from the saved results without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = (
    "api",
    "stream",
    "importer",
    "curate",
    "curate_bookmark",
    "leases",
    "api_kinesis_agg",
    "version_id",
)
HEADLINE = ["benchmark", "measure", "tributary", "baseline (same run)", "ratio", "target", "met"]
README_MARKERS = ("<!-- bench:headline:start -->", "<!-- bench:headline:end -->")


@dataclass
class Table:
    """One table of a benchmark's results: the first column names the row."""

    title: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Report:
    """What one benchmark run measured: its tables, headline rows and notes."""

    name: str
    setup: str
    tables: list[Table]
    headline: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    finished: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    commit: str = field(default_factory=lambda: _STARTED_COMMIT)
    # 1-minute load average when the benchmark started and when it saved its report
    load_average: list[float] = field(default_factory=lambda: [_STARTED_LOAD, _load()])
    # The host it ran on: BENCHMARKS.md is assembled from reports saved on different hosts.
    cpu: str = field(default_factory=lambda: _cpu())


def _commit() -> str:
    """The code measured: the commit, `-dirty` when the tree had uncommitted changes (saved
    results under bench/results/ do not count: a previous run leaves them changed)."""
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    status = ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]
    changed = _first_line([*status, "--", ".", ":(exclude)bench/results"])
    return f"{commit}-dirty" if changed else commit


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def save(report: Report) -> Path:
    """Write `report` where the assembler finds it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{report.name}.report.json"
    path.write_text(json.dumps(asdict(report), indent=2, default=str))
    return path


def load(name: str) -> Report | None:
    path = RESULTS / f"{name}.report.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    raw["tables"] = [Table(**t) for t in raw["tables"]]
    raw.setdefault("load_average", [])  # saved before the load was recorded
    raw.setdefault("cpu", "")  # saved before the host was recorded
    return Report(**raw)


def met(ok: bool) -> str:
    """The `met` cell of a headline row."""
    return "yes" if ok else "**no**"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def _cpu() -> str:
    """This host's CPU model and logical cores."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found[1].strip() if found else cpu
    return f"{cpu}, {os.cpu_count()} logical cores"


def machine() -> list[list[str]]:
    """The host assembling the file (each benchmark's section names the CPU it ran on)."""
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"MemTotal:\s*(\d+) kB", meminfo.read_text())
        memory = f"{int(found[1]) / 1024**2:.0f} GiB" if found else memory
    return [
        ["CPU (this host; each section below names the CPU it ran on)", _cpu()],
        ["memory", memory],
        ["OS", f"{platform.system()} {platform.release()} ({platform.machine()})"],
        ["Python", platform.python_version()],
        ["Java (Spark)", _first_line(["java", "-version"]) if shutil.which("java") else "none"],
    ]


def assemble(reports: dict[str, Report], seconds: dict[str, float]) -> str:
    """BENCHMARKS.md from the saved reports."""
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python bench/report.py`); every figure sits beside a "
        "baseline measured in the same run on the same machine, and the ratio between them. "
        "Absolute numbers depend on the machine and on the embedded AWS (moto), so read the "
        "ratios. This is a shared, noisy 2-core VM: single runs vary by ±20% and more; each "
        "benchmark takes medians of interleaved rounds.",
        "",
        "## Headline",
        "",
        headline_table(reports),
        "",
        "## Machine",
        "",
        markdown_table(["", ""], machine()),
        "",
        "## How to reproduce",
        "",
        "```bash",
        "make bench                                # all four, this file, the README's table",
        "python bench/report.py --only api,stream  # some of them",
        "python bench/report.py --assemble         # rebuild this file from bench/results/",
        "python bench/api.py --help                # each benchmark alone, with its knobs",
        "```",
        "",
        "Each benchmark also leaves its raw figures in `bench/results/<name>.json`.",
    ]
    for name in BENCHMARKS:
        report = reports.get(name)
        if report is None:
            continue
        took = f", {seconds[name]:.0f} s" if name in seconds else ""
        if report.load_average:
            start, end = report.load_average
            took += f", load average {start:.1f} → {end:.1f}"
        took += f", on {report.cpu}" if report.cpu else ", CPU not recorded"
        commit = report.commit
        if commit.endswith("-dirty"):
            commit += " — **measured with uncommitted changes**"
        out += [
            "",
            f"## {name} (`bench/{name}.py` at {commit}, run {report.finished}{took})",
            "",
        ]
        out += [report.setup, ""]
        for table in report.tables:
            if table.title:
                out += [f"**{table.title}**", ""]
            out += [markdown_table(table.headers, table.rows), ""]
        out += [f"- {note}" for note in report.notes]
    return "\n".join(out).rstrip() + "\n"


def headline_table(reports: dict[str, Report]) -> str:
    rows = [row for name in BENCHMARKS if name in reports for row in reports[name].headline]
    return markdown_table(HEADLINE, rows)


def update_readme(reports: dict[str, Report]) -> None:
    """Replace the README's headline table (between the markers) with the current one."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = README_MARKERS
    if start not in text or end not in text:
        return
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    readme.write_text(f"{before}{start}\n{headline_table(reports)}\n{end}{after}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--assemble", action="store_true", help="run nothing, rebuild the files")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {BENCHMARKS}")
    seconds: dict[str, float] = {}
    timings = RESULTS / "seconds.json"
    if timings.exists():
        seconds.update(json.loads(timings.read_text()))
    failed = []
    if not args.assemble:
        for name in names:
            print(f"\n=== bench/{name}.py ===", flush=True)
            started = time.monotonic()
            code = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py")]).returncode
            if code != 0:
                failed.append(name)
                continue
            seconds[name] = time.monotonic() - started
        RESULTS.mkdir(parents=True, exist_ok=True)
        timings.write_text(json.dumps(seconds, indent=2))
    reports = {n: r for n in BENCHMARKS if (r := load(n)) is not None}
    (ROOT / "BENCHMARKS.md").write_text(assemble(reports, seconds))
    update_readme(reports)
    print(f"\nwrote BENCHMARKS.md ({', '.join(reports)}) and the README's headline table")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# Taken when a benchmark imports this module, as it starts: the code and load it ran with.
_STARTED_LOAD = _load()
_STARTED_COMMIT = _commit()

if __name__ == "__main__":
    sys.exit(main())
