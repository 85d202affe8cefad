"""`StateStore` on DynamoDB: one item per source, written conditionally on its version; a large
look-back set lives in a state blob on S3 that the item names."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary_importer.state import (
    SourceState,
    StateBlobMissingError,
    StateCodec,
    StateConflictError,
    item_key,
    reset_state,
    too_large,
)
from tributary_importer.state_blob import StateBlobs

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


class DynamoDbStateStore:
    """`StateStore` on the state table (hash key `pk` = `importer#<source>`) and `blobs`."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, blobs: StateBlobs) -> None:
        self._db = dynamodb
        self._table = table
        self._codec = StateCodec(blobs)

    async def get(self, source: str) -> SourceState:
        """GetItem, strongly consistent (and the blob it names)."""
        item = await self._item(source)
        if item is None:
            return SourceState(source)
        try:
            return await self._codec.decode(source, *item)
        except StateBlobMissingError:
            again = await self._item(source)
            if again is None or again == item:
                raise
            # A writer moved on (and pruned the blob we were about to read): read its version.
            return await self._codec.decode(source, *again)

    async def _item(self, source: str) -> tuple[int, str] | None:
        """(version, doc) of the stored item, or None."""
        try:
            response = await self._db.get_item(
                TableName=self._table, ConsistentRead=True, Key={"pk": {"S": item_key(source)}}
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        item = response.get("Item")
        if item is None:
            return None
        return int(item["version"]["N"]), item["doc"]["S"]

    async def put(self, state: SourceState) -> SourceState:
        """The blob, then PutItem conditional on the version read."""
        item = self._codec.encode(state)
        await self._codec.write_blob(item)
        try:
            await self._db.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": item.pk},
                    "version": {"N": str(item.version)},
                    "doc": {"S": item.doc},
                },
                **_expected(state.version),
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                raise StateConflictError(
                    f"state of {state.source} changed underneath this run; is another run of "
                    "it going on?"
                ) from exc
            if code == "ValidationException" and "size" in str(exc).lower():
                raise too_large(item, state.source) from exc
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        await self._codec.prune(state.source, item.version, item.blob_key)
        return replace(state, version=item.version)

    async def reset(self, source: str) -> SourceState:
        """A conditional put of an empty state at the next version (old blobs pruned)."""
        stored = await self._item(source)
        return await self.put(reset_state(source, *stored) if stored else SourceState(source))


def _expected(version: int) -> dict[str, Any]:
    """The condition of a put over stored version `version`: no item at all for version 0
    (a first write), else exactly that version (never "absent or equal": a write at version N
    must not recreate an item that is gone)."""
    if version == 0:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "ConditionExpression": "version = :v",
        "ExpressionAttributeValues": {":v": {"N": str(version)}},
    }


def _translate(exc: Exception) -> Exception:
    return translate_aws_error(exc, "importer state", "check STATE_TABLE and IAM permissions")
