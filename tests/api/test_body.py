from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary_api.body import BodyError, BodyFormat, body_format, is_gzip, parse_records, read_body

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
RECORDS = st.lists(
    st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4), min_size=1, max_size=8
)


async def chunks_of(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@given(RECORDS, st.sampled_from(["array", "wrapped", "ndjson"]), st.booleans(), st.integers(1, 64))
@settings(max_examples=150, deadline=None)
async def test_every_body_form_yields_the_same_records(
    records: list[dict[str, Any]], form: str, gzipped: bool, chunk: int
) -> None:
    match form:
        case "array":
            body, fmt = orjson.dumps(records), BodyFormat.JSON
        case "wrapped":
            body, fmt = orjson.dumps({"records": records}), BodyFormat.JSON
        case _:
            body, fmt = b"\n".join(orjson.dumps(r) for r in records) + b"\n", BodyFormat.NDJSON
    wire = gzip.compress(body) if gzipped else body
    limit = max(len(body), len(wire))
    read = await read_body(chunks_of(wire, chunk), gzipped=gzipped, limit=limit)
    assert read == body
    assert parse_records(read, fmt) == records


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    for fmt in BodyFormat:
        status, records = 0, None
        try:
            records = parse_records(data, fmt)
        except BodyError as exc:
            status = exc.status
        assert status == 400 or isinstance(records, list)


def test_single_object_and_records_key_ambiguity() -> None:
    assert parse_records(b'{"a":1}', BodyFormat.JSON) == [{"a": 1}]
    assert parse_records(b'{"records":[{"a":1}]}', BodyFormat.JSON) == [{"a": 1}]
    # A record that merely has a `records` field alongside others is one record.
    assert parse_records(b'{"records":[1],"b":2}', BodyFormat.JSON) == [{"records": [1], "b": 2}]


@pytest.mark.parametrize(
    ("body", "fmt", "message"),
    [
        (b'{"a":', BodyFormat.JSON, "body is not valid JSON: .* line 1 column"),
        (b"", BodyFormat.JSON, "body is empty"),
        (b"42", BodyFormat.JSON, "must be a JSON object, an array"),
        (b'{"a":1}\n{"b":\n', BodyFormat.NDJSON, "NDJSON line 2 is not valid JSON"),
        (b"\n\n", BodyFormat.NDJSON, "no NDJSON lines"),
        (b"[]", BodyFormat.JSON, "holds no record"),
        (b' { "records" : [ ] } ', BodyFormat.JSON, "holds no record"),
    ],
)
def test_malformed_bodies_say_where(body: bytes, fmt: BodyFormat, message: str) -> None:
    with pytest.raises(BodyError, match=message) as info:
        parse_records(body, fmt)
    assert info.value.status == 400


async def test_zip_bomb_is_413_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)  # 200 MiB of zeros
    assert len(bomb) < 1024 * 1024
    with pytest.raises(BodyError, match="decompressed request body exceeds") as info:
        await read_body(chunks_of(bomb, 65536), gzipped=True, limit=5 * 1024 * 1024)
    assert info.value.status == 413


async def test_wire_size_is_capped_without_content_length() -> None:
    with pytest.raises(BodyError, match="request body exceeds the limit of 10") as info:
        await read_body(chunks_of(b"x" * 11, 3), gzipped=False, limit=10)
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (gzip.compress(b'{"a":1}', mtime=0)[:-6], "truncated"),
        (b"not gzip at all", "not valid gzip"),
    ],
    ids=["truncated gzip", "not gzip"],  # the same ids in every worker's collection
)
async def test_bad_gzip_is_400(wire: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message) as info:
        await read_body(chunks_of(wire), gzipped=True, limit=1000)
    assert info.value.status == 400


async def test_concatenated_gzip_members() -> None:
    wire = gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"a":2}\n')
    body = await read_body(chunks_of(wire), gzipped=True, limit=100)
    assert parse_records(body, BodyFormat.NDJSON) == [{"a": 1}, {"a": 2}]


def test_media_types_and_encodings() -> None:
    assert body_format(None) is BodyFormat.JSON
    assert body_format("application/json; charset=utf-8") is BodyFormat.JSON
    assert body_format("application/x-ndjson") is BodyFormat.NDJSON
    assert is_gzip("gzip")
    assert not is_gzip(None)
    assert not is_gzip("identity")
    with pytest.raises(BodyError, match="Content-Type 'text/csv'") as info:
        body_format("text/csv")
    assert info.value.status == 415
    with pytest.raises(BodyError, match="Content-Encoding 'br'"):
        is_gzip("br")


def test_zlib_sanity() -> None:  # the inflater really is gzip-only (wbits 16+)
    with pytest.raises(zlib.error):
        zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(zlib.compress(b"x"))


@given(
    st.lists(JSON_VALUES, max_size=12) | JSON_VALUES,
    st.sampled_from(["array", "wrapped", "ndjson", "spaced"]),
    st.integers(1, 10),
)
@settings(max_examples=300, deadline=None)
def test_the_record_count_before_parsing_agrees_with_the_parse(
    value: Any, form: str, limit: int
) -> None:
    """Refused with 413 too_many_records exactly when the parsed body holds more than `limit`
    records, in every body form (strings full of commas and brackets included)."""
    fmt = BodyFormat.NDJSON if form == "ndjson" else BodyFormat.JSON
    if form == "ndjson":
        if not isinstance(value, list):
            value = [value]
        body = b"\n".join(orjson.dumps(v) for v in value) + b"\n"
    elif form == "wrapped":
        body = orjson.dumps({"records": value})
    elif form == "spaced":
        body = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    else:
        body = orjson.dumps(value)
    try:
        expected = parse_records(body, fmt)
    except BodyError:
        return  # empty or not records: refused with 400 either way
    if len(expected) > limit:
        with pytest.raises(BodyError) as refused:
            parse_records(body, fmt, max_records=limit)
        assert refused.value.code == "too_many_records"
    else:
        assert parse_records(body, fmt, max_records=limit) == expected


@pytest.mark.parametrize(
    ("body", "fmt"),
    [
        (b"[" + b",".join([b"1"] * 99_999) + b"]", BodyFormat.JSON),
        (b'{"records":[' + b",".join([b"{}"] * 99_998) + b"]}", BodyFormat.JSON),
        (b"{}\n" * 99_999, BodyFormat.NDJSON),
    ],
    ids=["array", "wrapped", "ndjson"],
)
def test_too_many_records_are_refused_without_parsing(
    body: bytes, fmt: BodyFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the value limit, 99,999 records are refused before any is materialised."""

    def no_parse(_: Any) -> Any:
        raise AssertionError("parsed a body with too many records")

    monkeypatch.setattr("tributary_api.body.orjson.loads", no_parse)
    with pytest.raises(BodyError) as refused:
        parse_records(body, fmt, max_records=500)
    assert (refused.value.status, refused.value.code) == (413, "too_many_records")


def test_raw_array_refuses_past_max_records_only_after_decoding_the_array() -> None:
    """What `check_value_count` before it is for: msgspec reads the whole array before it checks
    the length (a malformed fourth element is a DecodeError, not the length's ValidationError)."""
    import msgspec

    from tributary_api.body import raw_array

    with pytest.raises(msgspec.ValidationError, match="length <= 2"):
        raw_array(2)(b"[1,2,3]")
    with pytest.raises(msgspec.DecodeError):
        raw_array(2)(b"[1,2,3,}")
