"""Deterministic sample records shaped like JSONPlaceholder's (generated, not copied)."""

from __future__ import annotations

import random
from typing import Any

_WORDS = (
    "lake",
    "stream",
    "shard",
    "lease",
    "river",
    "delta",
    "basin",
    "current",
    "tide",
    "harbor",
    "ingest",
    "record",
    "batch",
    "partition",
    "cursor",
    "bookmark",
    "crawler",
    "schema",
    "parquet",
    "envelope",
    "durable",
    "replay",
    "commit",
    "offset",
    "quorum",
    "fence",
    "token",
    "window",
    "bucket",
    "prefix",
    "object",
    "checkpoint",
    "consumer",
    "producer",
)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def posts(count: int, seed: int = 1, first_id: int = 1) -> list[dict[str, Any]]:
    """`count` posts with ids from `first_id`, 10 per user, ~300 bytes each."""
    rng = random.Random(seed)
    return [
        {
            "userId": (first_id + i - 1) // 10 + 1,
            "id": first_id + i,
            "title": _sentence(rng, 6),
            "body": "\n".join(_sentence(rng, 8) for _ in range(4)),
        }
        for i in range(count)
    ]


def events(count: int, seed: int = 2) -> list[dict[str, Any]]:
    """`count` free-form product events, half of them with their own id."""
    rng = random.Random(seed)
    kinds = ("page_view", "click", "signup", "purchase")
    out: list[dict[str, Any]] = []
    for i in range(count):
        event: dict[str, Any] = {
            "type": rng.choice(kinds),
            "user": f"u{rng.randint(1, 50)}",
            "props": {"path": "/" + rng.choice(_WORDS), "n": i},
        }
        if i % 2 == 0:
            event["id"] = f"evt-{seed}-{i}"
        out.append(event)
    return out
