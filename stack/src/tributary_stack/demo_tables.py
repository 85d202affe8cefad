"""The demo's look at the tables built from curated datasets: the joined `posts_with_users`, the
child table `orders_lines` (relationalized from orders) and `items_current`, through DuckDB."""

from __future__ import annotations

from collections.abc import Callable

from tributary.table import render

Query = Callable[[str], str]  # SQL → the query command's output (a rendered table)

SHOWN = {
    "posts_with_users (posts ⟕ users' current state, user columns prefixed user_; one row per"
    " curated post row: a post both POSTed and imported is two rows)": (
        "select id, title, user_name, user_email, user_address_city, user_company_name "
        "from posts_with_users order by id, _id limit 5"
    ),
    "orders_lines (a child table of orders: one row per element of lines)": (
        "select _id, _parent_id, _index, sku, qty, price from orders_lines "
        "order by try_cast(split_part(_parent_id, '@', 1) as integer), _parent_id, _index limit 5"
    ),
    "items_current (the latest version of each item by updated_at)": (
        "select id, name, price, updated_at, _id from items_current order by id limit 5"
    ),
}
CHECKS = {
    "every curated post row (per envelope _id: version and writer) is in posts_with_users once"
    " (a left join)": (
        "select (select count(*) from posts) = (select count(*) from posts_with_users) "
        "and (select count(distinct _id) from posts_with_users) = (select count(*) from posts)"
    ),
    "every line's order is in orders, and orders keep no lines column": (
        "select (select count(*) from orders_lines l anti join orders o on o._id = l._parent_id)"
        " = 0 and (select count(*) from orders_lines) > 0 and not exists (select 1 from "
        "information_schema.columns where table_name = 'orders' and column_name = 'lines')"
    ),
    "items_current has one row per item, its newest version": (
        "select (select count(*) = count(distinct id) from items_current) and (select "
        "count(*) = 0 from items_current c join items i on i.id = c.id "
        "where i.updated_at > c.updated_at)"
    ),
}


def show_tables(query: Query) -> bool:
    """Print a few rows of each table and check what must hold; True when all do."""
    for title, sql in SHOWN.items():
        print(f"\n{title}\n{query(sql).rstrip()}")
    rows, ok = [], True
    for what, sql in CHECKS.items():
        answer = query(sql).splitlines()[-1].strip().lower()
        good = answer == "true"
        ok &= good
        rows.append([what, "ok" if good else "FAILED"])
    print(render(["curated tables", "check"], rows, title="\nTables built from curated data"))
    return ok
