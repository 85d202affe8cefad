from __future__ import annotations

import io
import logging

import orjson

from tributary.log import configure_logging
from tributary.metrics import EmfMetrics, Unit


def test_emf_documents_aggregate_per_dimension_set() -> None:
    out = io.StringIO()
    metrics = EmfMetrics("Tributary", "api", out)
    metrics.add("RecordsAccepted", 2, dataset="posts")
    metrics.add("RecordsAccepted", 3, dataset="posts")
    metrics.add("BytesAccepted", 10, Unit.BYTES, dataset="posts")
    metrics.add("RecordsAccepted", 1, dataset="events")
    metrics.flush()
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(docs) == 2
    posts = next(d for d in docs if d["dataset"] == "posts")
    assert posts["RecordsAccepted"] == 5
    assert posts["BytesAccepted"] == 10
    spec = posts["_aws"]["CloudWatchMetrics"][0]
    assert spec["Namespace"] == "Tributary"
    assert spec["Dimensions"] == [["service", "dataset"]]
    assert {"Name": "BytesAccepted", "Unit": "Bytes"} in spec["Metrics"]
    metrics.flush()
    assert len(out.getvalue().splitlines()) == 2  # nothing new to flush


def test_json_logs_carry_extra_fields() -> None:
    out = io.StringIO()
    configure_logging("test", "INFO", out)
    try:
        logging.getLogger("t").info("hello", extra={"dataset": "posts", "n": 3})
    finally:
        logging.getLogger().handlers.clear()
    entry = orjson.loads(out.getvalue())
    assert entry["msg"] == "hello"
    assert entry["service"] == "test"
    assert (entry["dataset"], entry["n"]) == ("posts", 3)


def test_gauges_keep_the_last_value() -> None:
    out = io.StringIO()
    metrics = EmfMetrics("Tributary", "stream", out)
    metrics.gauge("MillisBehindLatest", 500, shard="s0")
    metrics.gauge("MillisBehindLatest", 20, shard="s0")
    metrics.flush()
    assert orjson.loads(out.getvalue())["MillisBehindLatest"] == 20
