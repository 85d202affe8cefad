"""JSONPlaceholder's users in full (nested `address.geo`, `company`) and a shop's orders with an
array of `lines`: what the `users` and `orders` importer sources read. Deterministic per id;
paged json-server style (`_page`, `_limit`; the last page is short)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query

from tributary_fakeapi.data import EPOCH, _text

USERS, ORDERS = 10, 50
STATUSES = ("placed", "paid", "shipped", "cancelled")


def full_user(i: int) -> dict[str, Any]:
    """User `i` as JSONPlaceholder shapes it."""
    rng = random.Random(f"crm-user-{i}")
    first, last = _text(rng, 1).title(), _text(rng, 1).title()
    return {
        "id": i,
        "name": f"{first} {last}",
        "username": f"{first}{i}".lower(),
        "email": f"{first.lower()}.{last.lower()}@example.test",
        "address": {
            "street": f"{_text(rng, 1).title()} Street",
            "suite": f"Apt. {rng.randint(1, 999)}",
            "city": _text(rng, 1).title(),
            "zipcode": f"{rng.randint(10000, 99999)}",
            "geo": {"lat": f"{rng.uniform(-90, 90):.4f}", "lng": f"{rng.uniform(-180, 180):.4f}"},
        },
        "phone": f"1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        "website": f"{last.lower()}.example",
        "company": {
            "name": f"{last} {_text(rng, 1).title()} LLC",
            "catchPhrase": _text(rng, 3),
            "bs": _text(rng, 3),
        },
        # The users dataset's version_field: a changed user comes with a later updated_at.
        "updated_at": (EPOCH + timedelta(days=i)).isoformat().replace("+00:00", "Z"),
    }


def order(i: int, users: int) -> dict[str, Any]:
    """Order `i`: every tenth has no lines (`[]`), and the one after it `null` lines."""
    rng = random.Random(f"shop-order-{i}")
    lines: list[dict[str, Any]] | None = [
        {
            "sku": f"SKU-{rng.randint(1, 40):03d}",
            "qty": rng.randint(1, 5),
            "price": round(rng.uniform(1, 100), 2),
        }
        for _ in range(rng.randint(1, 4))
    ]
    if i % 10 == 0:
        lines = []
    elif i % 10 == 1 and i > 1:
        lines = None
    return {
        "id": i,
        "userId": (i - 1) % users + 1,
        "placed_at": (EPOCH + timedelta(hours=i)).isoformat().replace("+00:00", "Z"),
        "status": STATUSES[i % len(STATUSES)],
        "lines": lines,
    }


def page(rows: list[dict[str, Any]], number: int, limit: int) -> list[dict[str, Any]]:
    """json-server's `_page`/`_limit` slice (pages from 1)."""
    return rows[(number - 1) * limit : number * limit]


def shop_router(scale: int = 1) -> APIRouter:
    """`GET /crm/users` and `GET /shop/orders`."""
    router = APIRouter()
    users = [full_user(i) for i in range(1, USERS * scale + 1)]
    orders = [order(i, len(users)) for i in range(1, ORDERS * scale + 1)]

    @router.get("/crm/users")
    async def list_users(
        page_number: int = Query(1, alias="_page", ge=1), limit: int = Query(10, alias="_limit")
    ) -> list[dict[str, Any]]:
        return page(users, page_number, limit)

    @router.get("/shop/orders")
    async def list_orders(
        page_number: int = Query(1, alias="_page", ge=1), limit: int = Query(10, alias="_limit")
    ) -> list[dict[str, Any]]:
        return page(orders, page_number, limit)

    return router
