"""Prefect tasks and helpers around the artifact store and the UI's artifacts."""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from headwater.storage import get_store


class Progress:
    """A progress artifact in the UI: created once, updated as batches finish."""

    def __init__(self, total: int, key: str, description: str = "") -> None:
        self.total = max(int(total), 0)
        self.done = 0
        self.artifact_id: UUID | None = create_progress_artifact(  # type: ignore[assignment]
            progress=0.0 if self.total else 100.0, key=artifact_key(key), description=description
        )

    @property
    def percent(self) -> float:
        """Completion in percent (100 when there is nothing to do)."""
        return 100.0 if not self.total else min(100.0, 100.0 * self.done / self.total)

    def advance(self, n: int) -> None:
        """Record `n` more finished units and update the artifact."""
        self.done += n
        self.set(self.done)

    def set(self, done: int) -> None:
        """Set the finished count and update the artifact."""
        self.done = done
        if self.artifact_id is not None:
            update_progress_artifact(artifact_id=self.artifact_id, progress=self.percent)

    def finish(self) -> None:
        """Mark complete (100 %)."""
        self.set(max(self.done, self.total))


def artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in out.split("-") if part)[:100] or "artifact"


def publish_table(rows: list[dict[str, Any]], key: str, description: str = "") -> None:
    """Publish a table artifact (shown on the flow run's Artifacts tab)."""
    create_table_artifact(table=rows, key=artifact_key(key), description=description)


def publish_markdown(markdown: str, key: str, description: str = "") -> None:
    """Publish a markdown artifact (shown on the flow run's Artifacts tab)."""
    create_markdown_artifact(markdown=markdown, key=artifact_key(key), description=description)


@task(retries=3, retry_delay_seconds=[1, 5, 15])
def upload_file(key: str, path: str | os.PathLike[str]) -> str:
    """Upload one local file to the artifact store under `key`; return the key."""
    return get_store().put_file(key, path)


@task(retries=3, retry_delay_seconds=[1, 5, 15])
def upload_bytes(key: str, data: bytes) -> str:
    """Write a small object to the artifact store; return the key."""
    return get_store().put_bytes(key, data)
