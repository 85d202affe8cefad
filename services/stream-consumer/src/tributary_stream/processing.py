"""Optional second prong: derive an item from each landed record and keep it in DynamoDB.

Off by default. `STREAM_PROCESSOR=module:function` names a `Processor`; `STREAM_ITEMS_TABLE`
the table (hash key `pk`). Items are keyed `<dataset>#<envelope id>`, so a replay after a crash
overwrites the same item: idempotent. They are written after the raw objects and before the
checkpoint, so nothing is acknowledged before both prongs are durable.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import translate_aws_error
from tributary.errors import ConfigError, PermanentError, TransientError
from tributary.retry import RetryPolicy, retry

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

Processor = Callable[[dict[str, Any]], dict[str, Any] | None]
"""An envelope (as a dict) in, an item out (or None to store nothing for this record)."""


def body_length(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """Example processor: a derived attribute, the length of `data.body` when it is a string."""
    data = envelope.get("data")
    body = data.get("body") if isinstance(data, dict) else None
    if not isinstance(body, str):
        return None
    return {"dataset": envelope["dataset"], "id": envelope["id"], "body_length": len(body)}


def load_processor(path: str) -> Processor:
    """Import `module:function`; a clear error when it is not there."""
    module_name, _, attr = path.partition(":")
    try:
        processor: Processor = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"STREAM_PROCESSOR {path!r} is not an importable 'module:function'"
        ) from exc
    return processor


BATCH_SIZE = 25  # BatchWriteItem's limit
MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
MAX_KEY_BYTES = 2048  # DynamoDB's partition key limit


class ItemRefusedError(PermanentError):
    """An item DynamoDB would refuse (bad key, unstorable value, too large)."""


def item_key(item: dict[str, Any]) -> str:
    """`<dataset>#<id>`, the item's hash key; refuses items without string dataset and id."""
    dataset, item_id = item.get("dataset"), item.get("id")
    if not isinstance(dataset, str) or not isinstance(item_id, str) or not dataset or not item_id:
        raise ItemRefusedError("an item needs non-empty string 'dataset' and 'id' fields")
    key = f"{dataset}#{item_id}"
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ItemRefusedError(f"item key is longer than DynamoDB's {MAX_KEY_BYTES} bytes")
    return key


def to_item(item: dict[str, Any]) -> dict[str, Any]:
    """The DynamoDB item for `item` (hash key `pk`); `ItemRefusedError` where DynamoDB would
    refuse it, so a bad item is known before any call."""
    attributes = {"pk": {"S": item_key(item)}, **{k: to_attribute(v) for k, v in item.items()}}
    if len(orjson.dumps(attributes)) > MAX_ITEM_BYTES:
        raise ItemRefusedError(f"item is larger than DynamoDB's {MAX_ITEM_BYTES // 1024} KB")
    return attributes


def collapse(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per key, the last one winning (BatchWriteItem refuses repeated keys)."""
    return list({item_key(item): item for item in items}.values())


class ItemSink(Protocol):
    """Where processed items go."""

    async def put_items(self, items: Sequence[dict[str, Any]]) -> None:
        """Store every item (upsert by `dataset` + `id`) or raise; returns when durable.

        Items go in calls of 25, as BatchWriteItem takes them. Raises `ItemRefusedError` for an
        item DynamoDB refuses (see `to_item`), `PermanentError` when a call of 25 repeats a key
        (DynamoDB: "Provided list of item keys contains duplicates"; nothing of that call is
        written) or the table refuses the call, `TransientError` when it stays unavailable.
        """


class DynamoDbItemSink:
    """`ItemSink` on a DynamoDB table, BatchWriteItem with unprocessed items retried."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def put_items(self, items: Sequence[dict[str, Any]]) -> None:
        """25 items per call; unprocessed ones are retried with backoff."""
        for start in range(0, len(items), BATCH_SIZE):
            pending: list[Any] = [
                {"PutRequest": {"Item": to_item(i)}} for i in items[start : start + BATCH_SIZE]
            ]

            async def attempt() -> None:
                nonlocal pending
                try:
                    response = await self._db.batch_write_item(RequestItems={self._table: pending})
                except (ClientError, BotoCoreError) as exc:
                    # DynamoDB's message says which rule the call broke (duplicates, size...).
                    message = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
                    hint = (
                        f"{message}; check STREAM_ITEMS_TABLE"
                        if message
                        else ("check STREAM_ITEMS_TABLE")
                    )
                    raise translate_aws_error(exc, "BatchWriteItem", hint) from exc
                pending = list(response.get("UnprocessedItems", {}).get(self._table, []))
                if pending:
                    raise TransientError(f"{len(pending)} items unprocessed")

            await retry(attempt, RetryPolicy(max_attempts=8), what="BatchWriteItem")


def to_attribute(value: Any) -> dict[str, Any]:
    """A JSON value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float) and not math.isfinite(value):
        raise ItemRefusedError(f"DynamoDB numbers cannot be {value}")
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [to_attribute(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    raise ItemRefusedError(f"cannot store {type(value).__name__} in DynamoDB")
