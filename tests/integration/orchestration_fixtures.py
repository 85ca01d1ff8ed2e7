"""Fixtures of the orchestration tests: the Prefect server, registered deployments, a worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.definitions import PROJECT_ROOT
from headwater.commands.orchestration import (
    api_client,
    create_flow_run,
    read_artifacts,
    resolve_deployment,
    wait_for_run,
)
from tests.conftest import require_service

API = "http://127.0.0.1:4200/api"

__all__ = ["api", "deployed", "prefect_server", "process_worker", "worker_data"]


@pytest.fixture(scope="module")
def prefect_server() -> str:
    """The Prefect server of `headwater services up` (its API URL)."""
    require_service("prefect")
    os.environ["PREFECT_API_URL"] = API
    return API


@pytest.fixture(scope="module")
def api(prefect_server: str) -> Iterator[httpx.Client]:
    """An httpx client on the REST API."""
    with api_client(prefect_server) as client:
        yield client


@pytest.fixture(scope="module")
def worker_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private data dir for the flows the worker runs (local artifact store, SQLite)."""
    return tmp_path_factory.mktemp("worker-data")


def start_worker(pool: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `prefect worker start --pool POOL` in its own process group."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Stop the worker and the flow-run processes it started (its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def worker_env(prefect_server: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a test worker: the server, a 1-second poll, a private data dir."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HEADWATER_DATA_DIR": str(data_dir),
        "HEADWATER_STORAGE": "local",
        **extra,
    }
    env.pop("HEADWATER_S3_ENDPOINT_URL", None)
    return env


@pytest.fixture(scope="module")
def process_worker(
    prefect_server: str, deployed: dict[str, Any], worker_data: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process worker on `headwater-process`, stopped after the module."""
    proc = start_worker(
        "headwater-process", worker_env(prefect_server, worker_data), worker_data / "worker.log"
    )
    time.sleep(2)
    assert proc.poll() is None, (worker_data / "worker.log").read_text()[-2000:]
    yield proc
    stop_worker(proc)


@pytest.fixture(scope="module")
def deployed(prefect_server: str) -> dict[str, Any]:
    """Register blocks, work pools and every available deployment; name -> registration."""
    from blocks.registry import register_blocks
    from deployments.register import register_all
    from headwater.settings import get_settings

    register_blocks(get_settings(), local_services=True)
    return {r.full_name: r for r in register_all()}


def run_deployment_rest(
    api: httpx.Client,
    name: str,
    parameters: dict[str, Any],
    timeout: float = 420,
    **kw: Any,
) -> dict[str, Any]:
    """Trigger through the REST API and wait for a terminal state; return the flow run."""
    dep = resolve_deployment(api, name)
    run = create_flow_run(api, dep["id"], parameters, **kw)
    return wait_for_run(api, run["id"], timeout=timeout)


def artifacts_by_type(api: httpx.Client, flow_run_id: str) -> dict[str, list[dict[str, Any]]]:
    """The run's artifacts grouped by type (progress, table, markdown, ...)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for art in read_artifacts(api, flow_run_id):
        out.setdefault(art["type"], []).append(art)
    return out


def run_logs(api: httpx.Client, flow_run_id: str, limit: int = 40) -> str:
    """The last log lines of a flow run (for assertion messages)."""
    resp = api.post(
        "logs/filter",
        json={
            "logs": {"flow_run_id": {"any_": [flow_run_id]}},
            "sort": "TIMESTAMP_DESC",
            "limit": limit,
        },
    )
    return "\n".join(r["message"][:400] for r in reversed(resp.json()))
