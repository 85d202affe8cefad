from __future__ import annotations

from tributary.testing import FakeClock
from tributary_api.auth import ApiKey, KeyRing, hash_key
from tributary_api.ratelimit import TokenBucketLimiter


def ring() -> KeyRing:
    return KeyRing(
        [
            ApiKey("all", bytes.fromhex(hash_key("secret-all")), None),
            ApiKey("posts-only", bytes.fromhex(hash_key("secret-posts")), frozenset({"posts"})),
        ]
    )


def test_keys_are_found_by_hash_and_scoped() -> None:
    keys = ring()
    found = keys.authenticate("secret-posts")
    assert found is not None
    assert found.name == "posts-only"
    assert found.may_write("posts")
    assert not found.may_write("events")
    everything = keys.authenticate("secret-all")
    assert everything is not None
    assert everything.may_write("events")
    assert keys.authenticate("secret-none") is None
    assert keys.authenticate("") is None
    assert keys.authenticate(None) is None


def test_token_bucket_allows_bursts_then_paces() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("k")
    assert 0.49 < wait <= 0.5
    assert limiter.acquire("other") == 0.0  # buckets are per key
    clock.advance(0.5)
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0
    clock.advance(100)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]  # capped at burst
    assert limiter.acquire("k") > 0
