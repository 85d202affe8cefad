"""`python -m tributary_importer`: run sources once (the scheduled job), in a loop, backfill a
range, or show / reset state.

Exit codes: 0 every source imported; 1 a source failed transiently (run again later); 2 a
permanent error (configuration, a missing secret, a 4xx from the vendor, a malformed resource)
that needs a person. One source failing does not stop the others; the worst code wins.
`run --loop` keeps going through failures; stopped (SIGTERM, Ctrl+C), it cancels the pass in
progress (the next run resumes from its last checkpoint, as after a crash) and exits with the code
of its last finished pass (1 when none finished).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx
import orjson

from tributary.aws import AwsClients
from tributary.cli import EXIT_OK, every, failed, run_and_exit
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import PermanentError, TributaryError
from tributary.log import configure_logging
from tributary.metrics import EmfMetrics
from tributary.s3_writer import S3RawWriter
from tributary_importer.clients import client_for
from tributary_importer.fetch import install_log_redaction
from tributary_importer.run import Importer
from tributary_importer.settings import ImporterSettings
from tributary_importer.source import DeclaredSource, load_sources
from tributary_importer.state import SourceState
from tributary_importer.state_blob import S3StateBlobs
from tributary_importer.state_dynamodb import DynamoDbStateStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tributary_importer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="import every (or the named) source")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one run, then exit (default)")
    mode.add_argument("--loop", action="store_true", help="run every --interval seconds")
    run.add_argument("--interval", type=float, help="seconds between loop runs")
    run.add_argument("--source", action="append", help="only this source (repeatable)")
    backfill = sub.add_parser("backfill", help="re-import a cursor range of one source")
    backfill.add_argument("--source", required=True)
    backfill.add_argument("--from", dest="start", required=True, help="cursor value, inclusive")
    backfill.add_argument("--to", dest="end", required=True, help="cursor value, inclusive")
    state = sub.add_parser("state", help="show or reset importer state")
    state.add_argument("action", choices=["show", "reset"])
    state.add_argument("--source", action="append")
    return parser


def _progress(source: str, pages: int, records: int) -> None:
    sys.stderr.write(f"\r{source}: {pages} pages, {records} new records")
    sys.stderr.flush()


def _show(state: SourceState) -> str:
    """A source's state as JSON; the look-back ids (possibly 100,000s) and a child's parents as
    counts."""
    doc = state.document()
    doc["seen"] = {"ids": len(state.seen)}
    doc["parents"] = {"parents": len(state.parents)}  # a child's per-parent cursors
    return orjson.dumps(
        {"source": state.source, "version": state.version, **doc}, option=orjson.OPT_INDENT_2
    ).decode()


async def _main(args: argparse.Namespace, settings: ImporterSettings) -> int:
    sources = load_sources(settings.sources_config)
    # httpx logs every request's URL at INFO: redact it as our own messages are redacted.
    install_log_redaction(s.spec for s in sources.values())
    # `backfill --source` names one source; `run` and `state` take it repeatedly (a list).
    names: Sequence[str] = (
        [args.source] if isinstance(args.source, str) else args.source or list(sources)
    )
    unknown = [n for n in names if n not in sources]
    if unknown:
        raise PermanentError(f"unknown source(s) {unknown}; known: {sorted(sources)}")
    metrics = EmfMetrics(settings.metrics_namespace, "importer")
    async with AwsClients(settings) as clients, httpx.AsyncClient() as http:
        s3 = await clients.s3()
        store = DynamoDbStateStore(
            await clients.dynamodb(), settings.state_table, S3StateBlobs(s3, settings.lake_bucket)
        )
        if args.command == "state":
            for name in names:
                if args.action == "reset":
                    await store.reset(name)
                    print(f"{name}: state reset; the next run imports from the start")
                else:
                    print(_show(await store.get(name)))
            return EXIT_OK
        registry = DatasetRegistry.from_file(settings.datasets_config)
        writer = S3RawWriter(s3, settings.lake_bucket)
        importer = Importer(writer, store, SystemClock(), metrics, registry)
        if sys.stderr.isatty():
            importer.progress = _progress
        try:
            if args.command == "backfill":
                client = client_for(args.source, sources, http)
                result = await importer.backfill(client, args.start, args.end)
                print(
                    f"\n{args.source}: backfilled {result.records} records in {result.pages} pages"
                )
                return EXIT_OK
            if args.loop:
                return await every(
                    args.interval or settings.interval_s,
                    lambda: _run_all(importer, sources, names, http),
                )
            return await _run_all(importer, sources, names, http)
        finally:
            metrics.flush()


async def _run_all(
    importer: Importer,
    sources: dict[str, DeclaredSource],
    names: Sequence[str],
    http: httpx.AsyncClient,
) -> int:
    worst = EXIT_OK
    for name in names:
        try:
            client = client_for(name, sources, http)
            result = await importer.run_once(client)
            print(
                f"{name}: {result.records} new records in {result.pages} pages "
                f"(cursor {result.cursor}{', resumed' if result.resumed else ''})"
            )
        except TributaryError as exc:
            worst = max(worst, failed(name, exc))
    return worst


def main() -> None:
    """Entry point."""
    args = _parser().parse_args()
    settings = ImporterSettings()
    configure_logging("importer", settings.log_level)
    run_and_exit(_main(args, settings))


if __name__ == "__main__":
    main()
