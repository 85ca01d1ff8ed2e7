"""Fixtures shared by the integration tests of the container capability."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from headwater.settings import Settings, get_settings
from tasks.containers import docker_client, leftover_containers
from tests.conftest import require_service

TEST_DB = "headwater_container_jobs_test"


def count_containers() -> int:
    """Containers the engine has, running or not (`docker ps -aq`)."""
    out = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, check=True)
    return len(out.stdout.split())


@pytest.fixture(scope="module")
def no_leftover_containers() -> Iterator[None]:
    """`docker ps -a` has as many containers after the module's tests as before.

    Modules opt in with `pytest.mark.usefixtures("no_leftover_containers")`.
    """
    require_service("docker")
    before = count_containers()
    yield
    assert count_containers() == before
    client = docker_client()
    assert leftover_containers(client) == []
    client.close()


@pytest.fixture
def cj_settings(s3_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """MinIO artifact store and a dedicated PostgreSQL database for calculation records."""
    require_service("postgres")
    admin = create_engine(s3_settings.postgres_url.get_secret_value(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": TEST_DB}):
            conn.execute(text(f'CREATE DATABASE "{TEST_DB}"'))
    admin.dispose()
    url = s3_settings.postgres_url.get_secret_value().rsplit("/", 1)[0] + f"/{TEST_DB}"
    monkeypatch.setenv("HEADWATER_DATABASE_URL", url)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
