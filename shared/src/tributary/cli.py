"""What every command line shares: exit codes a scheduler can act on, and how failures print.

0 done; 1 a transient failure (run again later); 2 a permanent one that needs a person.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from tributary.errors import PermanentError, TributaryError

EXIT_OK, EXIT_RETRY, EXIT_PERMANENT = 0, 1, 2


def failed(name: str, exc: TributaryError) -> int:
    """Say that one item (a source, a dataset) failed and why; the exit code it calls for."""
    if isinstance(exc, PermanentError):
        print(f"{name}: failed: {exc}", file=sys.stderr)
        return EXIT_PERMANENT
    print(f"{name}: failed, retry later: {exc}", file=sys.stderr)
    return EXIT_RETRY


def run_and_exit(main: Coroutine[Any, Any, int]) -> NoReturn:
    """Run a command's coroutine; exit with its code, or with the code its error calls for."""
    try:
        code = asyncio.run(main)
    except PermanentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_PERMANENT
    except TributaryError as exc:
        print(f"error (transient, run again later): {exc}", file=sys.stderr)
        code = EXIT_RETRY
    sys.exit(code)
