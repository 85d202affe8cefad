"""The registry's derived tables, relationalize and current blocks: what loads, and the clear
error for each bad entry."""

from __future__ import annotations

import pytest

from tests.conftest import DATASETS_CONFIG
from tributary.dataset import DatasetRegistry
from tributary.derived import TableKind
from tributary.errors import ConfigError

BASE = """
datasets:
  orders:
    schema:
      fields:
        id: {type: integer}
        userId: {type: integer}
        lines: {type: array, items: {type: object, fields: {sku: {type: string}}}}
        tags: {type: array, items: {type: string}}
    curated: {relationalize: [lines], current: {key: id, order_by: _received_at}}
  users:
    schema: {fields: {id: {type: integer}, name: {type: string}}}
"""


def test_shipped_registry_declares_every_table() -> None:
    registry = DatasetRegistry.from_file(DATASETS_CONFIG)
    kinds = {t.name: t.kind for t in registry.tables()}
    assert kinds["orders_lines"] is TableKind.CHILD
    assert kinds["items_current"] is TableKind.CURRENT
    assert kinds["posts_with_users"] is TableKind.DERIVED
    join = registry.derived["posts_with_users"].joins[0]
    assert (join.dataset, join.keys, join.how.value, join.prefix) == (
        "users",
        {"userId": "id"},
        "left",
        "user_",
    )
    assert registry.derived["posts_with_users"].inputs() == ("posts", "users")


def test_a_registry_with_every_kind_loads() -> None:
    text = BASE + "derived:\n  o: {base: orders, joins: [{dataset: users, keys: {userId: id}}]}\n"
    tables = DatasetRegistry.from_yaml(text).tables()
    assert [(t.name, t.kind.value) for t in tables] == [
        ("orders", "dataset"),
        ("orders_lines", "child"),
        ("orders_current", "current"),
        ("users", "dataset"),
        ("o", "derived"),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("relationalize: [lines]", "relationalize: [tags]"),
            "array field whose items are objects",
        ),
        (
            ("relationalize: [lines]", "relationalize: [nope]"),
            "array field whose items are objects",
        ),
        (("", "derived:\n  o: {base: orders, joins: [{dataset: ghost, keys: {a: b}}]}\n"), "ghost"),
        (("", "derived:\n  orders_lines: {base: orders}\n"), "used twice"),
        (("", "derived:\n  o: {base: orders, joins: [{dataset: users, on: {a: b}}]}\n"), "keys"),
        (("order_by: _received_at", "order_by: 'bad name'"), "must match"),
    ],
)
def test_bad_entries_name_what_is_wrong(change: tuple[str, str], message: str) -> None:
    old, new = change
    text = BASE.replace(old, new) if old else BASE + new
    with pytest.raises(ConfigError, match=message):
        DatasetRegistry.from_yaml(text)
