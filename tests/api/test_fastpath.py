"""The fast path (msgspec structs from the registry, records kept as their own JSON text) gives
the same verdicts, the same error reports and envelopes of the same meaning as the slow path
(orjson + the registry's validator), which is what the API did for every record before."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from tributary.batch import encode_ndjson_gz
from tributary.clock import iso_utc
from tributary.dataset import Dataset, DatasetRegistry, scalar_text
from tributary.envelope import derived_id, encode_envelope, sign_envelope
from tributary.errors import ConfigError
from tributary.memory_writer import MemoryRawWriter
from tributary.testing import FakeClock, MemoryMetrics
from tributary_api.body import BodyError, BodyFormat, parse_records
from tributary_api.fastpath import FastPath, FastSchema, compact, identity_fields, int_texts
from tributary_api.idempotency import META_DIGEST, content_digest
from tributary_api.ingest import Ingestor, IngestRequest, _envelope_parts, envelope_id
from tributary_api.sink import Delivery, EnvelopeLines, MemorySink, S3Sink
from tributary_stack import samples

# --- JSON texts, including the ones where orjson and msgspec part ways ----------------------


@dataclass(frozen=True)
class Literal:
    """A JSON number spelled exactly so (beyond a double, beyond 64 bits, `-0`, `1E2`...)."""

    text: str


LITERALS = st.sampled_from(
    [
        Literal(t)
        for t in (
            "1e400",
            "-1e400",
            "1" * 400,
            "99999999999999999999",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "-0",
            "1.0",
            "1E2",
            "2.5e-3",
        )
    ]
)
STRINGS = st.sampled_from(
    ["", "a", "ABC", "abcd", "é", "😀", "2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"]
) | st.text(max_size=4)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.integers()
    | st.floats(-5, 5)
    | STRINGS
    | LITERALS
)
KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)


def text_of(value: Any, spaced: bool, ascii_only: bool) -> str:
    """`value` as JSON text: compact or pretty-printed over lines, UTF-8 or \\u escapes."""
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, dict):
        sep = ",\n  " if spaced else ","
        members = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}{': ' if spaced else ':'}"
            f"{text_of(v, spaced, ascii_only)}"
            for k, v in value.items()
        )
        return "{" + sep.join(members) + "}"
    if isinstance(value, list):
        return (
            "["
            + (", " if spaced else ",").join(text_of(v, spaced, ascii_only) for v in value)
            + "]"
        )
    return json.dumps(value, ensure_ascii=ascii_only)


@st.composite
def field_specs(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["string", "integer", "number", "boolean", "object", "array", "timestamp", "any"]
        )
    )
    spec: dict[str, Any] = {
        "type": kind,
        "required": draw(st.booleans()),
        "nullable": draw(st.booleans()),
    }
    if kind in ("integer", "number") and draw(st.booleans()):
        spec["minimum"] = draw(st.integers(-3, 3) | st.floats(-3, 3))
    if kind in ("integer", "number") and draw(st.booleans()):
        spec["maximum"] = draw(st.integers(-3, 3) | st.floats(-3, 3))
    if kind in ("string", "array") and draw(st.booleans()):
        spec["min_length"] = draw(st.integers(0, 3))
    if kind in ("string", "array") and draw(st.booleans()):
        spec["max_length"] = draw(st.integers(0, 3))
    if kind == "string" and draw(st.booleans()):
        spec["pattern"] = draw(st.sampled_from(["^[A-Z]+$", "a", "^$", "b$"]))
    if draw(st.integers(0, 5)) == 0:
        spec["enum"] = draw(
            st.lists(
                st.none() | st.booleans() | st.integers(-5, 5) | STRINGS, min_size=1, max_size=3
            )
        )
    if kind == "object" and depth < 2 and draw(st.booleans()):
        spec["fields"] = draw(
            st.dictionaries(st.sampled_from(["a", "b", "c"]), field_specs(depth + 1), max_size=2)
        )
        spec["additional_fields"] = draw(st.sampled_from(["allow", "reject"]))
    if kind == "array" and depth < 2 and draw(st.booleans()):
        spec["items"] = draw(field_specs(depth + 1))
    return spec


def conforming(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that mostly meet `spec` (so valid records are common), sometimes anything."""
    kind = spec["type"]
    if "enum" in spec:
        base: st.SearchStrategy[Any] = st.sampled_from(spec["enum"])
    elif kind == "string":
        base = st.text(alphabet="aAbB", min_size=spec.get("min_length", 0), max_size=4)
    elif kind == "integer":
        base = st.integers(-4, 4) | LITERALS
    elif kind == "number":
        base = st.integers(-4, 4) | st.floats(-4, 4) | LITERALS
    elif kind == "boolean":
        base = st.booleans()
    elif kind == "timestamp":
        base = st.sampled_from(
            ["2026-01-01T00:00:00Z", "2026-13-01", "0001-01-01T00:00:00+01:00", "x"]
        )
    elif kind == "object" and "fields" in spec:
        base = records_of(spec["fields"])
    elif kind == "array" and "items" in spec:
        base = st.lists(conforming(spec["items"]), max_size=4)
    else:
        base = VALUES
    if spec.get("nullable"):
        base = base | st.none()
    return st.one_of(base, base, base, VALUES)


def records_of(fields: dict[str, Any]) -> st.SearchStrategy[Any]:
    @st.composite
    def build(draw: st.DrawFn) -> Any:
        record: dict[str, Any] = {}
        for name, spec in fields.items():
            # Optional fields come and go; now and then a required one goes missing too.
            if (spec.get("required") or draw(st.booleans())) and draw(st.integers(0, 15)):
                record[name] = draw(conforming(spec))
        if draw(st.integers(0, 6)) == 0:
            record[draw(KEYS)] = draw(VALUES)  # an undeclared field
        return record

    return st.one_of(build(), build(), build(), VALUES)


def dataset_of(
    fields: dict[str, Any], additional: str, id_field: str | None, key: str | None
) -> Dataset:
    spec = {"datasets": {"d": {"schema": {"fields": fields, "additional_fields": additional}}}}
    if id_field is not None:
        spec["datasets"]["d"]["id_field"] = id_field
    if key is not None:
        spec["datasets"]["d"]["partition_key"] = key
    return DatasetRegistry.from_yaml(json.dumps(spec))["d"]


SCHEMAS = st.tuples(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), field_specs(), max_size=4),
    st.sampled_from(["allow", "reject"]),
    st.sampled_from([None, "a", "a", "e"]),
    st.sampled_from([None, "b", "b", "e"]),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Dataset, list[str]]:
    fields, additional, id_field, key = draw(SCHEMAS)
    try:
        dataset = dataset_of(fields, additional, id_field, key)
    except ConfigError:  # e.g. minimum on a type that has none: not a registry anyone can load
        reject()
    records = draw(st.lists(records_of(fields), min_size=1, max_size=6))
    spaced, ascii_only = draw(st.booleans()), draw(st.booleans())
    return dataset, [text_of(r, spaced, ascii_only) for r in records]


# --- the per-record verdict ------------------------------------------------------------------


@given(cases())
@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@example(case=(dataset_of({"a": {"type": "number"}}, "allow", "a", None), ['{"a":1}']))
@example(
    case=(
        dataset_of({"b": {"type": "integer"}}, "allow", None, "b"),
        ['{"b":99999999999999999999}'],
    )
)
@example(
    case=(dataset_of({"a": {"type": "any"}}, "allow", "a", None), ['{"a":18446744073709551616}'])
)
def test_a_record_the_fast_path_accepts_is_one_the_validator_accepts(
    case: tuple[Dataset, list[str]],
) -> None:
    dataset, texts = case
    fast = FastSchema(dataset, identity_fields(dataset))
    for text in texts:
        ids = fast.check(text.encode())
        if ids is None:
            continue  # the slow path decides, as before
        parsed = orjson.loads(text)  # orjson reads every text the fast path accepts
        assert dataset.validator.is_valid(parsed), (text, dataset.validator.errors(parsed))
        assert dataset.record_id(ids) == dataset.record_id(parsed), text
        rid = dataset.record_id(parsed) or "x"
        assert dataset.partition_key_for(ids, rid) == dataset.partition_key_for(parsed, rid)


def test_the_fast_path_takes_every_valid_post() -> None:
    """Not vacuous: the registry's posts, as producers send them, never need the slow path."""

    registry = DatasetRegistry.from_file(_config())
    fast = FastSchema(registry["posts"], identity_fields(registry["posts"]))
    for post in samples.posts(200):
        assert fast.check(orjson.dumps(post)) == {"id": post["id"], "userId": post["userId"]}


def _config() -> Any:

    return Path(__file__).resolve().parents[2] / "config" / "datasets.yaml"


# --- whole requests: same answer, same error report, same envelopes in meaning ----------------


def reference(dataset: Dataset, body: bytes, scope: str, request_id: str) -> Any:
    """What the API did before the fast path: parse whole, validate each parsed record."""
    try:
        records = parse_records(body, BodyFormat.JSON)
    except BodyError as exc:
        return ("refused", exc.status, str(exc))
    accepted, errors = [], []
    for index, record in enumerate(records):
        rid = dataset.envelope_id(record) or derived_id(scope, request_id, index)
        problems = dataset.validator.errors(record)
        if problems:
            errors += [(index, p.field, p.message) for p in problems]
        else:
            accepted.append((rid, dataset.partition_key_for(record, rid), record))
    return ("ingested", accepted, errors)


def through_the_fast_path(dataset: Dataset, body: bytes, scope: str, request_id: str) -> Any:
    try:
        entries = FastPath([dataset]).read(dataset.name, body, BodyFormat.JSON, 100_000, None)
    except BodyError as exc:
        return ("refused", exc.status, str(exc))
    sink, quarantine = MemorySink(), MemoryRawWriter()
    ingestor = Ingestor(sink, quarantine, FakeClock(), MemoryMetrics(), 1024 * 1024)
    result = asyncio.run(ingestor.ingest(IngestRequest("k", dataset, entries, request_id, False)))
    accepted = []
    for delivery in sink.deliveries:
        for out in delivery.records:
            envelope = orjson.loads(out.line)
            assert b"\n" not in out.line
            assert envelope["id"] == out.id
            accepted.append((out.id, out.partition_key, envelope["data"]))
    errors = [(e.index, e.field, e.message) for e in result.errors]
    return ("ingested", accepted, errors)


@given(cases(), st.sampled_from([", ", ",", ",\n"]))
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@example(
    case=(dataset_of({"a": {"type": "integer"}}, "allow", "a", None), ['{"a":1}', '{"a":1e400}']),
    sep=",",
)
@example(  # a required, nullable integer id that is null: a derived id each, never "None"
    case=(
        dataset_of(
            {"a": {"type": "integer", "required": True, "nullable": True}}, "allow", "a", "a"
        ),
        ['{"a":null}', '{"a":null}'],
    ),
    sep=",",
)
def test_a_request_gets_the_answer_it_got_before(case: tuple[Dataset, list[str]], sep: str) -> None:
    dataset, texts = case
    body = ("[" + sep.join(texts) + "]").encode()
    scope = f"k/{dataset.name}"
    request_id = "req-1"
    assert through_the_fast_path(dataset, body, scope, request_id) == reference(
        dataset, body, scope, request_id
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"[{},",
        b'{"a": 1}',
        b'{"records": [{"a": 1}, {"a": "x"}]}',
        b'[{"a": 1}, {"a": 1e400}]',
        b'[{"a": "\\ud800"}]',
        b'[{"a": "\xff"}]',
        b'[{"a": 1}] x',
        b'[{"a": 1,\n "b": [1,\r\n 2]}]',
    ],
)
def test_bodies_the_fast_path_cannot_split_get_the_answer_they_got_before(body: bytes) -> None:
    dataset = dataset_of({"a": {"type": "integer"}}, "allow", "a", None)
    assert through_the_fast_path(dataset, body, "k/d", "r") == reference(dataset, body, "k/d", "r")


def test_an_envelope_line_is_today_s_bytes_for_a_compact_body() -> None:
    """For a body as orjson writes it the envelope line is byte for byte what it was."""

    registry = DatasetRegistry.from_file(_config())
    posts = registry["posts"]
    record = {"userId": 3, "id": 21, "title": "t", "body": "b\nc"}
    entries = FastPath([posts]).read("posts", orjson.dumps([record]), BodyFormat.JSON, 100, None)
    sink = MemorySink()
    clock = FakeClock()
    ingestor = Ingestor(sink, MemoryRawWriter(), clock, MemoryMetrics(), 1024 * 1024)
    asyncio.run(ingestor.ingest(IngestRequest("k", posts, entries, "r", False)))
    (out,) = sink.deliveries[0].records

    received = clock.now().replace(microsecond=clock.now().microsecond // 1000 * 1000)
    assert out.line == encode_envelope("posts", "21", "api:k", iso_utc(received), record)


PRETTY_DATASETS = [
    # every field typed: the whole-body path
    dataset_of({"a": {"type": "array", "items": {"type": "integer"}}}, "allow", None, None),
    # an `any` field: record by record
    dataset_of({"a": {"type": "any"}}, "allow", None, None),
]


@pytest.mark.parametrize("dataset", PRETTY_DATASETS)
@pytest.mark.parametrize(
    ("fmt", "indent"), [(BodyFormat.JSON, 2), (BodyFormat.JSON, 60), (BodyFormat.NDJSON, None)]
)
def test_a_pretty_printed_record_is_enveloped_compact(
    dataset: Dataset, fmt: BodyFormat, indent: int | None
) -> None:
    """The envelope's `data` carries no whitespace between tokens, so a pretty-printed record
    whose compact form fits is accepted (its indent=60 form is over the 1 MiB record limit)
    and costs no more Kinesis payload than the same record sent compact."""
    record = {"a": list(range(20_000))}
    if fmt is BodyFormat.NDJSON:
        body = (json.dumps(record) + "\n" + json.dumps(record, separators=(" , ", " : "))).encode()
    else:
        body = json.dumps([record, record], indent=indent).encode()
    if indent == 60:
        assert len(body) > 2 * 1024 * 1024
    entries = FastPath([dataset]).read(dataset.name, body, fmt, 100_000, None)
    sink = MemorySink()
    ingestor = Ingestor(sink, MemoryRawWriter(), FakeClock(), MemoryMetrics(), 1024 * 1024)
    result = asyncio.run(ingestor.ingest(IngestRequest("k", dataset, entries, "r", False)))
    assert result.accepted == 2
    for out in sink.deliveries[0].records:
        assert out.line.endswith(b',"data":' + orjson.dumps(record) + b"}")


def test_an_undeclared_field_takes_the_slow_path() -> None:
    fast = FastSchema(dataset_of({"a": {"type": "integer"}}, "allow", None, None), ())
    assert fast.check(b'{"a": 1}') == {}
    assert fast.check(b'{"a": 1, "b": 1e400}') is None  # msgspec would skip it unchecked


@pytest.mark.parametrize("body", [b'[{"a": 1}, {"a": 2}]', b'[{"a": 1}, {"a": "x"}]', b'{"a": 1}'])
def test_an_idempotent_request_s_digest_is_over_the_parsed_records(body: bytes) -> None:
    """A retry in another layout is the same request, on every path (whole body, per record,
    parsed whole): the digest is today's, over the records as orjson parses them."""

    dataset = dataset_of({"a": {"type": "integer"}}, "allow", "a", None)
    entries = FastPath([dataset]).read("d", body, BodyFormat.JSON, 100, 500)
    sink, lake = MemorySink(), MemoryRawWriter()
    ingestor = Ingestor(sink, lake, FakeClock(), MemoryMetrics(), 1024 * 1024)
    asyncio.run(ingestor.ingest(IngestRequest("k", dataset, entries, "key-1", True)))
    (claim,) = [o for k, o in lake.objects.items() if k.startswith("_idempotency/")]
    expected = content_digest(parse_records(body, BodyFormat.JSON))
    assert claim.extra_metadata[META_DIGEST] == expected


# --- whole bodies in one call: the envelope bytes, the value count, the batch contract --------


class SigningMemorySink(MemorySink):
    """The memory sink sealing as the Kinesis sink does (HMAC-signed lines)."""

    takes_lines = False

    def seal(self, line: bytes) -> bytes:

        return sign_envelope(line, b"k" * 32)


def record_by_record_lines(
    dataset: Dataset, texts: list[bytes], key_name: str, received_at: str, request_id: str
) -> list[tuple[str, str, bytes]]:
    """The (id, partition key, line) the record-by-record path builds: `encode_envelope`'s
    layout around each record's compact text (what `_fast_lines` built before)."""

    head, middle = _envelope_parts(dataset.name, f"api:{key_name}", received_at)
    out = []
    for index, text in enumerate(texts):
        record = orjson.loads(text)
        rid = envelope_id(dataset, record, f"{key_name}/{dataset.name}", request_id, index)
        line = b"".join((head, orjson.dumps(rid), middle, compact(text), b"}"))
        out.append((rid, dataset.partition_key_for(record, rid), line))
    return out


ID_TEXTS = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=6
) | st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "é", "😀", "a/b", "</"])


@given(
    st.lists(ID_TEXTS, min_size=1, max_size=5),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=5, max_size=5),
    ID_TEXTS,
    st.sampled_from(["d", "posts", "a_b"]),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_the_envelopes_made_in_one_call_are_the_record_by_record_bytes(
    ids: list[str], keys: list[int], key_name: str, name: str, signed: bool, spaced: bool
) -> None:
    """Ids, key names and dataset names of any characters (escapes where msgspec and orjson
    might differ), integer and string partition keys, signed or not: byte for byte the lines,
    ids and keys the record-by-record layout gives, and the answer's ids in order."""
    spec = {
        "datasets": {
            name: {
                "id_field": "id",
                "partition_key": "k" if spaced else "id",
                "schema": {
                    "fields": {
                        "id": {"type": "string", "required": True},
                        "k": {"type": "integer", "required": True},
                        "t": {"type": "string"},
                    }
                },
            }
        }
    }
    dataset = DatasetRegistry.from_yaml(json.dumps(spec))[name]
    records = [{"id": i, "k": k, "t": "x, y: [z]"} for i, k in zip(ids, keys, strict=False)]
    texts = [json.dumps(r).encode() if spaced else orjson.dumps(r) for r in records]
    body = b"[" + b",".join(texts) + b"]"
    entries = FastPath([dataset]).read(name, body, BodyFormat.JSON, 100_000, None)
    assert not isinstance(entries, list)  # the whole-body path, not record by record
    sink = SigningMemorySink() if signed else MemorySink()
    clock = FakeClock()
    ingestor = Ingestor(sink, MemoryRawWriter(), clock, MemoryMetrics(), 1024 * 1024)
    result = asyncio.run(ingestor.ingest(IngestRequest(key_name, dataset, entries, "r", False)))

    received = iso_utc(clock.now().replace(microsecond=clock.now().microsecond // 1000 * 1000))
    expected = record_by_record_lines(dataset, texts, key_name, received, "r")
    got = [(r.id, r.partition_key, r.line) for r in sink.deliveries[0].records]
    assert got == [(rid, key, sink.seal(line)) for rid, key, line in expected]
    assert result.ids == [rid for rid, _, _ in expected]


def test_the_s3_sink_stores_a_batch_s_ndjson_as_encode_ndjson_gz_would() -> None:

    lines = [b'{"a":1}', b'{"a":2}', b'{"b":[1,2]}']
    batch = EnvelopeLines(b"\n".join(lines) + b"\n", ["1", "2", "3"], ["k", "k", "k"])
    assert batch.lines() == lines
    assert [r.line for r in batch] == lines
    assert batch.line_bytes() == sum(map(len, lines))
    writer = MemoryRawWriter()

    delivery = Delivery("d", "b1", datetime(2026, 1, 1, tzinfo=UTC), batch)
    asyncio.run(S3Sink(writer).deliver(delivery))
    (stored,) = writer.objects.values()
    assert stored.body == encode_ndjson_gz(lines)
    assert (stored.first, stored.last, stored.record_count) == ("1", "3", 3)


def value_count(value: Any) -> int:
    """The JSON values in `value` (containers and scalars; object keys are not values)."""
    if isinstance(value, dict):
        return 1 + sum(map(value_count, value.values()))
    if isinstance(value, list):
        return 1 + sum(map(value_count, value))
    return 1


SCALAR_SCHEMAS = st.dictionaries(
    st.sampled_from(["a", "bb", "ccc", "é"]),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["string", "integer", "number", "boolean"]),
            "required": st.booleans(),
        }
    ),
    min_size=1,
    max_size=3,
)


@given(
    SCALAR_SCHEMAS,
    st.data(),
    st.integers(1, 40),
    st.none() | st.integers(1, 12),
    st.sampled_from([",", ", ", ",\n "]),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_body_the_value_count_skips_holds_no_more_values_than_it_allows(
    fields: dict[str, Any],
    data: st.DataObject,
    max_values: int,
    max_records: int | None,
    sep: str,
) -> None:
    """`values_bound` is an upper bound on what a body the whole-body path takes holds, and a
    body refused before for its value or record count (413) is refused the same way, with the
    same code and message (the value count winning over the record count as before), whether
    or not the count was skipped."""
    dataset = dataset_of(fields, "allow", None, None)
    records = data.draw(st.lists(records_of(fields), min_size=1, max_size=12))
    body = ("[" + sep.join(text_of(r, sep != ",", False) for r in records) + "]").encode()
    fast = FastSchema(dataset, identity_fields(dataset))
    bound = fast.values_bound(len(body))
    if bound is not None and fast.batch(body, None) is not None:
        assert value_count(orjson.loads(body)) <= bound
    try:
        FastPath([dataset]).read("d", body, BodyFormat.JSON, max_values, max_records)
        got = None
    except BodyError as exc:
        got = (exc.status, exc.code, str(exc))
    try:
        parse_records(body, BodyFormat.JSON, max_values, max_records)
        expected = None
    except BodyError as exc:
        expected = (exc.status, exc.code, str(exc))
    if (expected is not None and expected[0] == 413) or (got is not None and got[0] == 413):
        assert got == expected


@pytest.mark.parametrize("records", [501, 2_000])
def test_a_body_over_the_record_limit_is_refused_before_its_records_are_decoded(
    records: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body of more valid records than `max_records` (the value count skipped or not) is
    refused 413 with today's message without a struct built for any of them."""

    registry = DatasetRegistry.from_file(_config())
    fast = FastPath([registry["posts"]])
    decoded: list[int] = []
    schema = fast._schemas["posts"]
    whole = schema._decode_all
    monkeypatch.setattr(schema, "_decode_all", lambda body: decoded.append(1) or whole(body))
    body = orjson.dumps(samples.posts(records))
    with pytest.raises(BodyError) as got:
        fast.read("posts", body, BodyFormat.JSON, 100_000, 500)
    with pytest.raises(BodyError) as expected:
        parse_records(body, BodyFormat.JSON, 100_000, 500)
    assert (got.value.status, got.value.code, str(got.value)) == (
        expected.value.status,
        expected.value.code,
        str(expected.value),
    )
    assert got.value.code == "too_many_records"
    assert decoded == []


class PaddingMemorySink(MemorySink):
    """A sealing sink whose seal leaves `{}` as it is and grows other lines by a varying
    amount (an encryption, say): nothing about the seal but `takes_lines` says it seals."""

    takes_lines = False

    def seal(self, line: bytes) -> bytes:
        return line + b"#" * (len(line) // 3)


def test_a_sink_that_seals_gets_every_line_sealed_and_its_bytes_counted() -> None:
    """The whole-body path asks the sink (`takes_lines`) rather than sniffing its seal: a
    sealing sink gets each line sealed as it is built, and BytesAccepted counts the sealed
    bytes."""

    registry = DatasetRegistry.from_file(_config())
    posts = registry["posts"]
    body = orjson.dumps([{"userId": 1, "id": i, "title": "t", "body": "b"} for i in range(1, 4)])
    entries = FastPath([posts]).read("posts", body, BodyFormat.JSON, 100_000, None)
    assert not isinstance(entries, list)  # the whole-body path
    sink, metrics = PaddingMemorySink(), MemoryMetrics()
    ingestor = Ingestor(sink, MemoryRawWriter(), FakeClock(), metrics, 1024 * 1024)
    asyncio.run(ingestor.ingest(IngestRequest("k", posts, entries, "r", False)))
    (delivery,) = sink.deliveries
    assert not isinstance(delivery.records, EnvelopeLines)
    plain = MemorySink()
    plain_ingestor = Ingestor(plain, MemoryRawWriter(), FakeClock(), MemoryMetrics(), 1024 * 1024)
    asyncio.run(plain_ingestor.ingest(IngestRequest("k", posts, entries, "r", False)))
    expected = [sink.seal(r.line) for r in plain.deliveries[0].records]
    assert [r.line for r in delivery.records] == expected
    assert metrics.totals[("BytesAccepted", (("dataset", "posts"),))] == sum(map(len, expected))


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1)))
def test_int_texts_are_each_integer_s_str(values: list[int]) -> None:
    """The ids and keys of an integer field are `str` of each integer, as `scalar_text` (the
    record-by-record path's) gives them."""
    assert int_texts(values) == [str(v) for v in values] == [scalar_text(v) for v in values]
