"""Configuration checks: each failure is a ConfigError naming the setting to fix."""

from __future__ import annotations

from typing import Any

from headwater.errors import ConfigError
from headwater.settings import Settings


def check_database(url: str, setting: str = "HEADWATER_DATABASE_URL") -> str:
    """Connect to a SQLAlchemy URL and run `SELECT 1`; raise ConfigError naming `setting`."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(setting, f"not a usable SQLAlchemy URL ({exc})") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        raise ConfigError(setting, f"cannot connect to {engine.url!r}: {reason}") from None
    finally:
        engine.dispose()
    return engine.url.render_as_string(hide_password=True)


def check_prefect_api(url: str | None) -> str:
    """GET the Prefect API's /health; raise ConfigError naming PREFECT_API_URL."""
    import httpx

    if not url:
        return "ephemeral API (PREFECT_API_URL not set)"
    try:
        response = httpx.get(url.rstrip("/") + "/health", timeout=5)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ConfigError("PREFECT_API_URL", f"cannot reach {url}: {exc}") from None
    return url


def check_configuration(settings: Settings) -> list[dict[str, Any]]:
    """Run every check; return `[{name, detail}]` or raise the first ConfigError."""
    import os

    from headwater.storage import check_store, get_store

    store = get_store(settings)
    check_store(store)
    db = check_database(settings.sqlalchemy_url())
    api = check_prefect_api(settings.prefect_api_url or os.environ.get("PREFECT_API_URL"))
    return [
        {"name": "artifact store", "detail": store.describe()},
        {"name": "database", "detail": db},
        {"name": "prefect api", "detail": api},
    ]
