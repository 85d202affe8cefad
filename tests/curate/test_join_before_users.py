"""A left join before its right side has rows, through the curate command line on moto (S3 +
Glue) and `query` (DuckDB): posts curated, users not yet, publishes posts_with_users with every
post and null user columns; users' first run recomputes it with the user columns filled. The
columns and their types are the same in both snapshots: in the files, in Glue and in DuckDB."""

from __future__ import annotations

import pytest

from tests.curate.lake import envelope, land, post
from tests.curate.test_tables import AT1, DAY1, Lake, columns_of, hive_columns, importer_user, lake
from tests.curate.test_wire import cli

__all__ = ["lake"]  # the fixture, shared with test_tables
pytestmark = pytest.mark.timeout(1500)  # several CLI runs, each its own Spark
POSTS = (1, 2, 3, 4, 6, 9)  # userId 1 + id % 5: 2, 3, 4, 5, 2, 5
COLUMNS = ("id", "userId", "user_name", "user_email", "user_address_city", "user_company_name")
TYPES = (
    "select column_name, data_type from information_schema.columns"
    " where table_name = 'posts_with_users' order by ordinal_position"
)


async def shapes(lake: Lake) -> tuple[list[str], list[tuple[str, str]], list[list[str]]]:
    """posts_with_users' columns as DuckDB types them, as Glue declares them, and as the
    pointer's snapshot records them; the Glue columns are checked against the files."""
    done = cli(lake.env, "query", TYPES)
    assert done.returncode == 0, done.stderr
    duckdb = [line.strip() for line in done.stdout.splitlines()[2:]]
    snapshot = await lake.snapshot("posts_with_users")
    table = await lake.table("posts_with_users")
    assert table["StorageDescriptor"]["Location"] == f"s3://{lake.bucket}/{snapshot['location']}"
    files = await lake.files(snapshot["location"])
    assert files
    assert all(hive_columns(f) == columns_of(table) for f in files)
    return duckdb, columns_of(table), snapshot["columns"]


async def test_posts_with_users_holds_every_post_before_users_then_fills_in(lake: Lake) -> None:
    await land(
        lake.s3, "posts", DAY1, "p1", [envelope("posts", str(i), post(i), AT1) for i in POSTS]
    )
    out = lake.run("posts")
    assert "posts_with_users: snapshot" in out
    assert "no curated rows of users yet" in out
    assert lake.query("posts_with_users", *COLUMNS, order="id") == [
        f"{i}|{1 + i % 5}|-|-|-|-" for i in POSTS
    ]
    before = await shapes(lake)
    duckdb = dict(line.split(None, 1) for line in before[0])
    assert duckdb["id"] == "BIGINT"
    assert duckdb["user_name"] == duckdb["user_address_city"] == "VARCHAR"
    assert ("user_email", "string") in before[1]
    first = await lake.snapshot("posts_with_users")

    users = [importer_user(i, f"Name{i}", AT1, AT1) for i in (2, 3, 5)]
    await land(lake.s3, "users", DAY1, "u1", users)
    out = lake.run("users")
    assert "posts_with_users: snapshot" in out
    second = await lake.snapshot("posts_with_users")
    assert second["id"] != first["id"]
    assert second["inputs"]["users"] != first["inputs"]["users"]
    assert lake.query("posts_with_users", *COLUMNS, order="id") == [
        "1|2|Name2|u2@example.test|City 2|Co 2",
        "2|3|Name3|u3@example.test|City 3|Co 3",
        "3|4|-|-|-|-",  # no user 4: the post is kept
        "4|5|Name5|u5@example.test|City 5|Co 5",
        "6|2|Name2|u2@example.test|City 2|Co 2",
        "9|5|Name5|u5@example.test|City 5|Co 5",
    ]
    assert await shapes(lake) == before
    assert lake.query("posts_with_users", "count(*)", "count(distinct _id)", order="1") == ["6|6"]
    assert "posts_with_users: up to date" in lake.run()
