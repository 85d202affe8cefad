"""The fast path: each record's JSON text decoded and validated by msgspec into a struct type
generated from the registry, and kept as it came for the envelope's `data`.

The struct accepts a record only when the registry's validator (`tributary.schema`) would accept
the record as orjson parses it, and only when orjson can parse it at all: every value the struct
holds is typed and checked by msgspec (strings are valid UTF-8, numbers fit a double), undeclared
fields are refused rather than skipped unchecked, and what msgspec cannot say the same way (enums,
timestamps, `any`, untyped objects and arrays, and fields that hold one) is kept as its raw JSON
and checked after decoding by orjson and the registry's own validator. Anything the struct does
not accept takes the slow path, which parses the record with orjson and asks the registry's
validator, exactly as before: a record the fast path refuses costs more, never a wrong verdict.
The property test in tests/api/test_fastpath.py holds the two to the same verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, NamedTuple, cast

import msgspec
import orjson

from tributary.dataset import Dataset, scalar_text
from tributary.schema import FieldSpec, FieldType, RecordValidator, SchemaSpec
from tributary_api.body import (
    BodyFormat,
    check_counts,
    check_value_count,
    parse_records,
    raw_array,
    record_texts,
)

# orjson parses integers beyond 64 bits as floats; msgspec keeps them exact. Bounding integer
# fields to int64 sends the rest (rare) to the slow path, which sees what orjson sees.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT64_CHARS = len(str(_INT64_MIN))

_Check = Callable[[dict[str, Any]], bool]


class Entry(NamedTuple):
    """One record of a request: its JSON text when the body was split into texts (None when it
    was parsed whole), and either the identity fields the fast path read (`ids`, the record is
    valid) or the record as orjson parsed it (`value`, the registry's validator decides)."""

    raw: bytes | None
    ids: dict[str, Any] | None
    value: Any


def _int_meta(spec: FieldSpec) -> msgspec.Meta | None:
    low = _INT64_MIN if spec.minimum is None else max(_INT64_MIN, math.ceil(spec.minimum))
    high = _INT64_MAX if spec.maximum is None else min(_INT64_MAX, math.floor(spec.maximum))
    return None if low > high else msgspec.Meta(ge=low, le=high)


def _annotation(spec: FieldSpec, name: str) -> Any | None:
    """The msgspec type accepting exactly the non-absent values `spec` accepts, or None when
    msgspec cannot say it the same way (the field is then checked after decoding)."""
    if spec.enum is not None or spec.type in (FieldType.TIMESTAMP, FieldType.ANY):
        return None
    ann: Any
    match spec.type:
        case FieldType.STRING:
            ann = Annotated[
                str,
                msgspec.Meta(
                    min_length=spec.min_length, max_length=spec.max_length, pattern=spec.pattern
                ),
            ]
        case FieldType.INTEGER:
            meta = _int_meta(spec)
            if meta is None:
                return None
            ann = Annotated[int, meta]
        case FieldType.NUMBER:
            meta = _int_meta(spec)
            if meta is None:
                return None
            # int | float: a number keeps the type orjson gives it (an id "1" stays "1").
            exact = msgspec.Meta(ge=spec.minimum, le=spec.maximum)
            ann = Annotated[int, meta] | Annotated[float, exact]
        case FieldType.BOOLEAN:
            ann = bool
        case FieldType.OBJECT:
            if spec.fields is None:
                return None  # untyped contents: msgspec would hold big integers orjson refuses
            nested = _struct(spec.fields, f"{name}_")
            if nested is None:
                return None
            ann = nested
        case FieldType.ARRAY:
            item = None if spec.items is None else _annotation(spec.items, f"{name}_item")
            if item is None:
                return None
            ann = Annotated[
                list[item],  # type: ignore[valid-type]
                msgspec.Meta(min_length=spec.min_length, max_length=spec.max_length),
            ]
    return ann | None if spec.nullable else ann


def _struct(fields: dict[str, FieldSpec], prefix: str) -> type[msgspec.Struct] | None:
    """A struct for an object whose every field msgspec can type, else None."""
    members: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, (name, spec) in enumerate(fields.items()):
        ann = _annotation(spec, f"{prefix}{i}")
        if ann is None:
            return None
        attr = f"f{i}"
        rename[attr] = name
        members.append((attr, ann) if spec.required else (attr, ann, None))
    return msgspec.defstruct(
        f"{prefix}Record",
        members,
        kw_only=True,
        forbid_unknown_fields=True,  # never skipped unchecked: the slow path sees them
        gc=False,
        rename=rename,
    )


class FastSchema:
    """One dataset's fast path: `check(text)` returns the identity fields of a record the
    registry's validator accepts, or None when the slow path must decide."""

    def __init__(self, dataset: Dataset, identity: Sequence[str]) -> None:
        schema = dataset.schema
        members: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        self._post: list[tuple[str, str, _Check]] = []
        self._typed_ids: list[tuple[str, str]] = []
        self._raw_ids: set[str] = set()
        wanted = set(identity)
        for i, (name, spec) in enumerate(schema.fields.items()):
            attr = f"f{i}"
            rename[attr] = name
            ann = _annotation(spec, f"{dataset.name}_{i}_")
            if ann is None:  # kept as raw JSON, checked after decoding by the registry itself
                ann = msgspec.Raw
                one = RecordValidator(SchemaSpec(fields={name: spec}))
                self._post.append((attr, name, one.is_valid))
                if name in wanted:
                    self._raw_ids.add(name)
            elif name in wanted:
                self._typed_ids.append((attr, name))
            members.append((attr, ann) if spec.required else (attr, ann, None))
        # An identity field the schema does not declare is an undeclared field: slow path.
        struct = msgspec.defstruct(
            f"{dataset.name}_Record",
            members,
            kw_only=True,
            forbid_unknown_fields=True,
            gc=False,
            rename=rename,
        )
        self._decode = msgspec.json.Decoder(struct).decode
        self._decode_all = msgspec.json.Decoder(list[struct]).decode  # type: ignore[valid-type]
        # The whole-body path reads the id and partition key straight off typed attributes; a
        # dataset whose id is more than one field's text (`version_field`) uses `check`.
        attrs = {name: attr for attr, name in self._typed_ids}
        # A required, non-nullable integer's text is `str` of it (what `scalar_text` gives,
        # without a call); a nullable one may be None, whose text is None (a derived id).
        self._exact_ints = {
            attrs[n]
            for n, spec in schema.fields.items()
            if n in attrs and spec.type is FieldType.INTEGER and spec.required and not spec.nullable
        }
        self._batch_ok = not self._post and dataset.version_field is None
        scalar = (FieldType.STRING, FieldType.INTEGER, FieldType.NUMBER, FieldType.BOOLEAN)
        fields = schema.fields.values()
        # A record of scalars only, with a required field: see `values_bound`.
        self._member_bytes = (
            min(len(name.encode()) for name in schema.fields) + 4
            if schema.fields
            and all(f.type in scalar for f in fields)
            and any(f.required for f in fields)
            else None
        )
        self._id_attr = attrs.get(dataset.id_field or "")
        self._key_attr = attrs.get(dataset.partition_key or "")

    def values_bound(self, size: int) -> int | None:
        """At most the JSON values a body of `size` bytes holds when it decodes as an array of
        this dataset's records (None: no bound short of counting them), so `check_values`
        need not count them on a body that `batch` takes.

        For records of scalar fields only, one of them required: a body of R records with M
        members in all holds 1 + R + M values, R <= M (every record has a member), and every
        member spells its key (at least the shortest declared name, quoted), a colon and a
        value: M <= size / (shortest name + 4).
        """
        if not self._batch_ok or self._member_bytes is None:
            return None
        return 1 + 2 * (size // self._member_bytes)

    def batch(self, body: bytes | bytearray, max_records: int | None) -> FastBatch | None:
        """A JSON array body of at most `max_records`, every record valid, decoded in two C
        calls (the structs, and each record's text), else None (the caller then checks record
        by record)."""
        if not self._batch_ok:
            return None
        try:
            # Without whitespace between tokens: each record's text is its envelope's `data`.
            body = msgspec.json.format(body, indent=-1)
            # The texts first: they count the records, so a body past `max_records` is
            # refused before a struct (and a copy of its strings) is built for any of them.
            # The caller has counted the values, or bounded the elements by the size.
            texts: list[Any] = raw_array(max_records)(body)
            records = self._decode_all(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if not records:
            return None
        ids = _texts(records, self._id_attr, self._exact_ints)
        key_attr, exact = self._key_attr, self._key_attr in self._exact_ints
        if exact:  # an int64's text is short ASCII: made when a sink asks for the keys
            values = list(map(attrgetter(cast("str", key_attr)), records))
            return FastBatch(
                texts, ids, lambda: cast("list[str | None]", int_texts(values)), _INT64_CHARS
            )
        # The records (their strings too) are not kept past this call: the keys are made now.
        keys = [
            k if k is not None and len(k) <= 256 and k.isascii() else None
            for k in _texts(records, key_attr, self._exact_ints)
        ]
        return FastBatch(texts, ids, lambda: keys, None)

    def check(self, text: bytes) -> dict[str, Any] | None:
        """The identity fields (as orjson would give them) of a valid record, else None."""
        try:
            record = self._decode(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        ids = {name: getattr(record, attr) for attr, name in self._typed_ids}
        for attr, name, is_valid in self._post:
            raw = getattr(record, attr)
            if raw is None:  # absent (a present null is the text `null`)
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None
            if not is_valid({name: value}):
                return None
            if name in self._raw_ids:
                ids[name] = value
        return ids


@dataclass(frozen=True, slots=True)
class FastBatch:
    """A body whose every record the fast path accepted: each record's JSON text (one line), the
    producer's id as text (None: the id is derived) and the partition key field's text (None:
    the envelope id is the key), per record, as `Dataset.record_id` and
    `Dataset.partition_key_for` would read them."""

    texts: Sequence[Any]  # bytes-like (msgspec.Raw): written into the envelope as they are
    ids: list[str | None]
    # Read when a sink needs the keys (the memory and S3 sinks do not), with an upper bound
    # on their length when one is known without reading them (an integer field's).
    keys: Callable[[], list[str | None]]
    key_chars: int | None

    def __len__(self) -> int:
        return len(self.texts)


def _texts(records: Sequence[Any], attr: str | None, ints: set[str]) -> list[str | None]:
    """`scalar_text` of one typed attribute of every record (all None without one)."""
    if attr is None:
        return [None] * len(records)
    values = list(map(attrgetter(attr), records))
    if attr in ints:
        return cast("list[str | None]", int_texts(values))
    return list(map(scalar_text, values))


_encode = msgspec.json.Encoder().encode


def int_texts(values: list[int]) -> list[str]:
    """`str` of each integer, made in C: one JSON array of them, split at its commas (an
    integer's JSON text is its decimal `str`, and holds no comma). For exact `int`s only, as
    the fast path's integer fields decode them (msgspec refuses `true`, `1.0` and values past
    int64 there, `_int_meta`): a bool would give JSON's `true`, not `str`'s `True`."""
    if not values:
        return []
    return _encode(values)[1:-1].decode().split(",")


def compact(text: bytes) -> bytes:
    """`text` (one JSON value) without whitespace between its tokens, strings and numbers kept
    as they are spelled: an envelope's `data` costs what the record costs, however the producer
    indented it. A text msgspec cannot read keeps its spaces, on one line (a raw JSON string
    holds no line break, so they are whitespace): the slow path reads it."""
    try:
        return msgspec.json.format(text, indent=-1)
    except msgspec.DecodeError:
        return text.replace(b"\n", b" ").replace(b"\r", b" ")


def identity_fields(dataset: Dataset) -> tuple[str, ...]:
    """Every record field the envelope id and the partition key are made from (a dataset's
    `version_field` is part of the id)."""
    names = (dataset.id_field, dataset.partition_key, dataset.version_field)
    return tuple(n for n in names if n is not None)


class FastPath:
    """The fast schemas of a registry's datasets, compiled once at start-up."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self._schemas = {d.name: FastSchema(d, identity_fields(d)) for d in datasets}

    def read(
        self,
        dataset: str,
        body: bytes | bytearray,
        fmt: BodyFormat,
        max_values: int,
        max_records: int | None,
    ) -> list[Entry] | FastBatch:
        """The records of one body, checked by the fast path where it can (`BodyError` as
        `parse_records` raises it: counts first, on the bytes, then malformed bodies)."""
        schema = self._schemas[dataset]
        if fmt is BodyFormat.JSON:
            # Values counted on the bytes first (msgspec builds a whole array before checking
            # its length), unless the size bounds them: the values a body of records holds
            # (`values_bound`) and the elements `batch` splits first (each is at least a byte
            # and a comma). The records are counted by that split (`raw_array`), refused past
            # `max_records` before the typed decode.
            bound = schema.values_bound(len(body))
            counted = bound is None or bound > max_values or len(body) // 2 + 1 > max_values
            if counted:
                check_value_count(body, fmt, max_values)
            batch = schema.batch(body, max_records)
            if batch is not None:
                return batch
            if not counted:  # not a body of records after all: counted before parsing it
                check_value_count(body, fmt, max_values)
        else:
            check_counts(body, fmt, max_values, max_records)
        texts = record_texts(body, fmt, max_records)
        entries = None if texts is None else self.entries(dataset, texts)
        if entries is None:  # not split into texts, or one is not JSON: today's parse, whole
            entries = parsed_entries(parse_records(body, fmt, max_values, max_records))
        return entries

    def entries(self, dataset: str, texts: Sequence[bytes]) -> list[Entry] | None:
        """Entries for the texts of one body, or None when one of them is not JSON that orjson
        reads (the caller then parses the body whole, for today's error message)."""
        check = self._schemas[dataset].check
        out: list[Entry] = []
        append = out.append
        for text in map(compact, texts):
            ids = check(text)
            if ids is not None:
                append(Entry(text, ids, None))
                continue
            try:
                append(Entry(text, None, orjson.loads(text)))
            except orjson.JSONDecodeError:
                return None
        return out


def parsed_entries(records: Sequence[Any]) -> list[Entry]:
    """Entries for records parsed whole (a single object, `{"records": [...]}`)."""
    return [Entry(None, None, record) for record in records]
