"""API keys: stored as SHA-256 hashes, compared in constant time, optionally scoped to datasets."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key: its name (for logs and ids), hash, and the datasets it may write."""

    name: str
    digest: bytes
    datasets: frozenset[str] | None  # None: every dataset

    def may_write(self, dataset: str) -> bool:
        """Whether this key may POST to `dataset`."""
        return self.datasets is None or dataset in self.datasets


def hash_key(secret: str) -> str:
    """The hex SHA-256 of a key, the form keys are configured in."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyRing:
    """Finds the key a request presents, without timing leaks."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The key whose hash matches `presented`, or None.

        Every configured hash is compared (no early exit) with `hmac.compare_digest`, so the time
        taken does not tell how close a guess was or which key matched.
        """
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found
