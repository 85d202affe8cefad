"""One contract for both item sinks: DynamoDB (over the wire, moto) and memory, error cases
included: the fake refuses what DynamoDB refuses."""

from __future__ import annotations

from typing import Any

import pytest

from tributary.errors import PermanentError
from tributary_stream import processing
from tributary_stream.processing import DynamoDbItemSink, ItemRefusedError, ItemSink
from tributary_stream.testing import MemoryItemSink


@pytest.fixture(params=["dynamodb", "memory"])
def sink(request: pytest.FixtureRequest) -> ItemSink:
    if request.param == "memory":
        return MemoryItemSink()
    dynamo: DynamoDbItemSink = request.getfixturevalue("items_sink")
    return dynamo


async def stored(sink: ItemSink) -> dict[str, dict[str, Any]]:
    """Every stored item by key, as plain values."""
    if isinstance(sink, MemoryItemSink):
        return {k: dict(v) for k, v in sink.items.items()}
    assert isinstance(sink, DynamoDbItemSink)
    scan = await sink._db.scan(TableName=sink._table)
    plain = {
        i["pk"]["S"]: {k: next(iter(v.values())) for k, v in i.items() if k != "pk"}
        for i in scan["Items"]
    }
    return {k: {n: int(v) if n == "n" else v for n, v in item.items()} for k, item in plain.items()}


def item(i: int, **extra: object) -> dict[str, Any]:
    return {"dataset": "posts", "id": str(i), "n": i, **extra}


async def test_upserts_by_dataset_and_id(sink: ItemSink) -> None:
    items = [item(i) for i in range(60)]
    await sink.put_items(items)
    await sink.put_items([item(5, n=500)])  # a replay with a newer value: same key
    got = await stored(sink)
    assert len(got) == 60
    assert got["posts#5"]["n"] == 500


async def test_a_repeated_key_in_one_call_refuses_the_whole_call(sink: ItemSink) -> None:
    # Identical items: moto compares whole items, DynamoDB keys (the fake keys, the stricter).
    with pytest.raises(PermanentError, match="contains duplicates"):
        await sink.put_items([item(1), item(2), item(1)])
    assert await stored(sink) == {}


async def test_repeats_in_separate_calls_of_25_are_upserts(sink: ItemSink) -> None:
    await sink.put_items([item(1), *(item(i) for i in range(100, 124)), item(1)])
    assert len(await stored(sink)) == 25


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (item(1, blob=b"bytes"), "cannot store bytes"),
        (item(1, ratio=float("nan")), "cannot be nan"),
        (item(1, big="x" * 420_000), "larger than"),
        ({"dataset": "posts", "n": 1}, "non-empty string 'dataset' and 'id'"),
        ({"dataset": "posts", "id": "x" * 3000}, "longer than"),
        (item(1, big=2**130), "more than 38 significant digits"),
        (item(1, nested={"x": [-(10**38) - 1]}), "more than 38 significant digits"),
        (item(1, huge=1e200), "magnitude larger than"),
        (item(1, tiny=-1e-200), "magnitude smaller than"),
    ],
)
async def test_items_dynamodb_cannot_store_are_refused_before_any_write(
    sink: ItemSink, bad: dict[str, Any], message: str
) -> None:
    with pytest.raises(ItemRefusedError, match=message):
        await sink.put_items([item(0), bad])
    assert await stored(sink) == {}


async def test_a_missing_table_is_permanent(items_sink: DynamoDbItemSink) -> None:
    gone = DynamoDbItemSink(items_sink._db, "no-such-table")
    with pytest.raises(PermanentError, match="check STREAM_ITEMS_TABLE"):
        await gone.put_items([item(1)])


async def test_moto_itself_refuses_what_the_checks_stop_early(
    items_sink: DynamoDbItemSink,
) -> None:
    """The client-side checks mirror the service: sent anyway, it refuses them too."""
    db, table = items_sink._db, items_sink._table
    for attributes in (
        {"pk": {"S": "k"}, "big": {"S": "x" * 420_000}},
        {"pk": {"S": "x" * 3000}},
    ):
        with pytest.raises(Exception, match="ValidationException"):
            await db.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": attributes}}]})
    with pytest.raises(Exception, match="duplicates"):
        await db.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "k"}}}}] * 2}
        )


async def test_numbers_within_dynamodbs_range_and_precision_are_stored(sink: ItemSink) -> None:
    edges = [10**38 - 1, -(10**38 - 1), 10**100, 9.99e125, 1e-130, -1e-130, 0, 0.1]
    assert await sink.put_items([item(i, v=v) for i, v in enumerate(edges)]) == {}
    got = await stored(sink)
    assert {k: float(v["v"]) for k, v in got.items()} == {
        f"posts#{i}": float(v) for i, v in enumerate(edges)
    }


async def test_an_item_the_table_refuses_is_found_and_the_others_stored(
    items_sink: DynamoDbItemSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the checks before the call miss, the service refuses (a whole call of 25): the sink
    bisects down to the refused item and stores every other one."""
    monkeypatch.setattr(processing, "check_number", str)  # let 1e200 through to moto
    items = [item(i) for i in range(40)]
    items[30] = item(30, huge=1e200)
    refused = await items_sink.put_items(items)
    assert list(refused) == [30]
    assert "Number overflow" in refused[30]
    assert sorted(await stored(items_sink)) == sorted(f"posts#{i}" for i in range(40) if i != 30)
