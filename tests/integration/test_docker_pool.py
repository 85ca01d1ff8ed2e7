"""A flow run through the Docker work pool: the project image, host network, output in MinIO."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.definitions import PROJECT_IMAGE
from headwater.settings import get_settings
from headwater.storage import get_store
from tests.conftest import in_ci, require_service
from tests.integration.orchestration_fixtures import *  # noqa: F403 - fixtures
from tests.integration.orchestration_fixtures import (
    run_deployment_rest,
    run_logs,
    start_worker,
    stop_worker,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def project_image() -> str:
    """The locally built project image (`headwater image build`)."""
    import docker

    require_service("docker")
    client = docker.from_env()
    try:
        client.images.get(PROJECT_IMAGE)
    except docker.errors.ImageNotFound:
        msg = f"{PROJECT_IMAGE} is not built; run `uv run headwater image build`"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    finally:
        client.close()
    return PROJECT_IMAGE


@pytest.fixture(scope="module")
def docker_worker(
    prefect_server: str, deployed: dict[str, Any], project_image: str, worker_data: Path
) -> Iterator[Any]:
    """A Docker worker on `headwater-docker` (prefect-docker), stopped after the module."""
    proc = start_worker(
        "headwater-docker", worker_env(prefect_server, worker_data), worker_data / "docker.log"
    )
    time.sleep(2)
    assert proc.poll() is None, (worker_data / "docker.log").read_text()[-2000:]
    yield proc
    stop_worker(proc)


def test_smoke_runs_in_project_image_and_writes_to_minio(
    api: httpx.Client, docker_worker: Any, tmp_path: Path
) -> None:
    require_service("minio")
    s3 = get_settings().use_local_services()
    # Credentials reach the container as a mounted .env file (never as parameters or argv).
    env_file = tmp_path / "flow.env"
    env_file.write_text(
        "HEADWATER_STORAGE=s3\n"
        f"HEADWATER_S3_ENDPOINT_URL={s3.s3_endpoint_url}\n"
        f"HEADWATER_S3_BUCKET={s3.s3_bucket}\n"
        f"HEADWATER_S3_ACCESS_KEY={s3.s3_access_key.get_secret_value()}\n"  # type: ignore[union-attr]
        f"HEADWATER_S3_SECRET_KEY={s3.s3_secret_key.get_secret_value()}\n"  # type: ignore[union-attr]
    )
    env_file.chmod(0o644)
    message = f"from the docker pool {tmp_path.name}"
    run = run_deployment_rest(
        api,
        "smoke/smoke-docker",
        {"message": message},
        timeout=420,
        job_variables={"volumes": [f"{env_file}:/opt/headwater/.env:ro"], "auto_remove": False},
    )
    assert run["state_type"] == "COMPLETED", run_logs(api, run["id"])
    key = f"smoke/{run['id']}/marker.txt"
    assert get_store(s3).get_bytes(key) == message.encode()
    # it ran in a container of the project image, not in this process
    import docker

    client = docker.from_env()
    try:
        containers = client.containers.list(
            all=True, filters={"label": f"io.prefect.flow-run-id={run['id']}"}
        )
        assert containers, "no container was created for the flow run"
        assert containers[0].image.tags and PROJECT_IMAGE in containers[0].image.tags
        assert containers[0].attrs["HostConfig"]["NetworkMode"] == "host"
        for c in containers:
            c.remove(force=True)
    finally:
        client.close()
