"""What the Kinesis consumer, the lease table and the DynamoDB user store share: back-off with
jitter, the error code of a boto3 error, and tables made on demand."""

from __future__ import annotations

import random
from typing import Any

from botocore.exceptions import ClientError

__all__ = ["backoff", "ensure_table", "error_code"]


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def backoff(attempt: int, base_s: float = 0.05, cap_s: float = 2.0) -> float:
    """Full jitter: a uniform draw below an exponentially growing cap (AWS's advice)."""
    return random.uniform(0, min(cap_s, base_s * 2**attempt))


def ensure_table(
    client: Any, name: str, key: str, key_type: str, *, create: bool, wait_s: float = 60.0
) -> None:
    """Checks that the table exists, creating it (on-demand capacity) if allowed."""
    try:
        client.describe_table(TableName=name)
        return
    except client.exceptions.ResourceNotFoundException:
        if not create:
            raise RuntimeError(
                f"DynamoDB table {name!r} does not exist and creating tables is off "
                "(create_tables = false)"
            ) from None
    try:
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": key_type}],
            BillingMode="PAY_PER_REQUEST",
        )
    except client.exceptions.ResourceInUseException:
        pass  # another replica created it first
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(wait_s))}
    )
