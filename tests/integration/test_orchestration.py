"""Deployments on the real Prefect server: REST-triggered runs, artifacts, schedules, Dask."""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.definitions import DEPLOYMENTS, WORK_POOLS, DeploymentSpec
from deployments.register import available, register_deployment
from tests.conftest import in_ci, require_service
from tests.integration.orchestration_fixtures import *  # noqa: F403 - fixtures
from tests.integration.orchestration_fixtures import (
    artifacts_by_type,
    run_deployment_rest,
    run_logs,
)

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
FASHION = SHARED / "images" / "fashion"


def _require_capability(deployment: str) -> DeploymentSpec:
    spec = next(d for d in DEPLOYMENTS if d.full_name == deployment)
    missing = available(spec)
    if missing:
        if in_ci():
            pytest.fail(f"{deployment}: {missing}")
        pytest.skip(f"capability not landed: {missing}")
    return spec


def test_deployments_and_pools_registered(api: httpx.Client, deployed: dict[str, Any]) -> None:
    for name, reg in deployed.items():
        spec = next(d for d in DEPLOYMENTS if d.full_name == name)
        if available(spec) is not None:
            continue
        assert reg.id, f"{name} was not registered: {reg.skipped}"
        dep = api.get(f"deployments/{reg.id}").json()
        assert dep["entrypoint"] == spec.entrypoint
        assert dep["work_pool_name"] == spec.pool
        assert dep["paused"] == spec.paused
        assert len(dep["schedules"]) == (1 if spec.scheduled else 0)
    leak = api.get("deployments/name/leak-detection/leak-detection-every-10m")
    if leak.status_code == 200:
        assert leak.json()["schedules"][0]["schedule"]["interval"] == 600
    for pool in WORK_POOLS:
        got = api.get(f"work_pools/{pool.name}").json()
        assert got["type"] == pool.type
    docker = api.get("work_pools/headwater-docker").json()["base_job_template"]["variables"]
    assert docker["properties"]["image"]["default"] == "headwater:dev"
    assert docker["properties"]["image_pull_policy"]["default"] == "Never"
    assert docker["properties"]["network_mode"]["default"] == "host"


# --- one REST-triggered run per capability --------------------------------------------------------


def _params_smoke(tmp: Path, worker_data: Path | None = None) -> dict[str, Any]:
    return {"message": f"rest {tmp.name}"}


def _params_image(tmp: Path, worker_data: Path | None = None) -> dict[str, Any]:
    return {
        "params": {
            "catalog": str(FASHION / "styles.csv"),
            "images": str(FASHION / "images"),
            "limit": 12,
            "chunk_size": 4,
            "operations": ["resize:32x32", "format:png"],
            "out": str(tmp / "images-out"),
            "workers": 1,
        }
    }


def _params_db(tmp: Path, worker_data: Path | None = None) -> dict[str, Any]:
    from blocks.mongo import MongoConnection
    from blocks.registry import sql_connector_from_url

    require_service("mongo")
    db = tmp / "chinook.sqlite"
    shutil.copy(SHARED / "sql" / "chinook.sqlite", db)
    suffix = uuid.uuid4().hex[:8]
    sql_connector_from_url(f"sqlite:///{db}").save(f"orch-test-sqlite-{suffix}", overwrite=True)
    MongoConnection(url=f"mongodb://127.0.0.1:27018/orch_test_{suffix}").save(
        f"orch-test-mongo-{suffix}", overwrite=True
    )
    big = ["Track", "PlaylistTrack", "Playlist", "InvoiceLine", "Invoice", "Customer", "Album"]
    return {
        "params": {
            "source_block": f"orch-test-sqlite-{suffix}",
            "target_block": f"orch-test-mongo-{suffix}",
            "plan": {"exclude": big},
            "batch_size": 200,
        }
    }


def _params_container(tmp: Path, worker_data: Path) -> dict[str, Any]:
    from headwater.storage import LocalStore

    require_service("docker")
    # the input is uploaded to the worker's store: the local folder under its data dir
    src = SHARED / "chem" / "openbabel" / "alanine.mol"
    key = f"uploads/orchestration-test/{src.name}"
    LocalStore(worker_data / "artifacts").put_file(key, src)
    return {"request": {"tool": "obabel-convert", "inputs": [key], "params": {"format": "sdf"}}}


def _params_leak(tmp: Path, worker_data: Path | None = None) -> dict[str, Any]:
    return {"params": {"plots": False}}


def _params_mail(tmp: Path, worker_data: Path | None = None) -> dict[str, Any]:
    require_service("imap_source")
    require_service("imap_dest")
    return {
        "params": {
            "source": {"block": "local-source-alice"},
            "dest": {"block": "local-dest-alice"},
            "mailbox": "orchestration-test",
            "options": {"dry_run": True},
        }
    }


CASES = [
    # deployment, parameters, expects a progress artifact, expects a table artifact
    ("smoke/smoke-on-demand", _params_smoke, False, False),
    ("image-pipeline/image-pipeline-on-demand", _params_image, True, True),
    ("db-migration/db-migration-on-demand", _params_db, True, True),
    ("leak-detection/leak-detection-on-demand", _params_leak, False, True),
    ("mail-migration/mail-migration-on-demand", _params_mail, True, True),
    ("container-job/container-job-on-demand", _params_container, True, True),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("deployment", "make_params", "progress", "table"), CASES, ids=[c[0] for c in CASES]
)
def test_rest_triggered_run_completes_with_artifacts(
    api: httpx.Client,
    process_worker: Any,
    worker_data: Path,
    tmp_path: Path,
    deployment: str,
    make_params: Any,
    progress: bool,
    table: bool,
) -> None:
    _require_capability(deployment)
    params = make_params(tmp_path, worker_data)
    # the data dir travels with the run too, in case another worker on the pool takes it
    env = {"HEADWATER_DATA_DIR": str(worker_data), "HEADWATER_STORAGE": "local"}
    run = run_deployment_rest(api, deployment, params, job_variables={"env": env})
    assert run["state_type"] == "COMPLETED", run_logs(api, run["id"])
    assert run["parameters"] == params
    arts = artifacts_by_type(api, run["id"])
    if progress:
        assert arts.get("progress"), f"no progress artifact: {list(arts)}"
        assert all(a["data"] == 100 for a in arts["progress"]), arts["progress"]
    if table:
        assert arts.get("table"), f"no table artifact: {list(arts)}"
        assert any(a["data"] for a in arts["table"])
    if deployment.startswith("smoke/"):
        marker = worker_data / "artifacts" / "smoke" / run["id"] / "marker.txt"
        assert marker.read_text() == params["message"]
    if deployment.startswith("image-pipeline/"):
        written = [p for p in (tmp_path / "images-out").rglob("*.png")]
        assert len(written) == 12
    if deployment.startswith("container-job/"):
        outputs = list((worker_data / "artifacts" / "container-jobs" / run["id"]).rglob("*.sdf"))
        assert len(outputs) == 1 and b"$$$$" in outputs[0].read_bytes()


# --- a schedule creates runs by itself ------------------------------------------------------------


@pytest.mark.slow
def test_interval_schedule_creates_completed_run(
    api: httpx.Client, process_worker: Any, worker_data: Path
) -> None:
    spec = DeploymentSpec(
        name="smoke-every-10s-test",
        flow_name="smoke",
        entrypoint="flows/smoke.py:smoke",
        capability="smoke",
        description="Test-only: the smoke flow every 10 seconds.",
        parameters={"message": "scheduled"},
        interval=timedelta(seconds=10),
    )
    deployment_id = register_deployment(spec)
    try:
        deadline = time.monotonic() + 300
        done: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not done:
            runs = api.post(
                "flow_runs/filter",
                json={"flow_runs": {"deployment_id": {"any_": [str(deployment_id)]}}},
            ).json()
            done = [r for r in runs if r["state_type"] == "COMPLETED"]
            time.sleep(2)
        assert done, f"no completed scheduled run; runs: {[r['state_type'] for r in runs]}"
        run = done[0]
        assert run["auto_scheduled"] is True
        assert run["created_by"] is None or run["created_by"].get("type") != "USER"
        marker = worker_data / "artifacts" / "smoke" / run["id"] / "marker.txt"
        assert marker.read_text() == "scheduled"
    finally:
        api.delete(f"deployments/{deployment_id}")


# --- Dask task runner ---------------------------------------------------------------------------


@pytest.mark.slow
def test_image_pipeline_on_dask_matches_default_runner(tmp_path: Path, monkeypatch: Any) -> None:
    _require_capability("image-pipeline/image-pipeline-on-demand")
    from distributed import LocalCluster

    from flows.image_pipeline import ImagePipelineParams, image_pipeline

    monkeypatch.setenv("HEADWATER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEADWATER_STORAGE", "local")
    from headwater.settings import get_settings

    get_settings.cache_clear()
    base = _params_image(tmp_path)["params"]
    outputs = {}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        for runner in ("default", "dask"):
            params = ImagePipelineParams(
                **{**base, "out": str(tmp_path / runner), "run_id": f"dask-cmp-{runner}"},
                task_runner=runner,
                dask_address=cluster.scheduler_address if runner == "dask" else None,
            )
            summary = image_pipeline(params)
            assert summary["image_errors"] == 0
            files = sorted(p for p in (tmp_path / runner).rglob("*.png"))
            outputs[runner] = {p.name: p.read_bytes() for p in files}
    get_settings.cache_clear()
    assert len(outputs["default"]) == 12
    assert outputs["dask"] == outputs["default"]
