"""Pure planning, type conversion and field-name mapping of the db-migration capability."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
import sqlalchemy as sa
from bson import Binary, Decimal128, Int64, ObjectId
from sqlalchemy.dialects import mysql, postgresql

from headwater.errors import InputError
from tasks.migration_plan import (
    ColumnInfo,
    DocumentBuilder,
    FieldSpec,
    ForeignKeyInfo,
    SchemaInfo,
    TableInfo,
    build_plan,
    canonical,
    classify_type,
    converter,
    diff_documents,
    map_field_names,
    mongo_field_name,
    range_id,
    row_hash_id,
    sample_ranges,
    split_ranges,
)


@pytest.mark.parametrize(
    ("type_", "kind"),
    [
        (sa.Integer(), "int"),
        (sa.BigInteger(), "bigint"),
        (sa.Numeric(10, 2), "decimal"),
        (sa.Float(), "float"),
        (sa.DateTime(), "datetime"),
        (sa.Date(), "date"),
        (sa.LargeBinary(), "binary"),
        (postgresql.BYTEA(), "binary"),
        (sa.Uuid(), "uuid"),
        (postgresql.UUID(), "uuid"),
        (postgresql.JSONB(), "json"),
        (sa.JSON(), "json"),
        (sa.String(20), "string"),
        (mysql.TINYINT(), "int"),
        (sa.Boolean(), "bool"),
        (postgresql.INTERVAL(), "unsupported"),
        (sa.types.NullType(), "unsupported"),
    ],
)
def test_classify_type(type_: object, kind: str) -> None:
    assert classify_type(type_) == kind


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("Order Details", "Order_Details"),
        ("a.b", "a_b"),
        ("$price", "_price"),
        ("_id", "id_"),
        ("plain", "plain"),
        ("  ", "_"),
    ],
)
def test_mongo_field_name(name: str, field: str) -> None:
    assert mongo_field_name(name) == field


def test_map_field_names_keeps_fields_unique_and_applies_renames() -> None:
    out = map_field_names(["a b", "a_b", "x"], {"x": "renamed"})
    assert out == {"a b": "a_b", "a_b": "a_b_2", "x": "renamed"}


def test_converters() -> None:
    assert converter("decimal")(decimal.Decimal("1.99")) == Decimal128("1.99")
    assert converter("decimal", "string")(decimal.Decimal("1.990")) == "1.990"
    naive = dt.datetime(2021, 1, 1, 12, 0, 0, 123456)
    assert converter("datetime")(naive) == dt.datetime(2021, 1, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
    plus2 = dt.datetime(2021, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert converter("datetime")(plus2) == dt.datetime(2021, 1, 1, 10, tzinfo=dt.UTC)
    assert converter("date")(dt.date(2020, 2, 29)) == dt.datetime(2020, 2, 29, tzinfo=dt.UTC)
    blob = converter("binary")(b"\x00\x01")
    assert isinstance(blob, Binary) and bytes(blob) == b"\x00\x01"
    u = uuid.uuid4()
    assert converter("uuid")(str(u)) == u
    assert converter("json")('{"a.b": [1, 2.5], "c": null}') == {"a_b": [1, 2.5], "c": None}
    big = converter("bigint")(2**40)
    assert isinstance(big, Int64) and big == 2**40
    assert isinstance(converter("int")(2**33), Int64)
    assert converter("unsupported")(dt.timedelta(days=1)) == "1 day, 0:00:00"
    for kind in ("int", "decimal", "datetime", "binary", "json", "string"):
        assert converter(kind)(None) is None  # type: ignore[arg-type]


def _chinook_like() -> SchemaInfo:
    def cols(*spec: tuple[str, str]) -> list[ColumnInfo]:
        return [ColumnInfo(name=n, kind=k, sql_type=k) for n, k in spec]  # type: ignore[arg-type]

    tables = [
        TableInfo(name="Artist", columns=cols(("ArtistId", "int"), ("Name", "string")),
                  primary_key=["ArtistId"]),
        TableInfo(name="Album", columns=cols(("AlbumId", "int"), ("Title", "string"),
                                             ("ArtistId", "int")),
                  primary_key=["AlbumId"],
                  foreign_keys=[ForeignKeyInfo(columns=["ArtistId"], ref_table="Artist",
                                               ref_columns=["ArtistId"])]),
        TableInfo(name="Track", columns=cols(("TrackId", "int"), ("Name", "string"),
                                             ("AlbumId", "int"), ("Unit Price", "decimal"),
                                             ("last_update", "datetime"), ("odd", "unsupported")),
                  primary_key=["TrackId"],
                  foreign_keys=[ForeignKeyInfo(columns=["AlbumId"], ref_table="Album",
                                               ref_columns=["AlbumId"])]),
        TableInfo(name="Playlist", columns=cols(("PlaylistId", "int"), ("Name", "string")),
                  primary_key=["PlaylistId"]),
        TableInfo(name="PlaylistTrack", columns=cols(("PlaylistId", "int"), ("TrackId", "int")),
                  primary_key=["PlaylistId", "TrackId"],
                  foreign_keys=[
                      ForeignKeyInfo(columns=["PlaylistId"], ref_table="Playlist",
                                     ref_columns=["PlaylistId"]),
                      ForeignKeyInfo(columns=["TrackId"], ref_table="Track",
                                     ref_columns=["TrackId"])]),
        TableInfo(name="Log", columns=cols(("msg", "string"), ("at", "datetime"))),
    ]  # fmt: skip
    return SchemaInfo(dialect="sqlite", tables={t.name: t for t in tables})


def test_auto_plan_one_collection_per_table() -> None:
    plan = build_plan(_chinook_like())
    assert [c.table for c in plan.collections] == sorted(_chinook_like().tables)
    album = plan.collection("Album")
    assert album.id_mode == "single" and album.key_columns == ["AlbumId"]
    assert [f.field for f in album.fields] == ["Title", "ArtistId"]
    assert album.references == {"ArtistId": "Artist"}
    pt = plan.collection("PlaylistTrack")
    assert pt.id_mode == "composite" and pt.id_fields == ["PlaylistId", "TrackId"]
    assert plan.collection("Log").id_mode == "row_hash"
    assert any("Log" in w and "no primary key" in w for w in plan.warnings)
    assert {"table": "Track", "column": "Unit Price", "field": "Unit_Price"} in plan.field_mappings
    assert plan.unsupported_columns == [
        {"table": "Track", "column": "odd", "sql_type": "unsupported", "stored_as": "string"}
    ]
    track = plan.collection("Track")
    assert (track.watermark, track.watermark_kind) == ("last_update", "timestamp")
    assert (album.watermark, album.watermark_kind) == ("AlbumId", "key")


def test_yaml_plan_embeds_nested_and_junction_arrays() -> None:
    config = {
        "exclude": ["Log"],
        "tables": {
            "Artist": {
                "collection": "artists",
                "rename": {"Name": "name"},
                "embed": [
                    {"table": "Album", "as": "albums",
                     "embed": [{"table": "Track", "as": "tracks", "exclude": ["odd"]}]}
                ],
            },
            "Playlist": {"arrays": [{"junction": "PlaylistTrack", "as": "track_ids"}]},
        },
    }  # fmt: skip
    plan = build_plan(_chinook_like(), config)
    assert [c.table for c in plan.collections] == ["Artist", "Playlist"]
    assert plan.excluded_tables == ["Log"]
    artist = plan.collection("Artist")
    assert artist.collection == "artists"
    assert [f.field for f in artist.fields] == ["name"]
    albums = artist.embeds[0]
    assert (albums.table, albums.field, albums.mode) == ("Album", "albums", "documents")
    assert albums.child_columns == ["ArtistId"] and albums.parent_columns == ["ArtistId"]
    assert "ArtistId" not in [f.column for f in albums.fields]
    tracks = albums.embeds[0]
    assert tracks.field == "tracks" and "odd" not in [f.column for f in tracks.fields]
    assert plan.unsupported_columns == []
    ids = plan.collection("Playlist").embeds[0]
    assert (ids.mode, ids.value_column, ids.field) == ("ids", "TrackId", "track_ids")
    assert sorted(plan.embedded_tables) == ["Album", "PlaylistTrack", "Track"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tables": {"Nope": {}}}, "no table 'Nope'"),
        ({"tables": {"Artist": {"embed": [{"table": "Track"}]}}}, "cannot tell how"),
        ({"bogus": 1}, "unknown top-level keys"),
        (
            {"tables": {"Artist": {"embed": [{"table": "Album", "embed": [
                {"table": "Track", "embed": [{"table": "PlaylistTrack"}]}]}]}}},
            "two levels",
        ),
    ],
)  # fmt: skip
def test_bad_plans_name_the_problem(config: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_plan(_chinook_like(), config)


def test_document_builder_ids() -> None:
    plan = build_plan(_chinook_like())
    kinds = {"PlaylistId": "int", "TrackId": "int"}
    pt = plan.collection("PlaylistTrack")
    b = DocumentBuilder(pt.fields, "decimal128", id_spec=pt, kinds=kinds)  # type: ignore[arg-type]
    assert b.build({"PlaylistId": 1, "TrackId": 7}) == {"_id": {"PlaylistId": 1, "TrackId": 7}}
    log = plan.collection("Log")
    b = DocumentBuilder(log.fields, "decimal128", id_spec=log)
    row = {"msg": "x", "at": dt.datetime(2020, 1, 1)}
    first, dup, other = b.build(row), b.build(row), b.build({**row, "msg": "y"})
    assert isinstance(first["_id"], ObjectId)
    assert len({first["_id"], dup["_id"], other["_id"]}) == 3  # duplicates kept apart
    assert first["_id"] == row_hash_id(("x", dt.datetime(2020, 1, 1)), 0)  # deterministic


def test_canonical_and_diff_treat_stored_values_as_equal() -> None:
    expected = {"_id": 1, "p": Decimal128("1.10"), "d": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                "b": Binary(b"x")}  # fmt: skip
    stored = {"_id": 1, "p": Decimal128("1.1"), "d": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
              "b": b"x"}  # fmt: skip
    assert canonical(expected) == canonical(stored)
    assert diff_documents(expected, stored) == []
    assert diff_documents(expected, {**stored, "p": Decimal128("1.2"), "z": 1}) == [
        "p",
        "z (unexpected)",
    ]
    assert diff_documents(expected, None) == ["<missing document>"]
    assert [FieldSpec(column="a", field="a", kind="int")][0].field == "a"


def test_ranges_and_samples() -> None:
    assert split_ranges([[10], [20]]) == [(None, [10]), ([10], [20]), ([20], None)]
    assert split_ranges([]) == [(None, None)]
    assert range_id([1], [2], "full:1") == range_id([1], [2], "full:1")
    assert range_id([1], [2], "full:1") != range_id([1], [2], "full:2")
    assert sample_ranges(10, 100, 0) == list(range(10))
    assert sample_ranges(10, 100_000, 20_000) == [0, 5]
