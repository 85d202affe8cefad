from __future__ import annotations

import pytest

from tributary.errors import PermanentError, RetriesExhaustedError, TransientError
from tributary.retry import RetryPolicy, retry


class Sleeps:
    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


async def test_retries_transient_until_success() -> None:
    sleeps, calls = Sleeps(), []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("not yet")
        return "done"

    assert await retry(flaky, RetryPolicy(max_attempts=5, base_delay=0.1), sleep=sleeps) == "done"
    assert len(sleeps.pauses) == 2
    assert all(0 <= p <= 0.2 for p in sleeps.pauses)


async def test_honours_retry_after_and_gives_up() -> None:
    sleeps = Sleeps()

    async def throttled() -> None:
        exc = TransientError("slow down")
        exc.retry_after = 3.0  # type: ignore[attr-defined]
        raise exc

    with pytest.raises(RetriesExhaustedError, match="still failing after 3 attempts") as info:
        await retry(throttled, RetryPolicy(max_attempts=3), sleep=sleeps)
    assert sleeps.pauses == [3.0, 3.0]
    assert isinstance(info.value.__cause__, TransientError)


async def test_permanent_errors_are_not_retried() -> None:
    sleeps = Sleeps()

    async def broken() -> None:
        raise PermanentError("bad config")

    with pytest.raises(PermanentError):
        await retry(broken, RetryPolicy(), sleep=sleeps)
    assert sleeps.pauses == []


def test_delay_is_capped() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=4)
    assert all(0 <= policy.delay(attempt) <= 4 for attempt in range(1, 20))
