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
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
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
MAX_NUMBER_DIGITS = 38  # DynamoDB numbers: 38 significant digits,
MAX_NUMBER_EXPONENT = 125  # magnitudes up to 9.99...E+125
MIN_NUMBER_EXPONENT = -130  # and down to 1E-130


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


class ItemSink(Protocol):
    """Where processed items go."""

    async def put_items(self, items: Sequence[dict[str, Any]]) -> dict[int, str]:
        """Store the items (upsert by `dataset` + `id`); returns when durable, with the items
        the table refused one by one (their index in `items`, and why): all others are stored.

        Items go in calls of 25, as BatchWriteItem takes them. Raises `ItemRefusedError`, before
        any write, for an item the checks of `to_item` know DynamoDB refuses; `PermanentError`
        when a call of 25 repeats a key (DynamoDB: "Provided list of item keys contains
        duplicates"; nothing of that call is written) or the table refuses the call itself
        (missing table, no grant), `TransientError` when it stays unavailable.
        """


class DynamoDbItemSink:
    """`ItemSink` on a DynamoDB table, BatchWriteItem with unprocessed items retried."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def put_items(self, items: Sequence[dict[str, Any]]) -> dict[int, str]:
        """25 items per call; unprocessed ones are retried with backoff. A call the table
        refuses for an item in it (ValidationException) is split in halves until the refused
        items are alone; those are returned, the others written."""
        refused: dict[int, str] = {}
        chunks = [
            [(i, to_item(item)) for i, item in enumerate(items[start : start + BATCH_SIZE], start)]
            for start in range(0, len(items), BATCH_SIZE)
        ]
        for chunk in chunks:
            await self._write(chunk, refused)
        return refused

    async def _write(
        self, chunk: list[tuple[int, dict[str, Any]]], refused: dict[int, str]
    ) -> None:
        pending: list[Any] = [{"PutRequest": {"Item": attributes}} for _, attributes in chunk]

        async def attempt() -> None:
            nonlocal pending
            try:
                response = await self._db.batch_write_item(RequestItems={self._table: pending})
            except (ClientError, BotoCoreError) as exc:
                # DynamoDB's message says which rule the call broke (duplicates, size...).
                message = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
                if error_code(exc) == "ValidationException" and "duplicates" not in message:
                    raise _ItemInvalidError(f"ValidationException: {message}") from exc
                hint = (
                    f"{message}; check STREAM_ITEMS_TABLE"
                    if message
                    else "check STREAM_ITEMS_TABLE"
                )
                raise translate_aws_error(exc, "BatchWriteItem", hint) from exc
            pending = list(response.get("UnprocessedItems", {}).get(self._table, []))
            if pending:
                raise TransientError(f"{len(pending)} items unprocessed")

        try:
            await retry(attempt, RetryPolicy(max_attempts=8), what="BatchWriteItem")
        except _ItemInvalidError as exc:
            if len(chunk) == 1:
                refused[chunk[0][0]] = str(exc)
                return
            half = len(chunk) // 2
            await self._write(chunk[:half], refused)
            await self._write(chunk[half:], refused)


class _ItemInvalidError(PermanentError):
    """The table refused a call for what an item in it holds (not for the call itself)."""


def check_number(value: int | float) -> str:
    """`value` as a DynamoDB number; `ItemRefusedError` outside its precision and range."""
    text = str(value)
    try:
        number = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - str() of an int or float parses
        raise ItemRefusedError(f"{text!r} is not a number") from exc
    if number == 0:
        return text
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    if len(digits) > MAX_NUMBER_DIGITS:
        raise ItemRefusedError(
            f"DynamoDB numbers cannot have more than {MAX_NUMBER_DIGITS} significant digits "
            f"({text[:60]})"
        )
    if number.adjusted() > MAX_NUMBER_EXPONENT:
        raise ItemRefusedError(f"number magnitude larger than DynamoDB's 1E+126 ({text[:60]})")
    if number.adjusted() < MIN_NUMBER_EXPONENT:
        raise ItemRefusedError(f"number magnitude smaller than DynamoDB's 1E-130 ({text[:60]})")
    return text


def to_attribute(value: Any) -> dict[str, Any]:
    """A JSON value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float) and not math.isfinite(value):
        raise ItemRefusedError(f"DynamoDB numbers cannot be {value}")
    if isinstance(value, int | float):
        return {"N": check_number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [to_attribute(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    raise ItemRefusedError(f"cannot store {type(value).__name__} in DynamoDB")
