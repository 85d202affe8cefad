"""`python -m tributary_stack up|demo|status|redrive|rewind|reprocess`: the embedded local stack
and the commands run against it (or AWS)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from tributary.cli import EXIT_OK, EXIT_PERMANENT, EXIT_RETRY
from tributary.errors import ConfigError, PermanentError, TributaryError
from tributary.log import configure_logging
from tributary.settings import CommonSettings
from tributary.stop import StopRequest
from tributary_importer.settings import ImporterSettings
from tributary_importer.source import load_sources
from tributary_stack import demo
from tributary_stack.orphans import exit_with_parent
from tributary_stack.process import StartCancelled
from tributary_stack.replay import cli as replay_cli
from tributary_stack.settings import StackSettings
from tributary_stack.stack import LocalStack
from tributary_stack.status import status


def _up(settings: StackSettings) -> int:
    # First: a Ctrl+C during start-up stops cleanly too; SIGHUP is a closed terminal; a killed
    # parent (`make`, a shell) becomes a SIGTERM.
    stop = StopRequest((signal.SIGTERM, signal.SIGINT, signal.SIGHUP)).install()
    exit_with_parent(signal.SIGTERM)
    stop.on_request(lambda count: _say_stopping(count, settings.stop_timeout_s))
    print("starting the embedded stack… (Ctrl+C stops it, also now)", flush=True)
    stack = LocalStack(settings)
    try:
        stack.start(cancelled=lambda: stop.requested)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        stack.stop(hurry=lambda: stop.count >= 2)
        return EXIT_PERMANENT
    except StartCancelled:
        stack.stop(hurry=lambda: stop.count >= 2)
        return EXIT_OK
    except BaseException:
        stack.stop(budget=5)
        raise
    print(_banner(stack, settings), flush=True)
    failed = None
    while failed is None and not stop.wait(0.5):
        failed = next((p for p in stack.processes if p.poll() is not None), None)
    if failed is not None:
        print(f"{failed.name} exited with code {failed.poll()}; stopping", flush=True)
    stack.stop(hurry=lambda: stop.count >= 2)
    print("stopped", flush=True)
    return EXIT_OK if failed is None else EXIT_RETRY


def _say_stopping(count: int, budget: float) -> None:
    if count == 1:
        print(f"stopping… (within {budget:g}s; Ctrl+C again to kill now)", flush=True)
    elif count == 2:
        print("killing what is left…", flush=True)


def _banner(stack: LocalStack, settings: StackSettings) -> str:
    return (
        "\nTributary local stack is up (no Docker, no AWS account)\n"
        f"  embedded AWS (moto)  {stack.moto.endpoint}\n"
        f"  API                  {stack.api_url}   docs: {stack.api_url}/docs\n"
        f"  fake third-party API {stack.env['FAKEAPI_URL']}   (the importer polls it every "
        f"{settings.importer_interval_s:g}s)\n"
        f"  dev API key          {settings.api_key}\n"
        f"  env file             {settings.env_file.resolve()}   (source it in another shell)\n"
        f"  stream               {settings.stream_name} ({settings.shards} shards)\n"
        f"  lake bucket          s3://{settings.lake_bucket}\n"
        f"  curate (Spark)       every {settings.curate_interval_s:g}s; "
        "query: make query SQL='select count(*) from posts'\n\n"
        "Try:\n"
        f"  curl -s -H 'Authorization: Bearer {settings.api_key}' -H 'Content-Type: "
        "application/json' \\\n"
        f'    -d \'{{"userId":1,"id":1,"title":"hi","body":"there"}}\' '
        f"{stack.api_url}/v1/datasets/posts/records\n\n"
        "Ctrl+C stops everything.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(
        prog="python -m tributary_stack", description="Tributary's embedded local stack."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the stack in the foreground until Ctrl+C")
    sub.add_parser("demo", help="run the pipeline once end to end and print a summary")
    sub.add_parser("status", help="tables of the lake, shards, importer and curate state")
    replay_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    configure_logging("stack", "WARNING")
    if args.command in replay_cli.COMMANDS:
        try:
            return asyncio.run(replay_cli.run(args, CommonSettings()))
        except PermanentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_PERMANENT
        except TributaryError as exc:
            print(f"error (transient, run the same command again): {exc}", file=sys.stderr)
            return EXIT_RETRY
    if args.command == "status":
        common = CommonSettings()
        sources = list(load_sources(ImporterSettings().sources_config))
        print(asyncio.run(status(common, sources)))
        return 0
    settings = StackSettings()
    if args.command == "up":
        return _up(settings)
    # SIGTERM (also: our parent died) unwinds the demo like Ctrl+C (the stack stops on the way).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    exit_with_parent(signal.SIGTERM)
    demo_settings = settings.one_off(Path(".local/demo.env"))
    log_path = Path(".local/demo.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        return demo.main(LocalStack(demo_settings, out=log_file, log_level="WARNING"), log_path)


if __name__ == "__main__":
    sys.exit(main())
