"""`StateStore` on DynamoDB: one item per source, written conditionally on its version."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from tributary.aws import error_code, translate_aws_error
from tributary_importer.state import SourceState, StateConflictError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


class DynamoDbStateStore:
    """`StateStore` on the state table (hash key `pk` = `importer#<source>`)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def get(self, source: str) -> SourceState:
        """GetItem, strongly consistent."""
        try:
            response = await self._db.get_item(
                TableName=self._table, ConsistentRead=True, Key={"pk": {"S": f"importer#{source}"}}
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
        item = response.get("Item")
        if item is None:
            return SourceState(source)
        return SourceState.from_document(
            source, int(item["version"]["N"]), orjson.loads(item["doc"]["S"])
        )

    async def put(self, state: SourceState) -> SourceState:
        """PutItem conditional on the version read."""
        try:
            await self._db.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"importer#{state.source}"},
                    "version": {"N": str(state.version + 1)},
                    "doc": {"S": orjson.dumps(state.document()).decode()},
                },
                ConditionExpression="attribute_not_exists(pk) OR version = :v",
                ExpressionAttributeValues={":v": {"N": str(state.version)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise StateConflictError(
                    f"state of {state.source} changed underneath this run; is another run of "
                    "it going on?"
                ) from exc
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise _translate(exc) from exc
        return replace(state, version=state.version + 1)

    async def delete(self, source: str) -> None:
        """DeleteItem."""
        try:
            await self._db.delete_item(
                TableName=self._table, Key={"pk": {"S": f"importer#{source}"}}
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc


def _translate(exc: Exception) -> Exception:
    return translate_aws_error(exc, "importer state", "check STATE_TABLE and IAM permissions")
