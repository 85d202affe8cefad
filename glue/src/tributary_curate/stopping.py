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

# What a stopped run raises: the task's cancellation, or the cancelled Spark job's error.
STOPPED = (asyncio.CancelledError, Py4JError)


def stop_on_signal(spark: SparkSession) -> StopRequest:
    """From now on SIGTERM / SIGINT cancel Spark's jobs and the current task (installed)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def keep_cancelling() -> None:
        while True:
            try:
                spark.sparkContext.cancelAllJobs()
            except Py4JError:  # the session is gone: nothing is left to cancel
                return
            time.sleep(0.25)

    def cancel(count: int) -> None:
        if count > 1:
            return
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)
        threading.Thread(target=keep_cancelling, name="cancel-spark", daemon=True).start()

    stop = StopRequest()
    stop.on_request(cancel)
    return stop.install()
