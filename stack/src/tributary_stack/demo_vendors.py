"""The demo's check of the richer importer sources (issue 20): each source's records in raw are
exactly what the fake vendor API serves it, counted by asking the fake API itself (not by the
importer's own report), with each source's path, `initial`, `step` and parent read from the
sources file the importer ran (not copied here).

The fake is static between runs of the demo, so every run is checked exactly. The distinct
envelope ids a source landed in raw (over every run on this stack) must be as many as the fake
serves it. A full-refresh source (no `incremental`) must import exactly that many on every run,
a first or a rerun. An incremental source must have landed each of its ids once over all runs
(raw lines == distinct ids): a first import is then the whole snapshot, a rerun exactly what
is new. An under-import is a MISMATCH on a fresh stack and on a rerun alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from tributary_importer.source import SourceSpec
from tributary_importer.source_extra import parse_step

# Each richer source of config/sources.yaml and what it shows.
RICHER_VENDORS = {
    "posts_jsonlink": "next URL in the body (json_link)",
    "comments_hcursor": "cursor in a response header",
    "posts_oauth": "OAuth2 client credentials",
    "items_graphql": "POST body, cursor in the body, custom hook",
    "events_windowed": "date windows (step 30d, end sent)",
    "post_comments": "child of posts, parent title copied",
    "posts_archive": "404 declared empty (response action)",
}
PAGE = 500  # the windowed route's pages while counting


def _listing(http: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    response = http.get(path, params=params)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def _windowed(http: httpx.Client, spec: SourceSpec, until: datetime) -> int:
    """The records the windowed route serves from the source's `initial` to `until` (or its
    `end_value`), asked window by window in the source's own `step`, bounds and paging."""
    inc = spec.incremental
    assert inc is not None
    assert inc.step is not None
    assert inc.param is not None
    assert inc.end_param is not None
    step, paging = parse_step(inc.step), spec.pagination
    start = datetime.fromisoformat(inc.initial)
    stop = datetime.fromisoformat(inc.end_value) if inc.end_value is not None else until
    count = 0
    while start < stop:
        end = min(start + step, stop)
        page = paging.first_page
        while True:
            bounds = {inc.param: start.isoformat(), inc.end_param: end.isoformat()}
            sizes = {paging.page_param: page, paging.size_param: PAGE}
            got = _listing(http, spec.path, **bounds, **sizes)
            count += len(got)
            if len(got) < PAGE:
                break
            page += 1
        start = end
    return count


def _children(http: httpx.Client, spec: SourceSpec, sources: Mapping[str, SourceSpec]) -> int:
    """The records the child route serves over every record of its parent (a 404 is a parent
    without children); the parents asked of the plain route of the parent's dataset."""
    ((placeholder, resolve),) = spec.resolve.items()
    children = 0
    for parent in _listing(http, f"/{sources[resolve.resource].dataset}"):
        response = http.get(spec.path.replace(f"{{{placeholder}}}", str(parent[resolve.field])))
        if response.status_code != 404:
            response.raise_for_status()
            children += len(response.json())
    return children


def served_by_fake(url: str, until: datetime, sources: Mapping[str, SourceSpec]) -> dict[str, int]:
    """The records the fake API at `url` serves each richer source as `sources` declares it:
    the flat ones by the plain route of their dataset (the resource the variants page
    through), the GraphQL items from the source's `initial`, the windowed events up to `until`
    (the run's end), the child's over every parent, the archive by its own path."""
    with httpx.Client(base_url=url, timeout=30) as http:
        graphql = sources["items_graphql"].incremental
        assert graphql is not None
        since = datetime.fromisoformat(graphql.initial)
        items = [
            i
            for i in _listing(http, "/changes/items")
            if datetime.fromisoformat(i["updated_at"]) >= since
        ]
        archive = http.get(sources["posts_archive"].path)
        return {
            **{
                name: len(_listing(http, f"/{sources[name].dataset}"))
                for name in ("posts_jsonlink", "comments_hcursor", "posts_oauth")
            },
            "items_graphql": len(items),
            "events_windowed": _windowed(http, sources["events_windowed"], until),
            "post_comments": _children(http, sources["post_comments"], sources),
            "posts_archive": 0 if archive.status_code == 404 else len(archive.json()),
        }


def richer_vendors(
    served: dict[str, int],
    imported: dict[str, int],
    landed_lines: dict[str, int],
    landed_ids: dict[str, int],
    incremental: Mapping[str, bool],
) -> list[list[object]]:
    """Rows [source, kind, served, imported, distinct ids in raw, check]: `imported` is this
    run's new records per source, `landed_lines` / `landed_ids` the source's records and
    distinct ids in raw after it (every run), `incremental` whether the source declares an
    incremental cursor."""
    rows: list[list[object]] = []
    for source, kind in RICHER_VENDORS.items():
        want, got = served.get(source), imported.get(source)
        ids, lines = landed_ids.get(source, 0), landed_lines.get(source, 0)
        if want is None or got is None or ids != want or source not in incremental:
            exact = False
        elif incremental[source]:  # every id once over all runs: a rerun lands only the new
            exact = lines == ids
        else:  # a full refresh: the whole snapshot on every run
            exact = got == want
        check = "MISMATCH" if not exact else ("ok" if lines == got else "ok (rerun)")
        rows.append([source, kind, want, got, ids, check])
    return rows
