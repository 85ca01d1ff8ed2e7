"""A trivial flow that proves the platform: writes one object and persists its result."""

from __future__ import annotations

import hashlib

from prefect import flow, task

from headwater.storage import get_store, result_storage, run_key


@task(retries=2, retry_delay_seconds=1)
def write_marker(message: str) -> dict[str, str]:
    """Write a small object under smoke/<run-id>/ and return its key and checksum."""
    data = message.encode()
    key = run_key("smoke", "marker.txt")
    get_store().put_bytes(key, data)
    return {"key": key, "sha256": hashlib.sha256(data).hexdigest()}


@flow(name="smoke", persist_result=True, result_storage=result_storage())
def smoke(message: str = "hello from headwater") -> dict[str, str]:
    """Write a marker object to the artifact store; the result persists to result storage."""
    return write_marker(message)


if __name__ == "__main__":
    print(smoke())
