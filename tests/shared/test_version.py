"""`version_field`: the registry's checks and the `<id>@<version>` envelope id every writer
makes, one spelling per version (the importer's cursor ids spell it the same way)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary.dataset import DatasetRegistry
from tributary.errors import ConfigError
from tributary.schema import FieldType
from tributary.version import canonical_instant, version_text
from tributary_importer.cursor import CursorType, canonical

ITEMS = """
datasets:
  items:
    id_field: id
    version_field: updated_at
    schema:
      fields:
        id: {type: integer, required: true}
        updated_at: {type: timestamp, required: true}
"""


def test_envelope_id_carries_the_version_in_one_spelling(registry: DatasetRegistry) -> None:
    items = registry["items"]
    assert items.version_field == "updated_at"
    spellings = ["2026-03-01T10:00:00Z", "2026-03-01T12:00:00+02:00", "2026-03-01T10:00:00.000"]
    ids = {items.envelope_id({"id": 7, "updated_at": s}) for s in spellings}
    assert ids == {"7@2026-03-01T10:00:00Z"}
    assert items.envelope_id({"id": 7, "updated_at": "2026-03-01T10:00:00.250Z"}) == (
        "7@2026-03-01T10:00:00.25Z"
    )
    assert items.envelope_id({"name": "no id"}) is None  # the writer derives one
    # Versions of one item share a shard: the partition key is the item's own id.
    assert items.partition_key_for({"id": 7}, "7@2026-03-01T10:00:00Z") == "7"
    # Datasets without a version field keep the producer's id as it is.
    assert registry["posts"].envelope_id({"id": 3, "updated_at": "x"}) == "3"


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("{type: timestamp}", "required: true"),
        ("{type: timestamp, required: true, nullable: true}", "not nullable"),
        ("{type: object, required: true}", "timestamp"),
        # A float merges versions past its precision into one id: declare decimals a string.
        ("{type: number, required: true}", "integer|string|timestamp"),
    ],
)
def test_registry_refuses_a_version_field_that_cannot_name_a_version(
    field: str, problem: str
) -> None:
    text = ITEMS.replace("{type: timestamp, required: true}", field)
    with pytest.raises(ConfigError, match=problem):
        DatasetRegistry.from_yaml(text)
    with pytest.raises(ConfigError, match="needs an id_field"):
        DatasetRegistry.from_yaml(ITEMS.replace("    id_field: id\n", ""))
    with pytest.raises(ConfigError, match="must be a schema field"):
        DatasetRegistry.from_yaml(ITEMS.replace("version_field: updated_at", "version_field: x"))


def test_numbers_and_text_as_versions() -> None:
    assert version_text(3, FieldType.INTEGER) == "3"
    assert version_text(1.50, FieldType.NUMBER) == "1.5"
    assert version_text(1e2, FieldType.NUMBER) == "100"
    assert version_text("v2", FieldType.STRING) == "v2"
    assert version_text(None, FieldType.TIMESTAMP) is None
    assert version_text("not a time", FieldType.TIMESTAMP) == "not a time"


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
    st.sampled_from(["", "0", "123", "0000000", "1234567"]),
)
def test_instants_spell_as_the_importers_cursor_ids(
    moment: datetime, offset_min: int, extra: str
) -> None:
    zone = timezone(timedelta(minutes=offset_min))
    text = moment.replace(tzinfo=UTC).astimezone(zone).isoformat()
    if extra and "." not in text:
        text = text[:19] + "." + extra + text[19:]
    assert canonical_instant(text) == canonical(text, CursorType.TIMESTAMP)
    assert canonical_instant(text.replace("+00:00", "Z")) == canonical_instant(text)


def test_a_string_id_holding_an_at_sign_is_refused_in_a_versioned_dataset() -> None:
    """ "a@b" at version "c" and "a" at version "b@c" would be one id, "a@b@c"."""
    text = ITEMS.replace(
        "id: {type: integer, required: true}", "id: {type: string, required: true}"
    )
    items = DatasetRegistry.from_yaml(text)["items"]
    at = "2026-03-01T10:00:00Z"
    problems = items.validator.errors({"id": "a@b", "updated_at": at})
    assert [(p.field, "must match pattern" in p.message) for p in problems] == [("id", True)]
    assert items.validator.errors({"id": "ab", "updated_at": at}) == []
    unversioned = DatasetRegistry.from_yaml(text.replace("    version_field: updated_at\n", ""))
    assert unversioned["items"].validator.errors({"id": "a@b", "updated_at": at}) == []
