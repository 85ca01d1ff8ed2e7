"""The smoke flow persists its result to the artifact store: MinIO, and the local-folder default."""

from __future__ import annotations

import pytest

from flows.smoke import smoke
from headwater.settings import Settings
from headwater.storage import get_store, result_storage


def _persisted_value(data: bytes) -> object:
    """A persisted value: a flow's result record (JSON) or a task's pickled result."""
    from prefect.results import ResultRecord
    from prefect.serializers import PickleSerializer

    if data.startswith(b"{"):
        return ResultRecord.deserialize(data).result
    return PickleSerializer().loads(data)


def _run(settings: Settings) -> tuple[dict[str, str], set[str], set[str]]:
    store = get_store(settings)
    before = set(store.list("prefect-results/"))
    state = smoke.with_options(result_storage=result_storage(settings))(
        message="persist me", return_state=True
    )
    assert state.is_completed(), state.message
    after = set(store.list("prefect-results/"))
    return state.result(), before, after


def test_smoke_on_local_folder_default(local_settings: Settings) -> None:
    out, before, after = _run(local_settings)
    store = get_store(local_settings)
    assert store.get_bytes(out["key"]) == b"persist me"
    assert out["key"].startswith("smoke/")
    new = after - before
    assert new, "the flow result was not persisted to the local folder"
    assert out in [_persisted_value(store.get_bytes(k)) for k in new]


@pytest.mark.integration
def test_smoke_persists_result_to_minio(s3_settings: Settings) -> None:
    from blocks.registry import register_blocks

    register_blocks(s3_settings, local_services=False)
    out, before, after = _run(s3_settings)
    store = get_store(s3_settings)
    assert store.get_bytes(out["key"]) == b"persist me"
    new = after - before
    assert new, "the flow result was not persisted to MinIO"
    assert out in [_persisted_value(store.get_bytes(k)) for k in new]
