"""db-migration from PostgreSQL and MariaDB (Chinook loaded into the local services)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from headwater.errors import ConfigError
from headwater.settings import get_settings
from tasks.mongo import close_clients
from tasks.sql import dispose_engines
from tests.flows.test_db_migration import (
    CHINOOK,
    EXAMPLE_PLAN,
    Target,
    decimal_of,
    run,
    source_block,
)

pytestmark = pytest.mark.integration

COUNTS = {"invoice": 412, "invoice_line": 2240, "track": 3503, "playlist_track": 8715}
PG_PLAN = {
    "tables": {
        "invoice": {"collection": "invoices", "embed": [{"table": "invoice_line", "as": "lines"}]},
        "playlist": {
            "collection": "playlists",
            "arrays": [{"junction": "playlist_track", "as": "track_ids"}],
        },
        "track": {"collection": "tracks"},
    }
}


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def postgres_chinook(postgres_service: Any) -> str:
    """Chinook in the `chinook` database of the local PostgreSQL (loaded once, idempotently)."""
    base = get_settings().postgres_url.get_secret_value()
    url = _with_database(base, "chinook")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = 'chinook'")
        ).first()
        if not exists:
            conn.execute(sa.text("CREATE DATABASE chinook"))
    admin.dispose()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        loaded = conn.execute(
            sa.text(
                "SELECT count(*) FROM information_schema.tables WHERE table_name='invoice_line'"
            )
        ).scalar_one()
        if loaded:
            loaded = conn.execute(sa.text("SELECT count(*) FROM invoice_line")).scalar_one()
    if loaded != COUNTS["invoice_line"]:
        script = (get_settings().shared_data_dir / "sql" / "chinook_postgres.sql").read_text()
        script = re.sub(r"(?im)^(DROP DATABASE|CREATE DATABASE|\\c).*$", "", script)
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(
                "DROP TABLE IF EXISTS invoice_line, invoice, customer, employee, playlist_track, "
                "playlist, track, album, artist, genre, media_type CASCADE"
            )
            cur.execute(script)
            raw.commit()
        finally:
            raw.close()
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def mariadb_chinook(mariadb_service: Any) -> str:
    """Chinook copied from SQLite into the `chinook` database of the local MariaDB."""
    base = get_settings().mariadb_url.get_secret_value()
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text("CREATE DATABASE IF NOT EXISTS chinook CHARACTER SET utf8mb4"))
    admin.dispose()
    url = _with_database(base, "chinook")
    dst = sa.create_engine(url)
    with dst.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        done = (
            "InvoiceLine" in tables
            and conn.execute(sa.text("SELECT count(*) FROM InvoiceLine")).scalar_one()
            == COUNTS["invoice_line"]
        )
    if not done:
        src = sa.create_engine(f"sqlite:///{CHINOOK}")
        meta = sa.MetaData()
        meta.reflect(src)
        meta.drop_all(dst)
        meta.create_all(dst)
        with src.connect() as s, dst.begin() as d:
            for table in meta.sorted_tables:
                rows = [dict(r._mapping) for r in s.execute(sa.select(table))]
                if rows:
                    d.execute(table.insert(), rows)
        src.dispose()
    dst.dispose()
    return url


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    yield
    dispose_engines()
    close_clients()


def _check_invoices(target: Target, summary: dict[str, Any], line_fk: str, line_id: str) -> None:
    assert summary["verified"] is True
    assert target.count("invoices") == 412 and target.count("tracks") == 3503
    assert target.count("playlists") == 18
    inv = target.db.invoices.find_one({"_id": 1})
    assert decimal_of(inv["total" if "total" in inv else "Total"]) == Decimal("1.98")
    date = inv.get("invoice_date", inv.get("InvoiceDate"))
    assert date == dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    assert [li[line_id] for li in inv["lines"]] == [1, 2]
    assert all(line_fk not in li for li in inv["lines"])
    elements = sum(len(d["lines"]) for d in target.db.invoices.find({}, {"lines": 1}))
    assert elements == 2240
    ids = sum(len(d["track_ids"]) for d in target.db.playlists.find({}, {"track_ids": 1}))
    assert ids == 8715


def test_postgres_chinook_embed_then_rerun(postgres_chinook: str, mongo_service: Any,
                                           prefect_api: Any) -> None:  # fmt: skip
    target = Target("dbmig_pg_test")
    src = source_block(postgres_chinook, "test-dbmig-postgres")
    summary = run(src, target, plan=PG_PLAN, batch_size=1000)
    _check_invoices(target, summary, "invoice_id", "invoice_line_id")
    assert (
        target.db.tracks.find_one({"_id": 1})["name"] == "For Those About To Rock (We Salute You)"
    )
    again = run(src, target, plan=PG_PLAN, batch_size=1000)
    assert again["documents_written"] == 0 and again["verified"] is True
    assert target.count("invoices") == 412 == len(target.ids("invoices"))


def test_mariadb_chinook_embed_then_rerun(mariadb_chinook: str, mongo_service: Any,
                                          prefect_api: Any) -> None:  # fmt: skip
    target = Target("dbmig_maria_test")
    src = source_block(mariadb_chinook, "test-dbmig-mariadb")
    summary = run(src, target, plan=EXAMPLE_PLAN, batch_size=1000)
    _check_invoices(target, summary, "InvoiceId", "InvoiceLineId")
    assert target.db.Employee.find_one({"_id": 1})["ReportsTo"] is None
    again = run(src, target, plan=EXAMPLE_PLAN, batch_size=1000)
    assert again["documents_written"] == 0 and again["verified"] is True


def test_wrong_postgres_password_is_one_clear_error(postgres_chinook: str, mongo_service: Any,
                                                    prefect_api: Any) -> None:  # fmt: skip
    target = Target("dbmig_pg_test")
    bad = make_url(postgres_chinook).set(password="wrong-password")
    src = source_block(bad.render_as_string(hide_password=False), "test-dbmig-badpw")
    with pytest.raises(ConfigError, match="password authentication failed") as info:
        run(src, target)
    assert "wrong-password" not in str(info.value)
    assert target.db.list_collection_names() == []
