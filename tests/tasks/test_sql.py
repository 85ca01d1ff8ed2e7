"""SQL reading of the db-migration capability, on private SQLite copies of Chinook."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from bson import ObjectId

from headwater.errors import ConfigError
from headwater.settings import get_settings
from tasks.migration_plan import build_plan, split_ranges
from tasks.sql import (
    batch_bounds,
    check_engine,
    count_rows,
    engine_for_url,
    get_table,
    read_batch_documents,
    reflect_engine,
)

CHINOOK = get_settings().shared_data_dir / "sql" / "chinook.sqlite"


@pytest.fixture
def chinook(tmp_path: Path) -> sa.Engine:
    """A writable copy of the Chinook SQLite database."""
    path = tmp_path / "chinook.sqlite"
    shutil.copyfile(CHINOOK, path)
    path.chmod(0o644)
    engine = engine_for_url(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def test_reflect_chinook(chinook: sa.Engine) -> None:
    schema = reflect_engine(chinook)
    assert len(schema.tables) == 11
    assert schema.tables["PlaylistTrack"].primary_key == ["PlaylistId", "TrackId"]
    kinds = {c.name: c.kind for c in schema.tables["Invoice"].columns}
    assert kinds["Total"] == "decimal" and kinds["InvoiceDate"] == "datetime"
    fks = {(tuple(f.columns), f.ref_table) for f in schema.tables["InvoiceLine"].foreign_keys}
    assert fks == {(("InvoiceId",), "Invoice"), (("TrackId",), "Track")}


def test_missing_sqlite_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        engine_for_url(f"sqlite:///{tmp_path / 'nope.sqlite'}")


def test_unreachable_server_is_one_config_error() -> None:
    engine = engine_for_url("postgresql+psycopg://u:secret-pw@127.0.0.1:9/db?connect_timeout=2")
    with pytest.raises(ConfigError, match="cannot connect to postgresql") as info:
        check_engine(engine)
    assert "secret-pw" not in str(info.value)


def _all_docs(engine: sa.Engine, plan, table: str, batch: int) -> tuple[list, int, list]:  # type: ignore[no-untyped-def]
    spec = plan.collection(table)
    bounds = batch_bounds(engine, get_table(engine, table), spec.key_columns, batch)
    docs, embedded, orphans = [], 0, []
    for lower, upper in split_ranges(bounds):
        got = read_batch_documents(engine, plan, spec, lower, upper)
        assert got.rows <= batch
        docs += got.docs
        embedded += got.embedded
        orphans += got.orphans
    return docs, embedded, orphans


def test_keyset_batches_cover_every_row_once(chinook: sa.Engine) -> None:
    plan = build_plan(reflect_engine(chinook))
    docs, _, _ = _all_docs(chinook, plan, "Track", 1000)
    assert len(docs) == 3503 == len({d["_id"] for d in docs})
    first = docs[0]
    assert first["_id"] == 1 and first["Name"] == "For Those About To Rock (We Salute You)"
    assert str(first["UnitPrice"]) == "0.99" and first["AlbumId"] == 1
    pt_docs, _, _ = _all_docs(chinook, plan, "PlaylistTrack", 2000)
    assert len(pt_docs) == 8715
    assert pt_docs[0]["_id"] == {"PlaylistId": 1, "TrackId": 1}


def test_embedding_with_orphans_and_junction_arrays(chinook: sa.Engine) -> None:
    with chinook.begin() as conn:
        conn.execute(sa.text("INSERT INTO InvoiceLine VALUES (99001, 99999, 1, 0.99, 1)"))
    config = {
        "tables": {
            "Invoice": {"embed": [{"table": "InvoiceLine", "as": "lines"}]},
            "Playlist": {"arrays": [{"junction": "PlaylistTrack", "as": "track_ids"}]},
        }
    }
    plan = build_plan(reflect_engine(chinook), config)
    docs, embedded, orphans = _all_docs(chinook, plan, "Invoice", 100)
    assert len(docs) == 412 and embedded == 2240
    assert [o["_id"] for o in orphans] == [{"field": "lines", "key": {"InvoiceLineId": 99001}}]
    assert orphans[0]["parent_key"] == {"InvoiceId": 99999}
    inv1 = docs[0]
    assert [line["InvoiceLineId"] for line in inv1["lines"]] == [1, 2]
    assert "InvoiceId" not in inv1["lines"][0] and inv1["lines"][0]["TrackId"] == 2
    playlists, ids, _ = _all_docs(chinook, plan, "Playlist", 5)
    assert ids == 8715
    by_id = {d["_id"]: d for d in playlists}
    expected = count_rows(chinook, get_table(chinook, "PlaylistTrack"), sa.text("PlaylistId = 1"))
    assert len(by_id[1]["track_ids"]) == expected
    assert by_id[1]["track_ids"] == sorted(by_id[1]["track_ids"])


def test_nested_embedding_two_levels(chinook: sa.Engine) -> None:
    config = {
        "tables": {
            "Artist": {
                "embed": [{"table": "Album", "as": "albums",
                           "embed": [{"table": "Track", "as": "tracks"}]}]
            }
        },
        "exclude": ["InvoiceLine", "PlaylistTrack"],
    }  # fmt: skip
    plan = build_plan(reflect_engine(chinook), config)
    docs, embedded, orphans = _all_docs(chinook, plan, "Artist", 50)
    assert len(docs) == 275 and orphans == []
    assert embedded == 347 + 3503 - 0  # every album and every track with an album
    acdc = next(d for d in docs if d["_id"] == 1)
    assert [a["AlbumId"] for a in acdc["albums"]] == [1, 4]
    assert len(acdc["albums"][0]["tracks"]) == 10


def test_table_without_primary_key_and_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    raw = sa.create_engine(f"sqlite:///{path}")
    with raw.begin() as conn:
        conn.execute(sa.text("CREATE TABLE log (msg TEXT, shape)"))
        conn.execute(sa.text("INSERT INTO log VALUES ('a', 'P1'), ('a', 'P1'), ('b', NULL)"))
    raw.dispose()
    engine = engine_for_url(f"sqlite:///{path}")
    plan = build_plan(reflect_engine(engine))
    assert plan.unsupported_columns[0]["column"] == "shape"
    spec = plan.collection("log")
    got = read_batch_documents(engine, plan, spec, None, None)
    ids = [d["_id"] for d in got.docs]
    assert len(set(ids)) == 3 and all(isinstance(i, ObjectId) for i in ids)
    again = read_batch_documents(engine, plan, spec, None, None)
    assert [d["_id"] for d in again.docs] == ids  # deterministic: reruns upsert the same ids
    assert got.docs[0]["shape"] == "P1"
    engine.dispose()
