"""The fake's GraphQL endpoint, executed by graphql-core as a real server would: the query is
parsed and validated against the schema (a selection set is required, every declared variable
must be used, unknown fields are errors), only the selected fields are answered, and errors
come back as HTTP 200 with a top-level `errors` list (GraphQL over HTTP, application/json).

    type Query { items(since: String, after: String, first: Int = 10): ItemConnection! }

a relay-style connection over the changing items, `updated_at >= since`, oldest first; the
`after` cursor is opaque and `endCursor` is null only on an empty page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    graphql_sync,
)

Page = Callable[[str, str | None, int], tuple[list[dict[str, Any]], bool, str | None]]


def schema(page: Page) -> GraphQLSchema:
    """The items schema; `page(since, after, first)` -> (nodes, has_next, end_cursor)."""
    item = GraphQLObjectType(
        "Item",
        {
            "id": GraphQLField(GraphQLNonNull(GraphQLInt)),
            "name": GraphQLField(GraphQLString),
            "price": GraphQLField(GraphQLFloat),
            "updated_at": GraphQLField(GraphQLNonNull(GraphQLString)),
        },
    )
    page_info = GraphQLObjectType(
        "PageInfo",
        {
            "hasNextPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
            "endCursor": GraphQLField(GraphQLString),
        },
    )
    connection = GraphQLObjectType(
        "ItemConnection",
        {
            "nodes": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(item)))),
            "pageInfo": GraphQLField(GraphQLNonNull(page_info)),
        },
    )

    def items(_root: Any, _info: Any, since: str = "", after: str | None = None, first: int = 10):  # type: ignore[no-untyped-def]
        nodes, has_next, end = page(since or "", after, first)
        return {"nodes": nodes, "pageInfo": {"hasNextPage": has_next, "endCursor": end}}

    query = GraphQLObjectType(
        "Query",
        {
            "items": GraphQLField(
                GraphQLNonNull(connection),
                args={
                    "since": GraphQLArgument(GraphQLString),
                    "after": GraphQLArgument(GraphQLString),
                    "first": GraphQLArgument(GraphQLInt, default_value=10),
                },
                resolve=items,
            )
        },
    )
    return GraphQLSchema(query)


def execute(served: GraphQLSchema, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
    """The response document: `data` and/or `errors`, as a server answers it with HTTP 200."""
    result = graphql_sync(served, query, variable_values=variables)
    answer: dict[str, Any] = {}
    if result.errors:
        answer["errors"] = [error.formatted for error in result.errors]
    if result.data is not None or not result.errors:
        answer["data"] = result.data
    return answer
