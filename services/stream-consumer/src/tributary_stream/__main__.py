"""`python -m tributary_stream`: run one stream-consumer worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from tributary.aws import AwsClients
from tributary.clock import SystemClock
from tributary.dataset import DatasetRegistry
from tributary.errors import ConfigError
from tributary.log import configure_logging
from tributary.metrics import EmfMetrics
from tributary.s3_writer import S3RawWriter
from tributary_stream.assignment import BalanceConfig
from tributary_stream.consumer import Limits
from tributary_stream.fleet import DynamoDbFleetStore
from tributary_stream.lease_table import DynamoDbLeaseStore
from tributary_stream.processing import DynamoDbItemSink, ItemSink, Processor, load_processor
from tributary_stream.route import Router
from tributary_stream.settings import StreamSettings
from tributary_stream.stream import KinesisStreamReader
from tributary_stream.worker import Worker, WorkerConfig

log = logging.getLogger("tributary_stream")


async def serve(settings: StreamSettings) -> None:
    """Wire the real backends and run a worker; SIGTERM drains within the stop timeout."""
    registry = DatasetRegistry.from_file(settings.datasets_config)
    metrics = EmfMetrics(settings.metrics_namespace, "stream-consumer")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not settings.verify_keys():  # chosen: require_signing_key() let it through
        log.warning(
            "STREAM_ALLOW_NO_SIGNING_KEY: no envelope is trusted, the API's records are "
            "treated as bare records"
        )
    async with AwsClients(settings) as clients:
        worker = Worker(
            WorkerConfig(
                worker_id=settings.worker_id,
                limits=Limits.from_settings(settings),
                failover_time_s=settings.failover_time_s,
                shard_sync_s=settings.shard_sync_s,
                initial_position=settings.initial_position,
                initial_timestamp=settings.initial_timestamp,
                max_steal=settings.max_steal,
                get_records_limit=settings.get_records_limit,
                idle_poll_s=settings.idle_poll_s,
                compress_level=settings.compress_level,
                shutdown_timeout_s=settings.shutdown_timeout_s,
                end_on_empty_closed=settings.end_on_empty_closed,
                poison_attempts=settings.poison_attempts,
                poison_min_s=settings.poison_min_s,
                processor_timeout_s=settings.processor_timeout_s,
                processor_threads=settings.processor_threads,
                stall_s=settings.stall_s,
                release_after_failures=settings.release_after_failures,
                failing_cool_down_s=settings.failing_cool_down_s,
                health_file=settings.health_file,
                assignment=settings.lease_assignment,
                balance=BalanceConfig(
                    by_load=settings.lease_balance == "load",
                    threshold=settings.lease_balance_threshold,
                    dampening=settings.lease_balance_dampening,
                    max_leases=settings.max_leases_for_worker,
                ),
                handoff_timeout_s=settings.lease_handoff_timeout_s,
                lease_concurrency=settings.lease_concurrency,
            ),
            DynamoDbLeaseStore(await clients.dynamodb(), settings.lease_table),
            KinesisStreamReader(await clients.kinesis(), settings.stream_name),
            Router(
                registry,
                f"kinesis:{settings.stream_name}",
                settings.default_dataset,
                settings.dataset_field,
                signing_key=settings.verify_keys(),
                unsigned=settings.unsigned_envelopes,
            ),
            S3RawWriter(await clients.s3(), settings.lake_bucket),
            SystemClock(),
            metrics,
            await _processing(settings, clients),
            DynamoDbFleetStore(await clients.dynamodb(), settings.fleet_table),
        )
        log.info(
            "worker started", extra={"worker": settings.worker_id, "stream": settings.stream_name}
        )

        async def flush_metrics() -> None:
            while True:
                await asyncio.sleep(settings.metrics_interval_s)
                metrics.flush()

        flusher = asyncio.create_task(flush_metrics())
        try:
            await worker.run(stop)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            metrics.flush()
        log.info("worker stopped", extra={"worker": settings.worker_id})


async def _processing(
    settings: StreamSettings, clients: AwsClients
) -> tuple[Processor, ItemSink] | None:
    """The optional processor and DynamoDB item sink (both must be configured)."""
    if settings.processor is None and settings.items_table is None:
        return None
    if settings.processor is None or settings.items_table is None:
        raise ConfigError("set both STREAM_PROCESSOR and STREAM_ITEMS_TABLE, or neither")
    return (
        load_processor(settings.processor),
        DynamoDbItemSink(await clients.dynamodb(), settings.items_table),
    )


def main() -> None:
    """Entry point."""
    settings = StreamSettings()
    configure_logging("stream-consumer", settings.log_level)
    try:
        settings.require_signing_key()
    except ConfigError as exc:
        log.error("refusing to start", extra={"error": str(exc)})
        raise SystemExit(2) from exc
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:  # e.g. a lease table without the owner index: exit 2, not a loop
        log.error("stopped: configuration error", extra={"error": str(exc)})
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
