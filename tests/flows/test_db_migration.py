"""db-migration flow end to end: Chinook SQLite -> the local MongoDB-wire server (FerretDB)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from pydantic import SecretStr

import tasks.mongo as mongo_tasks
from blocks.mongo import MongoConnection
from blocks.registry import sql_connector_from_url
from flows.db_migration import DbMigrationParams, db_migration
from headwater.errors import ConfigError
from headwater.settings import get_settings
from tasks.mongo import client_for_url, close_clients
from tasks.sql import dispose_engines

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHINOOK = get_settings().shared_data_dir / "sql" / "chinook.sqlite"
EXAMPLE_PLAN = yaml.safe_load((ROOT / "examples" / "chinook-embed.yaml").read_text())


def mongo_base_url() -> str:
    """The MongoDB-wire server of the local services, without a database."""
    url = get_settings().mongo_url.get_secret_value()
    return url.rsplit("/", 1)[0]


class Target:
    """A database on the local MongoDB-wire server, emptied before use, with its block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"{mongo_base_url()}/{name}"
        self.client = client_for_url(self.url)
        self.db = self.client[name]
        # drop collections, never the database: dropping a FerretDB (SQLite) database while
        # other connections are open has crashed the server
        for coll in self.db.list_collection_names():
            self.db.drop_collection(coll)
        self.block = f"test-dbmig-{name.replace('_', '-')}"
        MongoConnection(url=SecretStr(self.url)).save(self.block, overwrite=True)

    def count(self, collection: str, query: dict[str, Any] | None = None) -> int:
        return self.db[collection].count_documents(query or {})

    def ids(self, collection: str) -> set[str]:
        return {
            json.dumps(d["_id"], sort_keys=True, default=str)
            for d in self.db[collection].find({}, {"_id": 1})
        }


def source_block(url: str, name: str) -> str:
    """Save a SQLAlchemy source block; return its name."""
    sql_connector_from_url(url).save(name, overwrite=True)
    return name


def run(source: str, target: Target, **kwargs: Any) -> dict[str, Any]:
    """Run the flow in-process."""
    return db_migration(DbMigrationParams(source_block=source, target_block=target.block, **kwargs))


def decimal_of(value: Any) -> Decimal:
    """A stored decimal (Decimal128 on MongoDB, an exact string on FerretDB) as Decimal."""
    return value.to_decimal() if hasattr(value, "to_decimal") else Decimal(value)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    yield
    mongo_tasks.FAULT_AFTER_BATCHES = None
    dispose_engines()
    close_clients()


@pytest.fixture
def sqlite_chinook(tmp_path: Path) -> Path:
    """A writable copy of Chinook."""
    path = tmp_path / "chinook.sqlite"
    shutil.copyfile(CHINOOK, path)
    path.chmod(0o644)
    return path


@pytest.fixture
def target(mongo_service: Any) -> Target:
    return Target("dbmig_flow_test")


def test_chinook_sqlite_embed_plan_then_rerun_writes_nothing(
    sqlite_chinook: Path, target: Target, prefect_api: Any
) -> None:
    src = source_block(f"sqlite:///{sqlite_chinook}", "test-dbmig-sqlite")
    summary = run(src, target, plan=EXAMPLE_PLAN, batch_size=150, verify_sample=0)
    assert summary["verified"] is True
    expected = {"Album": 347, "Artist": 275, "Customer": 59, "Employee": 8, "Genre": 25,
                "invoices": 412, "MediaType": 5, "playlists": 18, "tracks": 3503}  # fmt: skip
    assert {c: target.count(c) for c in expected} == expected
    assert "InvoiceLine" not in target.db.list_collection_names()
    tables = summary["tables"]
    assert tables["Invoice"]["embedded_rows"] == 2240 and tables["Invoice"]["batches"] == 3
    assert tables["Playlist"]["embedded_rows"] == 8715
    assert tables["Track"]["documents_written"] == 3503

    inv = target.db.invoices.find_one({"_id": 1})
    assert inv["CustomerId"] == 2 and inv["billing_zip"] == "70174"
    assert inv["InvoiceDate"] == dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    assert decimal_of(inv["Total"]) == Decimal("1.98")
    assert [(li["InvoiceLineId"], li["TrackId"], li["Quantity"]) for li in inv["lines"]] == [
        (1, 2, 1),
        (2, 4, 1),
    ]
    assert decimal_of(inv["lines"][0]["UnitPrice"]) == Decimal("0.99")
    assert sum(len(d["lines"]) for d in target.db.invoices.find({}, {"lines": 1})) == 2240
    playlist = target.db.playlists.find_one({"_id": 1})
    assert playlist["Name"] == "Music" and len(playlist["track_ids"]) == 3290
    employee = target.db.Employee.find_one({"_id": 1})
    assert employee["ReportsTo"] is None  # NULL kept
    assert (
        target.db.tracks.find_one({"_id": 1})["Composer"]
        == "Angus Young, Malcolm Young, Brian Johnson"
    )
    checkpoints = list(target.db["_headwater_migrations"].find())
    assert len(checkpoints) == 9 and all(c["complete"] for c in checkpoints)

    before = {c: target.ids(c) for c in expected}
    again = run(src, target, plan=EXAMPLE_PLAN, batch_size=150, verify_sample=0)
    assert again["verified"] is True
    assert again["documents_written"] == 0
    assert all(t["note"] == "already complete" for t in again["tables"].values())
    assert {c: target.ids(c) for c in expected} == before
    assert {c: target.count(c) for c in expected} == expected


def test_killed_mid_table_resumes_to_exact_counts(
    sqlite_chinook: Path, target: Target, prefect_api: Any
) -> None:
    src = source_block(f"sqlite:///{sqlite_chinook}", "test-dbmig-sqlite")
    plan = {"exclude": ["Album", "Artist", "Customer", "Employee", "Genre", "Invoice",
                        "InvoiceLine", "MediaType", "Playlist", "PlaylistTrack"]}  # fmt: skip
    mongo_tasks.FAULT_AFTER_BATCHES = 3
    mongo_tasks._batches_written = 0
    with pytest.raises(RuntimeError, match="injected fault"):
        run(src, target, plan=plan, batch_size=400)
    partial = target.count("Track")
    assert 0 < partial < 3503
    ck = target.db["_headwater_migrations"].find_one({"table": "Track"})
    assert ck["complete"] is False and 1 <= len(ck["done"]) <= 3

    mongo_tasks.FAULT_AFTER_BATCHES = None
    resumed = run(src, target, plan=plan, batch_size=400)
    track = resumed["tables"]["Track"]
    assert resumed["verified"] is True and track["note"] == "resumed"
    assert track["batches_skipped"] == len(ck["done"])
    assert 0 < track["documents_written"] < 3503
    assert target.count("Track") == 3503 == len(target.ids("Track"))


def test_incremental_picks_up_inserted_and_updated_rows(
    sqlite_chinook: Path, target: Target, prefect_api: Any
) -> None:
    engine = sa.create_engine(f"sqlite:///{sqlite_chinook}")
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE Track ADD COLUMN last_update DATETIME"))
        conn.execute(sa.text("UPDATE Track SET last_update = '2024-01-01 00:00:00'"))
    src = source_block(f"sqlite:///{sqlite_chinook}", "test-dbmig-sqlite")
    plan = {
        "exclude": ["Album", "Customer", "Employee", "Genre", "MediaType", "Playlist",
                    "PlaylistTrack"],
        "tables": {"Invoice": {"collection": "invoices",
                               "embed": [{"table": "InvoiceLine", "as": "lines"}]}},
    }  # fmt: skip
    first = run(src, target, plan=plan, mode="incremental")
    assert first["tables"]["Track"]["rows_copied"] == 3503

    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE Track SET Name = 'Renamed', last_update = '2024-06-01' WHERE TrackId = 5"
            )
        )
        conn.execute(sa.text(
            "INSERT INTO Track (TrackId, Name, MediaTypeId, Milliseconds, UnitPrice, last_update) "
            "VALUES (4000, 'New', 1, 1000, 0.99, '2024-06-01')"
        ))  # fmt: skip
        conn.execute(sa.text("INSERT INTO Artist (ArtistId, Name) VALUES (999, 'Newcomer')"))
        conn.execute(sa.text("INSERT INTO InvoiceLine VALUES (5000, 1, 3, 0.99, 2)"))
    engine.dispose()

    second = run(src, target, plan=plan, mode="incremental")
    tables = second["tables"]
    assert second["verified"] is True
    assert tables["Track"]["rows_copied"] == 2 and tables["Artist"]["rows_copied"] == 1
    assert tables["Invoice"]["rows_copied"] == 1 and tables["Invoice"]["embedded_rows"] == 3
    assert target.db.Track.find_one({"_id": 5})["Name"] == "Renamed"
    assert target.db.Track.find_one({"_id": 4000})["Name"] == "New"
    assert target.db.Artist.find_one({"_id": 999})["Name"] == "Newcomer"
    assert [li["InvoiceLineId"] for li in target.db.invoices.find_one({"_id": 1})["lines"]] == [
        1,
        2,
        5000,
    ]
    assert target.count("Track") == 3504 and target.count("Artist") == 276

    third = run(src, target, plan=plan, mode="incremental")
    assert third["rows_copied"] == 0 and third["verified"] is True


def test_orphans_and_mismatch_reporting(
    sqlite_chinook: Path, target: Target, prefect_api: Any
) -> None:
    engine = sa.create_engine(f"sqlite:///{sqlite_chinook}")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO InvoiceLine VALUES (9001, 77777, 1, 0.99, 1)"))
    engine.dispose()
    src = source_block(f"sqlite:///{sqlite_chinook}", "test-dbmig-sqlite")
    invoices = {"collection": "invoices", "embed": [{"table": "InvoiceLine", "as": "lines"}]}
    plan = {"exclude": ["Album", "Artist", "Customer", "Employee", "Genre", "MediaType",
                        "Playlist", "PlaylistTrack", "Track"],
            "tables": {"Invoice": invoices}}  # fmt: skip
    summary = run(src, target, plan=plan)
    assert summary["verified"] is True and summary["tables"]["Invoice"]["orphans"] == 1
    orphan = target.db.invoices_orphans.find_one()
    assert orphan["_id"] == {"field": "lines", "key": {"InvoiceLineId": 9001}}
    assert orphan["parent_key"] == {"InvoiceId": 77777} and orphan["row"]["TrackId"] == 1

    target.db.invoices.update_one({"_id": 7}, {"$set": {"BillingCity": "Tampered"}})
    target.db.invoices.delete_one({"_id": 8})
    from flows.db_migration import MigrationFailed

    with pytest.raises(MigrationFailed, match="documents 411 != source rows 412") as info:
        run(src, target, plan=plan)
    assert "BillingCity" in str(info.value)
    assert info.value.summary["tables"]["Invoice"]["verified"] is False


def test_unreachable_target_fails_before_any_write(
    sqlite_chinook: Path, mongo_service: Any, prefect_api: Any
) -> None:
    src = source_block(f"sqlite:///{sqlite_chinook}", "test-dbmig-sqlite")
    MongoConnection(
        url=SecretStr("mongodb://127.0.0.1:9/nowhere"), server_selection_timeout_ms=1500
    ).save("test-dbmig-unreachable", overwrite=True)
    with pytest.raises(ConfigError, match="target: cannot reach the MongoDB server"):
        db_migration(DbMigrationParams(source_block=src, target_block="test-dbmig-unreachable"))


def test_cli_dry_run_json_and_bad_source(
    sqlite_chinook: Path, target: Target, prefect_api: Any
) -> None:
    from typer.testing import CliRunner

    from headwater.cli import app

    runner = CliRunner()
    plan_file = ROOT / "examples" / "chinook-embed.yaml"
    res = runner.invoke(app, ["run", "db-migration", "--source", f"sqlite:///{sqlite_chinook}",
                              "--target", target.url, "--plan", str(plan_file), "--dry-run",
                              "--json-schema", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["dry_run"] is True
    assert out["validators"]["invoices"]["validator"]["$jsonSchema"]["bsonType"] == "object"
    assert {r["collection"] for r in out["plan"]} >= {"invoices", "playlists", "tracks"}
    assert target.db.list_collection_names() == []  # a dry run writes nothing

    res = runner.invoke(app, ["run", "db-migration", "--source", "sqlite:////nonexistent/x.db",
                              "--target", target.url])  # fmt: skip
    assert res.exit_code != 0
    assert isinstance(res.exception, ConfigError) and "not found" in str(res.exception)


def _bson_type(value: Any) -> set[str]:
    """The `$jsonSchema` bsonType names a decoded value may have been stored as."""
    from bson import Binary, Decimal128, ObjectId

    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"bool"}
    if isinstance(value, int):
        return {"int", "long"}  # pymongo decodes both to int
    found = {
        float: "double", str: "string", Decimal128: "decimal", dt.datetime: "date",
        bytes: "binData", Binary: "binData", ObjectId: "objectId", dict: "object", list: "array",
    }  # fmt: skip
    for cls, name in found.items():
        if isinstance(value, cls):
            return {name}
    if type(value).__name__ == "UUID":
        return {"binData"}
    return {type(value).__name__}


def conformance_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Where `value` breaks a `$jsonSchema` (the subset the planner emits: bsonType, required,
    properties, items)."""
    errors = []
    if "bsonType" in schema:
        allowed = schema["bsonType"]
        allowed = {allowed} if isinstance(allowed, str) else set(allowed)
        if not _bson_type(value) & allowed:
            return [f"{path or '<doc>'}: {_bson_type(value)} not in {sorted(allowed)}"]
    if isinstance(value, dict):
        errors += [f"{path}.{k} missing" for k in schema.get("required", []) if k not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += conformance_errors(sub, value[key], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += conformance_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def test_json_schema_validators_match_every_stored_document(
    sqlite_chinook: Path, target: Target, prefect_api: Any
) -> None:
    src = source_block(f"sqlite:///{sqlite_chinook}", "test-dbmig-sqlite")
    dry = run(src, target, plan=EXAMPLE_PLAN, dry_run=True, json_schema=True)
    assert {v["status"] for v in dry["validators"].values()} == {"dry run"}
    assert target.db.list_collection_names() == []

    summary = run(src, target, plan=EXAMPLE_PLAN, json_schema=True, verify_sample=0)
    assert summary["verified"] is True
    validators = summary["validators"]
    assert set(validators) == {"Album", "Artist", "Customer", "Employee", "Genre", "invoices",
                               "MediaType", "playlists", "tracks"}  # fmt: skip
    ferret = summary["target"]["ferretdb"] is not None
    for v in validators.values():  # FerretDB v1 has no document validation; MongoDB applies it
        assert v["status"].startswith("not enforced") if ferret else v["status"] == "applied"

    invoices = validators["invoices"]["validator"]["$jsonSchema"]
    assert invoices["properties"]["_id"] == {"bsonType": ["int", "long"]}
    assert {"_id", "CustomerId", "InvoiceDate", "Total", "lines"} <= set(invoices["required"])
    assert "BillingState" not in invoices["required"]  # a nullable column
    assert invoices["properties"]["BillingState"] == {"bsonType": ["string", "null"]}
    assert invoices["properties"]["Total"] == {"bsonType": "string" if ferret else "decimal"}
    line = invoices["properties"]["lines"]["items"]
    assert line["bsonType"] == "object" and "UnitPrice" in line["required"]
    playlists = validators["playlists"]["validator"]["$jsonSchema"]
    assert playlists["properties"]["track_ids"]["items"] == {"bsonType": ["int", "long"]}

    checked = 0
    for name, v in validators.items():
        for doc in target.db[name].find():
            assert conformance_errors(v["validator"]["$jsonSchema"], doc) == [], (name, doc["_id"])
            checked += 1
    assert checked == 412 + 18 + 3503 + 347 + 275 + 59 + 8 + 25 + 5
    # the checker is not vacuous: a document of the wrong shape is caught
    bad = {"_id": "x", "CustomerId": None, "lines": [{"UnitPrice": 1}]}
    assert len(conformance_errors(invoices, bad)) >= 3


def test_table_without_primary_key_streams_in_chunks_and_verifies(
    tmp_path: Path, target: Target, prefect_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nokey.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    rows = [
        {"sensor": f"s{i % 7}", "value": None if i % 11 == 0 else (i % 500) / 4,
         "shape": f"POINT({i % 3} {i % 5})"}
        for i in range(5200)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE log (sensor TEXT NOT NULL, value REAL, shape)"))
        conn.execute(sa.text("INSERT INTO log VALUES (:sensor, :value, :shape)"), rows)
    engine.dispose()
    distinct = len({(r["sensor"], r["value"], r["shape"]) for r in rows})
    assert distinct < len(rows)  # duplicate rows must stay apart

    chunks: list[int] = []
    real_write = mongo_tasks.write_documents

    def recording_write(collection: Any, docs: Any) -> int:
        if collection.name == "log":
            chunks.append(len(docs))
        return real_write(collection, docs)

    monkeypatch.setattr(mongo_tasks, "write_documents", recording_write)
    src = source_block(f"sqlite:///{path}", "test-dbmig-nokey")
    summary = run(src, target, batch_size=1000, verify_sample=0)
    assert summary["verified"] is True
    assert any("'log' has no primary key" in w for w in summary["warnings"])
    # an untyped column (SQLite's NullType) has no BSON mapping: stored as string, reported
    assert [(u["table"], u["column"], u["stored_as"]) for u in summary["unsupported_columns"]] == [
        ("log", "shape", "string")
    ]
    assert chunks == [1000] * 5 + [200]  # streamed: never the whole table at once
    assert target.count("log") == 5200
    assert target.db.log.find_one({"shape": "POINT(1 2)"})["sensor"].startswith("s")
    ids = target.ids("log")
    assert len(ids) == 5200

    again = run(src, target, batch_size=1000, restart=True, verify_sample=0)
    assert again["verified"] is True and target.count("log") == 5200
    assert target.ids("log") == ids  # the same row-hash ids: rewriting duplicates nothing

    target.db.log.update_one({"sensor": "s3"}, {"$set": {"value": -1.0}})
    from flows.db_migration import MigrationFailed

    with pytest.raises(MigrationFailed, match="without primary key differ"):
        run(src, target, batch_size=1000, verify_sample=0)  # complete: verification only


def test_bad_values_are_kept_as_strings_reported_and_the_run_goes_on(
    tmp_path: Path, target: Target, prefect_api: Any
) -> None:
    path = tmp_path / "dirty.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE reading (id INTEGER PRIMARY KEY, taken_at DATETIME NOT NULL, "
            "amount NUMERIC(10,2), payload JSON)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE note (id INTEGER PRIMARY KEY, reading_id INTEGER REFERENCES reading(id), "
            "written DATETIME)"
        )
        conn.execute(
            sa.text("INSERT INTO reading VALUES (:i, :t, :a, :p)"),
            [{"i": i, "t": f"2024-01-01 00:{i % 60:02d}:00", "a": f"{i}.50",
              "p": json.dumps({"n": i})} for i in range(1, 301)],
        )  # fmt: skip
        conn.exec_driver_sql("UPDATE reading SET taken_at = 'sometime soon' WHERE id = 7")
        conn.exec_driver_sql("UPDATE reading SET amount = 'n/a' WHERE id = 150")
        conn.exec_driver_sql("UPDATE reading SET payload = '{broken' WHERE id = 299")
        conn.execute(
            sa.text("INSERT INTO note VALUES (:i, :r, :w)"),
            [{"i": i, "r": i, "w": "yesterday" if i == 42 else "2024-02-01 10:00:00"}
             for i in range(1, 101)],
        )  # fmt: skip
    engine.dispose()
    src = source_block(f"sqlite:///{path}", "test-dbmig-dirty")
    plan = {"tables": {"reading": {"embed": [{"table": "note", "as": "notes"}]}}}
    summary = run(src, target, plan=plan, batch_size=100, verify_sample=0)

    assert summary["verified"] is True  # nothing lost: every row has its document
    assert target.count("reading") == 300
    assert summary["tables"]["reading"]["bad_values"] == 4
    named = {(b["table"], json.dumps(b["key"]), b["column"]) for b in summary["bad_values"]}
    assert named == {
        ("reading", '{"id": 7}', "taken_at"),
        ("reading", '{"id": 150}', "amount"),
        ("reading", '{"id": 299}', "payload"),
        ("note", '{"id": 42}', "written"),
    }
    bad = {b["column"]: b for b in summary["bad_values"]}
    assert bad["amount"]["value"] == "n/a" and "InvalidOperation" in bad["amount"]["error"]
    doc7 = target.db.reading.find_one({"_id": 7})
    assert doc7["taken_at"] == "sometime soon"  # kept as its string
    doc8 = target.db.reading.find_one({"_id": 8})
    assert doc8["taken_at"] == dt.datetime(2024, 1, 1, 0, 8, tzinfo=dt.UTC)
    assert decimal_of(doc8["amount"]) == Decimal("8.50") and doc8["payload"] == {"n": 8}
    assert target.db.reading.find_one({"_id": 299})["payload"] == "{broken"
    assert target.db.reading.find_one({"_id": 42})["notes"][0]["written"] == "yesterday"
    # verification re-reads the same values, so the checksum holds on a re-run
    again = run(src, target, plan=plan, batch_size=100, verify_sample=0)
    assert again["verified"] is True and again["documents_written"] == 0


def test_sampled_verification_counts_exactly_and_checks_the_sampled_ranges(
    sqlite_chinook: Path, target: Target, prefect_api: Any
) -> None:
    src = source_block(f"sqlite:///{sqlite_chinook}", "test-dbmig-sqlite")
    others = ["Album", "Artist", "Customer", "Employee", "Genre", "Invoice", "InvoiceLine",
              "MediaType", "Playlist", "PlaylistTrack"]  # fmt: skip
    plan = {"exclude": others}
    summary = run(src, target, plan=plan, batch_size=100, verify_sample=500)
    track = summary["tables"]["Track"]
    assert summary["verified"] is True and track["documents"] == 3503
    assert track["verify_method"] == "count + first 500 stored documents"
    assert track["checked_rows"] == 500
    # the sampled ranges (5 of 36, spread over the key space) were written first, so they are
    # what the server returns first
    head = [d["_id"] for d in target.db.Track.find({}, {"_id": 1}).limit(500)]
    sampled = {i for k in (0, 7, 14, 21, 28) for i in range(k * 100 + 1, k * 100 + 101)}
    assert sum(i in sampled for i in head) >= 300, sorted(head)[:20]

    engine = sa.create_engine(f"sqlite:///{sqlite_chinook}")
    with engine.begin() as conn:  # the source changes under a sampled document
        conn.execute(
            sa.text("UPDATE Track SET Name = 'Renamed' WHERE TrackId = :i"), {"i": head[3]}
        )
    engine.dispose()
    outside = next(i for i in range(1, 3504) if i not in head)
    target.db.Track.delete_one({"_id": outside})
    from flows.db_migration import MigrationFailed

    with pytest.raises(MigrationFailed, match="documents 3502 != source rows 3503") as info:
        run(src, target, plan=plan, batch_size=100, verify_sample=500)
    assert f"_id={head[3]}: Name" in str(info.value)


def test_a_bad_value_in_an_id_array_is_kept_and_named(
    tmp_path: Path, target: Target, prefect_api: Any
) -> None:
    path = tmp_path / "tags.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.exec_driver_sql(
            "CREATE TABLE item_tag (item_id INTEGER NOT NULL REFERENCES item(id), "
            "tag_id INTEGER NOT NULL, PRIMARY KEY (item_id, tag_id))"
        )
        conn.execute(sa.text("INSERT INTO item VALUES (:i, :n)"),
                     [{"i": i, "n": f"item {i}"} for i in range(1, 21)])  # fmt: skip
        conn.execute(sa.text("INSERT INTO item_tag VALUES (:i, :t)"),
                     [{"i": i, "t": t} for i in range(1, 21) for t in (1, 2)])  # fmt: skip
        conn.exec_driver_sql("INSERT INTO item_tag VALUES (5, 'seven')")
    engine.dispose()
    src = source_block(f"sqlite:///{path}", "test-dbmig-tags")
    plan = {"tables": {"item": {"arrays": [{"junction": "item_tag", "as": "tags",
                                             "value": "tag_id"}]}}}  # fmt: skip
    summary = run(src, target, plan=plan, verify_sample=0)
    assert summary["verified"] is True
    assert [(b["table"], b["key"], b["column"], b["value"]) for b in summary["bad_values"]] == [
        ("item_tag", {"item_id": 5, "tag_id": "seven"}, "tag_id", "seven")
    ]
    assert sorted(target.db.item.find_one({"_id": 5})["tags"], key=str) == [1, 2, "seven"]
    assert sum(len(d["tags"]) for d in target.db.item.find()) == 41
