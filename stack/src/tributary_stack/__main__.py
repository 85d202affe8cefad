"""`python -m tributary_stack up|demo`: the embedded local stack."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from pathlib import Path

from tributary.log import configure_logging
from tributary.settings import CommonSettings
from tributary_importer.settings import ImporterSettings
from tributary_importer.source import load_sources
from tributary_stack import demo
from tributary_stack.settings import StackSettings
from tributary_stack.stack import LocalStack
from tributary_stack.status import status


def _up(settings: StackSettings) -> int:
    stack = LocalStack(settings).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
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
        "Ctrl+C stops everything.\n",
        flush=True,
    )
    while not stop.wait(0.5):
        for process in stack.processes:
            if process.poll() is not None:
                print(f"{process.name} exited with code {process.poll()}; stopping", flush=True)
                stop.set()
    print("stopping…", flush=True)
    stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(
        prog="python -m tributary_stack", description="Tributary's embedded local stack."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the stack in the foreground until Ctrl+C")
    sub.add_parser("demo", help="run the pipeline once end to end and print a summary")
    sub.add_parser("status", help="tables of the lake, shards, importer and curate state")
    args = parser.parse_args(argv)
    configure_logging("stack", "WARNING")
    if args.command == "status":
        common = CommonSettings()
        sources = list(load_sources(ImporterSettings().sources_config))
        print(asyncio.run(status(common, sources)))
        return 0
    settings = StackSettings()
    if args.command == "up":
        return _up(settings)
    demo_settings = settings.one_off(Path(".local/demo.env"))
    log_path = Path(".local/demo.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        return demo.main(LocalStack(demo_settings, out=log_file, log_level="WARNING"), log_path)


if __name__ == "__main__":
    sys.exit(main())
