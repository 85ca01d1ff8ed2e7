"""Headwater's own database: SQLAlchemy engine, declarative base and Alembic upgrades.

PostgreSQL in production, SQLite embedded by default (`Settings.sqlalchemy_url`). Each
capability keeps its models in `headwater/models/<capability>.py` and its Alembic revisions in
`headwater/migrations/versions/` on its own branch (`branch_labels`), so `upgrade heads`
brings every capability's tables up to date independently.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    """Declarative base of every Headwater model."""


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """A pooled engine for `url` (default: the configured Headwater database)."""
    from headwater.settings import get_settings

    url = url or get_settings().sqlalchemy_url()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(url: str | None = None) -> sessionmaker:
    """A session factory bound to the engine of `url`."""
    return sessionmaker(get_engine(url), expire_on_commit=False)


def upgrade(url: str | None = None) -> None:
    """Apply every Alembic revision (all capability branches) to the database at `url`."""
    from alembic import command
    from alembic.config import Config

    from headwater.settings import get_settings

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option(
        "sqlalchemy.url", (url or get_settings().sqlalchemy_url()).replace("%", "%%")
    )
    command.upgrade(cfg, "heads")
