"""Stopping the curate command mid-run in seconds: cancel Spark's jobs and the run's task.

The job's Spark actions block the event loop, so an asyncio signal handler would only run once
the whole run is over. Instead a `StopRequest` (lock-free handler, watcher thread) cancels the
asyncio task, which stops the run at its next await, and cancels every Spark job — again every
quarter second until the process ends, since one action may submit several jobs in a row
(`first()` scales its scan up job by job) and `cancelAllJobs` cancels only those running.
A run stopped anywhere is like a crash there, which the job is built to survive: a rerun
publishes what this one did not, and nothing twice.
"""

from __future__ import annotations

import asyncio
import threading
import time

from py4j.protocol import Py4JError
from pyspark.sql import SparkSession

from tributary.stop import StopRequest
from tributary_curate.spark import LazySession

# What a stopped run raises: the task's cancellation, or the cancelled Spark job's error.
STOPPED = (asyncio.CancelledError, Py4JError)


class SparkStopper:
    """SIGTERM / SIGINT cancel Spark's jobs and the current task; `close()` before spark.stop()."""

    def __init__(self, spark: SparkSession | LazySession) -> None:
        self._spark = spark
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._closed = threading.Event()
        self._lock = threading.Lock()  # no cancelAllJobs in flight while the session stops
        self._request = StopRequest()
        self._request.on_request(self._cancel)

    def install(self) -> SparkStopper:
        """Handle the signals from now on."""
        self._request.install()
        return self

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self._request.requested

    def close(self) -> None:
        """Stop cancelling and put the previous signal handlers back."""
        with self._lock:
            self._closed.set()
        self._request.uninstall()

    def _cancel(self, count: int) -> None:
        if count > 1:
            return
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        threading.Thread(target=self._keep_cancelling, name="cancel-spark", daemon=True).start()

    def _keep_cancelling(self) -> None:
        while True:
            with self._lock:
                if self._closed.is_set():
                    return
                spark: SparkSession | None = None
                if isinstance(self._spark, SparkSession):
                    spark = self._spark
                elif self._spark.started:  # nothing to cancel before the session started
                    spark = self._spark()
                if spark is not None:
                    spark.sparkContext.cancelAllJobs()
            time.sleep(0.25)
