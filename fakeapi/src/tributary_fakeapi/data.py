"""Deterministic JSONPlaceholder-shaped resources (generated, not copied), and a changing
`items` resource with `updated_at` that grows and mutates one generation at a time."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
)

BASE_COUNTS = {
    "users": 10,
    "posts": 100,
    "comments": 500,
    "albums": 100,
    "photos": 5000,
    "todos": 200,
}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SEQ_BASE = 10**18  # past 2^53: floats cannot tell these sequence numbers apart
BIG_BASE = 2**64  # past what orjson decodes as an integer (it gives a float)
PLUS_TWO = timezone(timedelta(hours=2))


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _record(resource: str, i: int, counts: dict[str, int]) -> dict[str, Any]:
    rng = random.Random(f"{resource}-{i}")
    match resource:
        case "users":
            name = f"{_text(rng, 1).title()} {_text(rng, 1).title()}"
            return {
                "id": i,
                "name": name,
                "username": name.replace(" ", "").lower(),
                "email": f"user{i}@example.test",
                "address": {
                    "city": _text(rng, 1).title(),
                    "zipcode": f"{rng.randint(10000, 99999)}",
                },
            }
        case "posts":
            return {
                "userId": (i - 1) % counts["users"] + 1,
                "id": i,
                "title": _text(rng, 5),
                "body": _text(rng, 24),
            }
        case "comments":
            return {
                "postId": (i - 1) // 5 + 1,
                "id": i,
                "name": _text(rng, 4),
                "email": f"c{i}@example.test",
                "body": _text(rng, 18),
            }
        case "albums":
            return {"userId": (i - 1) % counts["users"] + 1, "id": i, "title": _text(rng, 4)}
        case "photos":
            return {
                "albumId": (i - 1) // 50 + 1,
                "id": i,
                "title": _text(rng, 5),
                "url": f"https://img.example.test/600/{i:06x}",
                "thumbnailUrl": f"https://img.example.test/150/{i:06x}",
            }
        case "todos":
            return {
                "userId": (i - 1) % counts["users"] + 1,
                "id": i,
                "title": _text(rng, 4),
                "completed": rng.random() < 0.4,
            }
    raise KeyError(resource)


@dataclass
class Dataset:
    """All resources, scaled; `items` changes with each `advance()`."""

    scale: int = 1
    counts: dict[str, int] = field(init=False)
    resources: dict[str, list[dict[str, Any]]] = field(init=False)
    generation: int = 0

    def __post_init__(self) -> None:
        self.counts = {name: n * self.scale for name, n in BASE_COUNTS.items()}
        self.resources = {
            name: [_record(name, i, self.counts) for i in range(1, n + 1)]
            for name, n in self.counts.items()
        }
        self.resources["items"] = [self._item(i, 0) for i in range(1, 51)]

    def _item(self, i: int, generation: int) -> dict[str, Any]:
        rng = random.Random(f"item-{i}-{generation}")
        return {
            "id": i,
            "name": _text(rng, 3),
            "price": round(rng.uniform(1, 100), 2),
            "updated_at": (EPOCH + timedelta(hours=generation, seconds=i))
            .isoformat()
            .replace("+00:00", "Z"),
        }

    def advance(self, changed: int = 5, added: int = 10) -> None:
        """A new generation: `changed` existing items get new content and `updated_at`,
        `added` new items appear (all stamped in this generation's hour)."""
        self.generation += 1
        items = self.resources["items"]
        rng = random.Random(f"advance-{self.generation}")
        for index in rng.sample(range(len(items)), min(changed, len(items))):
            items[index] = self._item(items[index]["id"], self.generation)
        start = len(items) + 1
        items.extend(self._item(i, self.generation) for i in range(start, start + added))


def mixed_item(item: dict[str, Any]) -> tuple[datetime, dict[str, Any]]:
    """`item` as a vendor with untidy timestamps serves it, and its instant: `updated_at` in
    one of three ISO-8601 spellings (`Z`; a +02:00 offset; milliseconds, a quarter second
    later), `seq`, an integer sequence number past 2^53, `big`, one past 2^64, and `rev`, a
    decimal with more digits than a float holds (a `Decimal`: serve it with `exact_json`)."""
    at = datetime.fromisoformat(item["updated_at"])
    match item["id"] % 3:
        case 0:
            text = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        case 1:
            text = at.astimezone(PLUS_TWO).isoformat()
        case _:
            at += timedelta(milliseconds=250)
            text = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return at, {
        **item,
        "updated_at": text,
        "seq": SEQ_BASE + item["id"],
        "big": BIG_BASE + item["id"],
        "rev": Decimal(f"1.{item['id']:020d}"),
    }
