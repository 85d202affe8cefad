from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tributary.batch import Batch, Batcher, decode_ndjson_gz


@given(
    st.lists(st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b"_")), max_size=80),
    st.integers(1, 10),
    st.integers(1, 200),
)
def test_batches_partition_the_input_in_order_within_limits(
    lines: list[bytes], max_records: int, max_bytes: int
) -> None:
    batcher = Batcher(max_records, max_bytes)
    batches: list[Batch] = []
    for i, line in enumerate(lines):
        done = batcher.add(line, str(i))
        if done:
            batches.append(done)
    if (last := batcher.flush()) is not None:
        batches.append(last)
    assert [line for b in batches for line in b.lines] == lines
    for b in batches:
        assert len(b.lines) <= max_records
        assert b.size <= max_bytes or len(b.lines) == 1  # only a lone oversize line exceeds
        assert b.size == sum(len(line) + 1 for line in b.lines)
        assert decode_ndjson_gz(b.encode()) == list(b.lines)
    positions = [(int(b.first), int(b.last)) for b in batches]
    assert positions == sorted(positions)
    assert all(first <= last for first, last in positions)


def test_encoding_is_deterministic() -> None:
    batch = Batch((b'{"a":1}', b'{"b":2}'), "1", "2", 16)
    assert batch.encode() == batch.encode()
    assert decode_ndjson_gz(batch.encode()) == [b'{"a":1}', b'{"b":2}']
