"""When a permanent refusal makes records poison: the same target refused them again and again,
for long enough (a grant still propagating is not poison), and not for who we are (an expired
token refuses every record alike; quarantining them would only move the outage)."""

from __future__ import annotations

from tributary.aws import error_code
from tributary_stream.quarantine import describe

# AWS error codes that are about the caller's credentials, not about what it writes.
CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "TokenRefreshRequired",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "UnrecognizedClientException",
        "RequestExpired",
        "AuthFailure",
    }
)


def is_credential_error(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, is a credential failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if error_code(seen) in CREDENTIAL_CODES:
            return True
        seen = seen.__cause__
    return False


class Refusals:
    """Permanent refusals per subject (a raw chain, the items table) since the last
    checkpoint: `attempts` of them over at least `min_s` seconds make the records poison."""

    def __init__(self, attempts: int, min_s: float) -> None:
        self._attempts = attempts
        self._min_s = min_s
        self._seen: dict[str, tuple[int, float]] = {}

    def refused(self, subject: str, what: str, exc: BaseException, now: float) -> str | None:
        """Count a refusal of `subject`; the quarantine reason if its records are poison now,
        else None (the caller raises and the shard is retried)."""
        if is_credential_error(exc):
            return None
        count, first = self._seen.get(subject, (0, now))
        count += 1
        self._seen[subject] = (count, first)
        elapsed = now - first
        if count < self._attempts or elapsed < self._min_s:
            return None
        return f"{what} refused {count} times in {elapsed:.1f} s: {describe(exc)}"

    def clear(self) -> None:
        """A checkpoint: whatever was refused before is behind us."""
        self._seen.clear()
