"""Shared test fixtures: real services from `headwater services up`, never silent skips in CI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headwater import services
from headwater.services import ServiceStatus
from headwater.settings import Settings, get_settings

START_HINT = "start it with `uv run headwater services up`"


def in_ci() -> bool:
    """True under CI (`CI=true`), where a missing service is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(name: str) -> ServiceStatus:
    """The service's status if it is healthy; else fail under CI and skip elsewhere, with a hint."""
    status = services.check(name)
    if not status.healthy:
        message = f"{name} is not running: {status.reason}; {START_HINT}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return status


@pytest.fixture
def service() -> Callable[[str], ServiceStatus]:
    """Fixture form of `require_service`: `service("minio")`."""
    return require_service


def _service_fixture(name: str) -> Callable[[], ServiceStatus]:
    @pytest.fixture(scope="session", name=f"{name}_service")
    def _fixture() -> ServiceStatus:
        return require_service(name)

    _fixture.__doc__ = f"The healthy `{name}` service (fails in CI / skips when it is down)."
    return _fixture


postgres_service = _service_fixture("postgres")
mariadb_service = _service_fixture("mariadb")
minio_service = _service_fixture("minio")
mongo_service = _service_fixture("mongo")
imap_source_service = _service_fixture("imap_source")
imap_dest_service = _service_fixture("imap_dest")
docker_service = _service_fixture("docker")
prefect_service = _service_fixture("prefect")


def pytest_configure(config: pytest.Config) -> None:
    """Point Prefect at the local server before Prefect is imported (it reads settings once).

    Without a server (locally) flows run on Prefect's ephemeral API; under CI a missing server
    fails every test that asks for `prefect_api`.
    """
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not os.environ.get("PREFECT_API_URL"):
        status = services.check("prefect")
        if status.healthy:
            os.environ["PREFECT_API_URL"] = status.url


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """The Prefect server's API URL (fails in CI / skips when it is not running)."""
    require_service("prefect")
    return os.environ.get("PREFECT_API_URL") or services.check("prefect").url


@pytest.fixture
def local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Embedded defaults in a private data dir: local-folder artifact store, SQLite."""
    monkeypatch.setenv("HEADWATER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEADWATER_STORAGE", "local")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def s3_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose artifact store is the local MinIO (fails in CI / skips when it is down)."""
    require_service("minio")
    local = get_settings().use_local_services()
    assert local.s3_access_key is not None and local.s3_secret_key is not None
    monkeypatch.setenv("HEADWATER_STORAGE", "s3")
    monkeypatch.setenv("HEADWATER_S3_ENDPOINT_URL", local.s3_endpoint_url or "")
    monkeypatch.setenv("HEADWATER_S3_ACCESS_KEY", local.s3_access_key.get_secret_value())
    monkeypatch.setenv("HEADWATER_S3_SECRET_KEY", local.s3_secret_key.get_secret_value())
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def settings() -> Settings:
    """Settings pointing at the local services (MinIO artifact store)."""
    return get_settings().use_local_services()
