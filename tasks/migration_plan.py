"""Pure planning for relational -> MongoDB migration: schema model, plans, types, field names.

Nothing here touches a database: `tasks/sql.py` reflects a schema into `SchemaInfo`, this module
turns it (plus an optional YAML plan) into a `MigrationPlan` and converts rows into documents.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import sqlalchemy.types as sat
from bson import Binary, Decimal128, Int64, ObjectId
from pydantic import BaseModel, Field

from headwater.errors import InputError

Kind = Literal[
    "int", "bigint", "float", "decimal", "bool", "string", "date", "datetime", "time",
    "binary", "uuid", "json", "array", "unsupported",
]  # fmt: skip

WATERMARK_NAMES = {"lastupdate", "updatedat", "lastmodified", "modifiedat", "updatetime"}
CHECKPOINTS = "_headwater_migrations"

# --- schema model (output of reflection) ------------------------------------------------------


class ColumnInfo(BaseModel):
    """One reflected column."""

    name: str
    kind: Kind
    sql_type: str
    nullable: bool = True


class ForeignKeyInfo(BaseModel):
    """One reflected foreign key: `columns` of this table reference `ref_columns` of `ref_table`."""

    columns: list[str]
    ref_table: str
    ref_columns: list[str]


class TableInfo(BaseModel):
    """One reflected table."""

    name: str
    columns: list[ColumnInfo]
    primary_key: list[str] = Field(default_factory=list)
    foreign_keys: list[ForeignKeyInfo] = Field(default_factory=list)

    def column(self, name: str) -> ColumnInfo:
        """The column called `name` (InputError when there is none)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise InputError(f"plan: table {self.name!r} has no column {name!r}")


class SchemaInfo(BaseModel):
    """A reflected database schema."""

    dialect: str
    tables: dict[str, TableInfo]

    def table(self, name: str) -> TableInfo:
        """The table called `name` (InputError when there is none)."""
        if name not in self.tables:
            raise InputError(f"plan: source has no table {name!r} (tables: {sorted(self.tables)})")
        return self.tables[name]


def classify_type(type_: Any) -> Kind:
    """Map a SQLAlchemy column type to the kind of BSON value it becomes."""
    checks: list[tuple[type | tuple[type, ...], Kind]] = [
        (sat.Boolean, "bool"),
        (sat.BigInteger, "bigint"),
        (sat.Integer, "int"),
        (sat.Float, "float"),
        (sat.Numeric, "decimal"),
        (sat.DateTime, "datetime"),
        (sat.Date, "date"),
        (sat.Time, "time"),
        (sat.Uuid, "uuid"),
        (sat.JSON, "json"),
        (sat.ARRAY, "array"),
        (sat._Binary, "binary"),
        ((sat.String, sat.Enum), "string"),
    ]
    for cls, kind in checks:
        if isinstance(type_, cls):
            return kind
    name = type(type_).__name__.upper()
    if name in {"JSONB", "JSON"}:
        return "json"
    if name in {"UUID", "UNIQUEIDENTIFIER"}:
        return "uuid"
    if name in {"BYTEA", "BLOB", "LONGBLOB", "MEDIUMBLOB", "TINYBLOB"}:
        return "binary"
    return "unsupported"


# --- field names --------------------------------------------------------------------------------

_ILLEGAL = re.compile(r"[.\s\x00]+")


def mongo_field_name(name: str) -> str:
    """A MongoDB-safe field name: no dots, spaces or NULs, no leading `$`, never `_id`."""
    out = _ILLEGAL.sub("_", name.strip()) or "_"
    if out.startswith("$"):
        out = "_" + out.lstrip("$")
    if out == "_id":
        out = "id_"
    return out


def map_field_names(
    names: Sequence[str], renames: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Map column names to unique field names (explicit renames first, then sanitising).

    Args:
        names: Column names in table order.
        renames: Explicit column -> field renames from a plan.

    Returns:
        Column name -> field name, unique within the table.
    """
    renames = renames or {}
    used: set[str] = set()
    out: dict[str, str] = {}
    for name in names:
        base = mongo_field_name(renames.get(name, name))
        field, n = base, 2
        while field in used:
            field, n = f"{base}_{n}", n + 1
        used.add(field)
        out[name] = field
    return out


# --- plan model ---------------------------------------------------------------------------------


class FieldSpec(BaseModel):
    """One source column copied into a document field."""

    column: str
    field: str
    kind: Kind
    nullable: bool = True


class EmbedSpec(BaseModel):
    """A child table folded into its parent: an array of documents or of referenced ids."""

    table: str
    field: str
    mode: Literal["documents", "ids"]
    parent_columns: list[str]
    child_columns: list[str]
    order_by: list[str]
    fields: list[FieldSpec] = Field(default_factory=list)
    value_column: str | None = None
    value_kind: Kind = "int"
    value_nullable: bool = True
    key_columns: list[str] = Field(default_factory=list)
    watermark: str | None = None
    embeds: list[EmbedSpec] = Field(default_factory=list)


class CollectionSpec(BaseModel):
    """One top-level collection built from one table (plus what is embedded in it)."""

    table: str
    collection: str
    key_columns: list[str]
    id_mode: Literal["single", "composite", "row_hash"]
    id_fields: list[str] = Field(default_factory=list)
    fields: list[FieldSpec]
    embeds: list[EmbedSpec] = Field(default_factory=list)
    references: dict[str, str] = Field(default_factory=dict)
    watermark: str | None = None
    watermark_kind: Literal["timestamp", "key"] | None = None

    @property
    def orphans_collection(self) -> str:
        """Where child rows without a parent go."""
        return f"{self.collection}_orphans"


class MigrationPlan(BaseModel):
    """What goes where: collections, embeddings, conversions, and what the planner noticed."""

    collections: list[CollectionSpec]
    excluded_tables: list[str] = Field(default_factory=list)
    embedded_tables: list[str] = Field(default_factory=list)
    field_mappings: list[dict[str, str]] = Field(default_factory=list)
    unsupported_columns: list[dict[str, str]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    decimal_mode: Literal["decimal128", "string"] = "decimal128"

    def collection(self, table: str) -> CollectionSpec:
        """The collection spec of `table`."""
        for spec in self.collections:
            if spec.table == table:
                return spec
        raise KeyError(table)

    def table_rows(self) -> list[dict[str, Any]]:
        """The plan as rows for a table artifact."""
        rows = []
        for c in self.collections:
            rows.append(
                {
                    "table": c.table,
                    "collection": c.collection,
                    "_id": c.id_mode + ":" + ",".join(c.key_columns),
                    "fields": len(c.fields),
                    "embeds": ", ".join(_embed_label(e) for e in c.embeds) or "-",
                    "references": ", ".join(f"{k}->{v}" for k, v in c.references.items()) or "-",
                    "watermark": f"{c.watermark_kind}:{c.watermark}" if c.watermark else "-",
                }
            )
        return rows


def _embed_label(e: EmbedSpec) -> str:
    inner = "".join(f"[{_embed_label(x)}]" for x in e.embeds)
    return f"{e.field}<-{e.table}({e.mode}){inner}"


# --- planning -----------------------------------------------------------------------------------


def _fields_for(
    table: TableInfo, skip: Iterable[str], renames: Mapping[str, str], plan: MigrationPlan
) -> list[FieldSpec]:
    skip = set(skip)
    names = [c.name for c in table.columns if c.name not in skip]
    mapping = map_field_names(names, renames)
    fields = []
    for name in names:
        col = table.column(name)
        if mapping[name] != name and name not in renames:
            plan.field_mappings.append(
                {"table": table.name, "column": name, "field": mapping[name]}
            )
        if col.kind == "unsupported":
            plan.unsupported_columns.append(
                {
                    "table": table.name,
                    "column": name,
                    "sql_type": col.sql_type,
                    "stored_as": "string",
                }
            )
        fields.append(
            FieldSpec(column=name, field=mapping[name], kind=col.kind, nullable=col.nullable)
        )
    return fields


def _fk_between(child: TableInfo, parent: TableInfo) -> ForeignKeyInfo:
    found = [fk for fk in child.foreign_keys if fk.ref_table == parent.name]
    if len(found) != 1:
        raise InputError(
            f"plan: cannot tell how {child.name!r} joins {parent.name!r} "
            f"({len(found)} foreign keys); give `on: {{child_column: parent_column}}`"
        )
    return found[0]


def _watermark_for(table: TableInfo, explicit: str | None) -> tuple[str | None, str | None]:
    if explicit:
        col = table.column(explicit)
        return col.name, "timestamp" if col.kind in {"datetime", "date"} else "key"
    for col in table.columns:
        norm = col.name.lower().replace("_", "").replace(" ", "")
        if norm in WATERMARK_NAMES and col.kind in {"datetime", "date"}:
            return col.name, "timestamp"
    if len(table.primary_key) == 1 and table.column(table.primary_key[0]).kind in {"int", "bigint"}:
        return table.primary_key[0], "key"
    return None, None


def _embed_spec(
    schema: SchemaInfo,
    parent: TableInfo,
    cfg: Mapping[str, Any],
    plan: MigrationPlan,
    depth: int,
    mode: Literal["documents", "ids"],
) -> EmbedSpec:
    if depth > 2:
        raise InputError("plan: embedding is supported two levels deep at most")
    child_name = cfg.get("table") or cfg.get("junction")
    if not child_name:
        raise InputError(f"plan: an embed of {parent.name!r} needs `table:` (or `junction:`)")
    child = schema.table(child_name)
    if "on" in cfg:
        on = dict(cfg["on"])
        child_cols, parent_cols = list(on), list(on.values())
        for c in child_cols:
            child.column(c)
        for c in parent_cols:
            parent.column(c)
    else:
        fk = _fk_between(child, parent)
        child_cols, parent_cols = fk.columns, fk.ref_columns
    key_cols = child.primary_key or [c.name for c in child.columns]
    wm, _ = _watermark_for(child, cfg.get("watermark"))
    if mode == "ids":
        value = cfg.get("value")
        if not value:
            others = [c for c in key_cols if c not in child_cols] or [
                c.name for c in child.columns if c.name not in child_cols
            ]
            if len(others) != 1:
                raise InputError(f"plan: junction {child.name!r} needs `value: <column>`")
            value = others[0]
        spec = EmbedSpec(
            table=child.name,
            field=mongo_field_name(cfg.get("as") or f"{value}s"),
            mode="ids",
            parent_columns=parent_cols,
            child_columns=child_cols,
            order_by=[value, *[c for c in key_cols if c != value]],
            value_column=value,
            value_kind=child.column(value).kind,
            value_nullable=child.column(value).nullable,
            key_columns=key_cols,
            watermark=wm if wm and wm not in key_cols else None,
        )
    else:
        skip = [*child_cols, *cfg.get("exclude", [])]
        spec = EmbedSpec(
            table=child.name,
            field=mongo_field_name(cfg.get("as") or child.name),
            mode="documents",
            parent_columns=parent_cols,
            child_columns=child_cols,
            order_by=key_cols,
            fields=_fields_for(child, skip, cfg.get("rename", {}), plan),
            key_columns=key_cols,
            watermark=wm,
        )
        for sub in cfg.get("embed", []) or []:
            spec.embeds.append(_embed_spec(schema, child, sub, plan, depth + 1, "documents"))
        for sub in cfg.get("arrays", []) or []:
            spec.embeds.append(_embed_spec(schema, child, sub, plan, depth + 1, "ids"))
    plan.embedded_tables.append(child.name)
    return spec


def build_plan(schema: SchemaInfo, config: Mapping[str, Any] | None = None) -> MigrationPlan:
    """Build the migration plan: one collection per table, adjusted by an optional YAML config.

    Args:
        schema: The reflected source schema.
        config: Parsed YAML plan: `exclude: [table]` and `tables: {Table: {collection, rename,
            exclude, embed: [{table, as, on, exclude, embed}], arrays: [{junction, as, value}],
            watermark}}`.

    Returns:
        The plan; embedded and junction tables get no collection of their own.
    """
    config = dict(config or {})
    unknown = set(config) - {"exclude", "tables"}
    if unknown:
        raise InputError(f"plan: unknown top-level keys {sorted(unknown)} (use exclude, tables)")
    table_cfg: dict[str, Any] = dict(config.get("tables") or {})
    plan = MigrationPlan(collections=[], excluded_tables=list(config.get("exclude") or []))
    for name in [*plan.excluded_tables, *table_cfg]:
        schema.table(name)

    folded = set(_folded_tables(table_cfg.values()))
    specs: list[CollectionSpec] = []
    for name in sorted(schema.tables):
        if name in plan.excluded_tables or name in folded:
            continue
        table = schema.tables[name]
        cfg = dict(table_cfg.get(name) or {})
        key_cols = list(table.primary_key)
        if not key_cols:
            id_mode: Literal["single", "composite", "row_hash"] = "row_hash"
            key_cols = [c.name for c in table.columns]
            plan.warnings.append(
                f"table {name!r} has no primary key: _id is an ObjectId derived from a hash of "
                "the row (idempotent; duplicate rows are kept apart by their occurrence)"
            )
        elif len(key_cols) == 1:
            id_mode = "single"
        else:
            id_mode = "composite"
        skip = [*cfg.get("exclude", [])]
        if id_mode == "single":
            skip.append(key_cols[0])
        elif id_mode == "composite":
            skip.extend(key_cols)
        fields = _fields_for(table, skip, cfg.get("rename", {}), plan)
        id_fields = (
            list(map_field_names(key_cols, cfg.get("rename", {})).values())
            if id_mode == "composite"
            else []
        )
        field_of = {f.column: f.field for f in fields}
        refs = {
            field_of[fk.columns[0]]: fk.ref_table
            for fk in table.foreign_keys
            if len(fk.columns) == 1 and fk.columns[0] in field_of
        }
        wm, wm_kind = (
            (None, None) if id_mode == "row_hash" else _watermark_for(table, cfg.get("watermark"))
        )
        spec = CollectionSpec(
            table=name,
            collection=mongo_field_name(cfg.get("collection") or name),
            key_columns=key_cols,
            id_mode=id_mode,
            id_fields=id_fields,
            fields=fields,
            references=refs,
            watermark=wm,
            watermark_kind=wm_kind,  # type: ignore[arg-type]
        )
        for sub in cfg.get("embed", []) or []:
            spec.embeds.append(_embed_spec(schema, table, sub, plan, 1, "documents"))
        for sub in cfg.get("arrays", []) or []:
            spec.embeds.append(_embed_spec(schema, table, sub, plan, 1, "ids"))
        specs.append(spec)
    plan.collections = [s for s in specs if s.table not in plan.embedded_tables]
    for s in plan.collections:
        for e in _walk_embeds(s.embeds):
            if e.mode == "documents" and e.watermark is None:
                plan.warnings.append(
                    f"{e.table!r} embedded in {s.table!r} has no watermark: incremental mode "
                    "will not see its changes"
                )
    return plan


def _folded_tables(cfgs: Iterable[Any]) -> Iterable[str]:
    """Tables a config embeds or turns into arrays (they get no collection of their own)."""
    for cfg in cfgs:
        for sub in [*((cfg or {}).get("embed") or []), *((cfg or {}).get("arrays") or [])]:
            name = sub.get("table") or sub.get("junction")
            if name:
                yield name
            yield from _folded_tables([sub])


def _walk_embeds(embeds: Iterable[EmbedSpec]) -> Iterable[EmbedSpec]:
    for e in embeds:
        yield e
        yield from _walk_embeds(e.embeds)


# --- value conversion ---------------------------------------------------------------------------


def _to_utc(value: dt.datetime) -> dt.datetime:
    # BSON dates hold milliseconds: truncate so that verification compares like with like
    if value.tzinfo is None:  # naive values are UTC already: one replace (the hot path)
        return value.replace(tzinfo=dt.UTC, microsecond=value.microsecond // 1000 * 1000)
    value = value.astimezone(dt.UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _generic(value: Any, decimal_mode: str) -> Any:
    """Convert a value whose column kind says nothing useful (JSON members, arrays)."""
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        return Int64(value) if not -(2**31) <= value < 2**31 else value
    if isinstance(value, decimal.Decimal):
        return Decimal128(value) if decimal_mode == "decimal128" else str(value)
    if isinstance(value, dt.datetime):
        return _to_utc(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, bytes | bytearray | memoryview):
        return Binary(bytes(value))
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, Mapping):
        return {mongo_field_name(str(k)): _generic(v, decimal_mode) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_generic(v, decimal_mode) for v in value]
    return str(value)


def converter(kind: Kind, decimal_mode: str = "decimal128") -> Callable[[Any], Any]:
    """A function converting one SQL value of `kind` to its BSON-ready value (None stays None)."""
    conv = _not_null_converter(kind, decimal_mode)
    return lambda v: None if v is None else conv(v)


def _not_null_converter(kind: Kind, decimal_mode: str) -> Callable[[Any], Any]:
    """`converter` for values known not to be None (the hot loop tests None itself)."""

    def to_decimal(v: Any) -> Any:
        d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
        return Decimal128(d) if decimal_mode == "decimal128" else str(d)

    def to_datetime(v: Any) -> Any:
        if isinstance(v, str):
            v = dt.datetime.fromisoformat(v)
        if isinstance(v, dt.datetime):
            return _to_utc(v)
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)

    def to_uuid(v: Any) -> Any:
        return v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))

    def to_json(v: Any) -> Any:
        if isinstance(v, str | bytes):
            v = json.loads(v)
        return _generic(v, decimal_mode)

    def to_int(v: Any) -> Any:
        v = int(v)
        return v if -(2**31) <= v < 2**31 else Int64(v)

    table: dict[str, Callable[[Any], Any]] = {
        "int": to_int,
        "bigint": lambda v: Int64(int(v)),
        "float": float,
        "decimal": to_decimal,
        "bool": bool,
        "string": lambda v: v if isinstance(v, str) else str(v),
        "date": to_datetime,
        "datetime": to_datetime,
        "time": lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v),
        "binary": lambda v: Binary(bytes(v)),
        "uuid": to_uuid,
        "json": to_json,
        "array": lambda v: _generic(list(v), decimal_mode),
        "unsupported": lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v),
    }
    return table[kind]


# --- documents ----------------------------------------------------------------------------------


def row_hash_id(values: Sequence[Any], occurrence: int = 0) -> ObjectId:
    """A deterministic ObjectId for a row of a table without primary key."""
    text = json.dumps([_canon(v) for v in values], sort_keys=True, default=str) + f"#{occurrence}"
    return ObjectId(hashlib.sha256(text.encode()).digest()[:12])


class DocumentBuilder:
    """Turns rows (mappings column -> value) into documents for one collection or embed."""

    def __init__(
        self,
        fields: Sequence[FieldSpec],
        decimal_mode: str,
        id_spec: CollectionSpec | None = None,
        kinds: Mapping[str, Kind] | None = None,
        table: str = "",
        report_key: Sequence[str] = (),
    ) -> None:
        self.fields = [
            (f.column, f.field, _not_null_converter(f.kind, decimal_mode)) for f in fields
        ]
        self.id_spec = id_spec
        self.id_convs: list[tuple[str, str, Callable[[Any], Any]]] = []
        if id_spec is not None and id_spec.id_mode != "row_hash":
            kinds = kinds or {}
            names = id_spec.id_fields or id_spec.key_columns
            for col, name in zip(id_spec.key_columns, names, strict=True):
                self.id_convs.append((col, name, converter(kinds.get(col, "int"), decimal_mode)))
        self._last_row: tuple[Any, ...] | None = None
        self._occurrence = 0
        #: values that could not be converted, as {table, key, column, value, error}
        self.bad_values: list[dict[str, Any]] = []
        self.table = table or (id_spec.table if id_spec else "")
        self.report_key = list(report_key or (id_spec.key_columns if id_spec else []))

    def doc_id(self, row: Mapping[str, Any]) -> Any:
        """The `_id` of a row."""
        spec = self.id_spec
        assert spec is not None
        if spec.id_mode == "single":
            col, _, conv = self.id_convs[0]
            return conv(row[col])
        if spec.id_mode == "composite":
            return {name: conv(row[col]) for col, name, conv in self.id_convs}
        values = tuple(row[c] for c in spec.key_columns)
        # rows arrive ordered by every column, so duplicates are adjacent
        self._occurrence = self._occurrence + 1 if values == self._last_row else 0
        self._last_row = values
        return row_hash_id(values, self._occurrence)

    def build(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The document of one row (with `_id` when this builder has an id spec).

        A value its column's type cannot convert (SQLite stores any value in any column; MySQL
        has zero dates) is kept as its string form and noted in `bad_values`, so one bad value
        neither fails the batch nor loses the row, and a re-read builds the same document.
        """
        doc: dict[str, Any] = {}
        if self.id_spec is not None:
            doc["_id"] = self.doc_id(row)
        for col, field, conv in self.fields:
            value = row[col]
            if value is None:  # NULL kept as null
                doc[field] = None
                continue
            try:
                doc[field] = conv(value)
            except CONVERSION_ERRORS as exc:
                key = {k: row[k] for k in self.report_key}
                doc[field] = keep_unconvertible(value, exc, self.table, key, col, self.bad_values)
        return doc


#: What a converter raises on a value its column's type does not describe.
CONVERSION_ERRORS = (ValueError, TypeError, ArithmeticError)


def keep_unconvertible(
    value: Any,
    exc: BaseException,
    table: str,
    key: Mapping[str, Any],
    column: str,
    sink: list[dict[str, Any]],
) -> str:
    """The string a value that could not be converted is stored as; its report goes to `sink`.

    The report names the table, the row's key (ints as they are, other values as strings),
    the column, the value and the error.
    """
    kept = value.hex() if isinstance(value, bytes) else str(value)
    sink.append(
        {
            "table": table,
            "key": {k: v if v is None or type(v) is int else str(v) for k, v in key.items()},
            "column": column,
            "value": kept[:200],
            "error": f"{type(exc).__name__}: {exc}"[:300],
        }
    )
    return kept


# --- canonical form for checksums ---------------------------------------------------------------


def _canon(value: Any) -> Any:
    """A JSON-able canonical form so that the same value read back from MongoDB compares equal."""
    if isinstance(value, Decimal128):
        return {"$dec": str(value.to_decimal().normalize())}
    if isinstance(value, decimal.Decimal):
        return {"$dec": str(value.normalize())}
    if isinstance(value, dt.datetime):
        return {"$date": _to_utc(value).isoformat()}
    if isinstance(value, dt.date):
        return {"$date": dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).isoformat()}
    if isinstance(value, bytes | bytearray | memoryview | Binary):
        return {"$bin": bytes(value).hex()}
    if isinstance(value, uuid.UUID | ObjectId):
        return {"$id": str(value)}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return str(value)


def canonical(doc: Mapping[str, Any]) -> str:
    """Canonical JSON of a document (key order independent)."""
    return json.dumps(_canon(doc), sort_keys=True, separators=(",", ":"))


def diff_documents(expected: Mapping[str, Any], actual: Mapping[str, Any] | None) -> list[str]:
    """Field paths whose values differ between an expected and a stored document."""
    if actual is None:
        return ["<missing document>"]
    out = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual:
            out.append(f"{key} (missing)")
        elif key not in expected:
            out.append(f"{key} (unexpected)")
        elif canonical({"v": expected[key]}) != canonical({"v": actual[key]}):
            out.append(key)
    return out


def range_id(lower: Sequence[Any] | None, upper: Sequence[Any] | None, generation: str) -> str:
    """A stable id of one batch key range within a checkpoint generation."""
    text = json.dumps(
        [_canon(list(lower or [])), _canon(list(upper or [])), generation], default=str
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def split_ranges(
    bounds: Sequence[Sequence[Any]],
) -> list[tuple[list[Any] | None, list[Any] | None]]:
    """Batch key ranges (lower exclusive, upper inclusive) from sorted upper boundaries."""
    ranges: list[tuple[list[Any] | None, list[Any] | None]] = []
    lower: list[Any] | None = None
    for b in bounds:
        ranges.append((lower, list(b)))
        lower = list(b)
    ranges.append((lower, None))
    return ranges


def sample_ranges(n_ranges: int, rows: int, sample: int) -> list[int]:
    """Indexes of batch ranges to verify: all when `sample` is 0 or covers the table."""
    if sample <= 0 or rows <= sample or n_ranges <= 1:
        return list(range(n_ranges))
    want = max(1, round(n_ranges * sample / rows))
    step = n_ranges / want
    return sorted({int(i * step) for i in range(want)})


# --- $jsonSchema validators ---------------------------------------------------------------------

#: BSON types a value of each kind is stored as (see `converter`); `None`: any type (JSON).
_BSON_TYPES: dict[str, list[str] | None] = {
    "int": ["int", "long"],  # int32 when it fits, else Int64
    "bigint": ["long"],
    "float": ["double"],
    "decimal": ["decimal"],
    "bool": ["bool"],
    "string": ["string"],
    "date": ["date"],
    "datetime": ["date"],
    "time": ["string"],
    "binary": ["binData"],
    "uuid": ["binData"],
    "json": None,
    "array": ["array"],
    "unsupported": ["string"],
}


def bson_types(kind: Kind, nullable: bool, decimal_mode: str) -> dict[str, Any]:
    """The `bsonType` clause of one field of `kind` (empty: any type)."""
    types = _BSON_TYPES[kind]
    if types is None:
        return {}
    if kind == "decimal" and decimal_mode != "decimal128":
        types = ["string"]
    types = [*types, "null"] if nullable else list(types)
    return {"bsonType": types[0] if len(types) == 1 else types}


def _object_schema(
    fields: Sequence[FieldSpec], embeds: Sequence[EmbedSpec], decimal_mode: str
) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in fields:
        props[f.field] = bson_types(f.kind, f.nullable, decimal_mode)
        if not f.nullable:
            required.append(f.field)
    for e in embeds:
        if e.mode == "ids":
            items = bson_types(e.value_kind, e.value_nullable, decimal_mode)
        else:
            items = _object_schema(e.fields, e.embeds, decimal_mode)
        props[e.field] = {"bsonType": "array", "items": items}
        required.append(e.field)  # always written, possibly empty
    out: dict[str, Any] = {"bsonType": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def collection_validator(
    spec: CollectionSpec, schema: SchemaInfo, decimal_mode: str
) -> dict[str, Any]:
    """A `$jsonSchema` validator for one collection, derived from the SQL column types.

    NOT NULL columns are required and never null; nullable ones also admit null; embedded
    arrays are typed down to their elements. Extra fields stay allowed, so documents enriched
    after the migration still validate.
    """
    body = _object_schema(spec.fields, spec.embeds, decimal_mode)
    table = schema.table(spec.table)
    if spec.id_mode == "row_hash":
        id_schema: dict[str, Any] = {"bsonType": "objectId"}
    elif spec.id_mode == "single":
        id_schema = bson_types(table.column(spec.key_columns[0]).kind, False, decimal_mode)
    else:
        names = spec.id_fields or spec.key_columns
        id_schema = {
            "bsonType": "object",
            "required": list(names),
            "properties": {
                n: bson_types(table.column(c).kind, False, decimal_mode)
                for c, n in zip(spec.key_columns, names, strict=True)
            },
        }
    body["properties"] = {"_id": id_schema, **body["properties"]}
    body["required"] = ["_id", *body.get("required", [])]
    return {"$jsonSchema": body}
