"""How a curate run's Spark failures are reported: the dataset's config or transform (exit 2), or
I/O underneath (exit 1). Either way the other datasets still run."""

from __future__ import annotations

from py4j.protocol import Py4JJavaError

from tributary.errors import PermanentError, TransientError, TributaryError


class CurateConfigError(PermanentError):
    """A dataset's `curated:` config or its transform failed; the other datasets still run."""


class CurateSparkIOError(TransientError):
    """Spark could not read or write this dataset's files (I/O); the other datasets still run."""


def spark_failure(dataset: str, exc: Exception) -> TributaryError:
    """A Spark failure of one dataset's run: its config or transform (a filter that does not
    parse, a regex that fails only once Spark runs it: exit 2), or I/O underneath (exit 1)."""
    if isinstance(exc, Py4JJavaError):
        causes = _java_causes(exc)
        reason = causes[-1][1] if causes else first_line(exc)
        if any(kinds & _IO_ERRORS for kinds, _ in causes):
            return CurateSparkIOError(f"Spark I/O failed for {dataset}: {reason[:300]}")
    else:
        reason = first_line(exc)
    return CurateConfigError(
        f"curated config or transform of {dataset} failed: {reason[:300]}; "
        "fix its entry in the dataset registry (nothing was written)"
    )


_IO_ERRORS = frozenset({"java.io.IOException", "java.io.UncheckedIOException"})


def _java_causes(exc: Py4JJavaError) -> list[tuple[frozenset[str], str]]:
    """(its class and superclasses, first line) of the Java exception and each cause under it."""
    found: list[tuple[frozenset[str], str]] = []
    java = exc.java_exception
    while java is not None and len(found) < 20:
        kinds, cls = set[str](), java.getClass()
        while cls is not None:
            kinds.add(str(cls.getName()))
            cls = cls.getSuperclass()
        text = str(java.toString()).splitlines()
        found.append((frozenset(kinds), text[0] if text else ""))
        java = java.getCause()
    return found


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
