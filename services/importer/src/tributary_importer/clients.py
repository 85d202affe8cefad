"""Clients of declared sources: a child resource's client carries its parent's."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from tributary_importer.fetch import SourceClient
from tributary_importer.source import DeclaredSource


def client_for(
    name: str, sources: Mapping[str, DeclaredSource], http: httpx.AsyncClient
) -> SourceClient:
    """The client of source `name` (`ConfigError` when it, or its parent, cannot run)."""
    spec = sources[name].ready()
    client = SourceClient(name, spec, http)
    parent = spec.parent()
    if parent is not None:
        client.parent = SourceClient(parent, sources[parent].ready(), http)
        theirs = client.parent.oauth
        if theirs is not None and client.oauth is not None and theirs.serves(spec.auth):
            client.oauth = theirs  # one client of the token endpoint: one token for both
    return client
