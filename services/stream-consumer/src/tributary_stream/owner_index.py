"""The lease table's `leaseOwner` GSI, and what DynamoDB's refusals of a query on it mean."""

from __future__ import annotations

from tributary.errors import ConfigError, TransientError

OWNER_INDEX = "leaseOwner-index"  # GSI: hash key leaseOwner, KEYS_ONLY


def owner_index_backfilling(table: str, detail: str) -> TransientError:
    """The owner index exists but is still being built (the deploy that adds it to an older
    table): it becomes ACTIVE by itself, so the worker backs off and retries, it does not exit
    (ECS would restart every task in a loop, and a circuit breaker roll the deploy back)."""
    return TransientError(
        f"lease table {table!r}: waiting for {OWNER_INDEX} to become ACTIVE (still "
        f"backfilling: {detail}); LEASE_ASSIGNMENT=leader reads each worker's leases from it"
    )


def owner_index_error(table: str, code: str | None, message: str) -> Exception | None:
    """What a refused query of the owner index means, by DynamoDB's code and message: the
    index missing (DynamoDB: ValidationException "The table does not have the specified
    index"; moto: ResourceNotFoundException "Invalid index") is a ConfigError; the index
    still backfilling (ValidationException "Cannot read from backfilling global secondary
    index") a TransientError; anything else None (left as it was translated)."""
    text = message.lower()
    if code == "ValidationException" and "backfilling global secondary index" in text:
        return owner_index_backfilling(table, message)
    if (code == "ValidationException" and "does not have the specified index" in text) or (
        code == "ResourceNotFoundException" and "invalid index" in text
    ):
        return missing_owner_index(table, message)
    return None


def missing_owner_index(table: str, detail: str) -> ConfigError:
    """The error of a lease table without the owner index: a configuration to fix (the
    supervisor sees exit 2), not a fault to back off from."""
    return ConfigError(
        f"lease table {table!r} has no usable {OWNER_INDEX} GSI ({detail}); "
        "LEASE_ASSIGNMENT=leader reads each worker's leases from it: run bootstrap (it adds "
        "the index to an older table) or deploy lake.yml and wait for the index to be ACTIVE, "
        "or set LEASE_ASSIGNMENT=scan"
    )
