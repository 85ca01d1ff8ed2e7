"""Prefect tasks and helpers that read relational databases through SQLAlchemy."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from prefect import get_run_logger, task
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from headwater.errors import ConfigError
from tasks.migration_plan import (
    ColumnInfo,
    ForeignKeyInfo,
    SchemaInfo,
    TableInfo,
    classify_type,
)
from tasks.retry import retry_on

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_tables: dict[tuple[str, str], sa.Table] = {}


def source_url(block_name: str) -> URL:
    """The SQLAlchemy URL held by a saved `SqlAlchemyConnector` block."""
    from prefect_sqlalchemy import SqlAlchemyConnector

    connector = SqlAlchemyConnector.load(block_name)
    info = connector.connection_info
    if isinstance(info, str):  # a plain URL string block
        return sa.engine.make_url(info)
    return sa.engine.make_url(info.create_url())  # type: ignore[union-attr]


def get_source_engine(block_name: str) -> Engine:
    """A pooled engine for the source block (one per process and block)."""
    with _lock:
        engine = _engines.get(block_name)
        if engine is None:
            engine = engine_for_url(source_url(block_name))
            _engines[block_name] = engine
        return engine


def engine_for_url(url: URL | str) -> Engine:
    """An engine for a source URL (SQLite files must exist: SQLite would create them)."""
    url = sa.engine.make_url(url)
    if url.get_backend_name() == "sqlite":
        if not url.database or not Path(url.database).is_file():
            raise ConfigError("source", f"SQLite database file not found: {url.database!r}")
        return sa.create_engine(url, connect_args={"check_same_thread": False})
    return sa.create_engine(url, pool_size=8, max_overflow=4, pool_pre_ping=True)


def dispose_engines() -> None:
    """Close every cached engine (tests, and the end of a CLI run)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _tables.clear()


def describe_error(exc: BaseException) -> str:
    """The first line of a driver error, without SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def check_engine(engine: Engine) -> None:
    """Connect and run `SELECT 1`; raise one ConfigError naming the source when that fails."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (DBAPIError, SQLAlchemyError, OSError) as exc:
        raise ConfigError("source", f"cannot connect to {where}: {describe_error(exc)}") from exc


def reflect_engine(engine: Engine, tables: Sequence[str] | None = None) -> SchemaInfo:
    """Reflect tables, keys and column types into a `SchemaInfo`."""
    insp = sa.inspect(engine)
    names = list(tables) if tables else insp.get_table_names()
    out: dict[str, TableInfo] = {}
    for name in names:
        cols = [
            ColumnInfo(
                name=c["name"],
                kind=classify_type(c["type"]),
                sql_type=str(c["type"]) if not isinstance(c["type"], sa.types.NullType) else "NULL",
                nullable=bool(c.get("nullable", True)),
            )
            for c in insp.get_columns(name)
        ]
        pk = insp.get_pk_constraint(name).get("constrained_columns") or []
        fks = [
            ForeignKeyInfo(
                columns=fk["constrained_columns"],
                ref_table=fk["referred_table"],
                ref_columns=fk["referred_columns"],
            )
            for fk in insp.get_foreign_keys(name)
            if fk.get("referred_table")
        ]
        out[name] = TableInfo(name=name, columns=cols, primary_key=list(pk), foreign_keys=fks)
    return SchemaInfo(dialect=engine.dialect.name, tables=out)


#: Connection-level failures only (never bad SQL or bad data).
_retry_transient = retry_on(
    sa.exc.OperationalError, sa.exc.InterfaceError, ConnectionError, TimeoutError
)


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retry_transient)
def reflect_schema(source_block: str) -> dict[str, Any]:
    """Check the source is reachable and reflect its schema (returned as a small dict)."""
    engine = get_source_engine(source_block)
    check_engine(engine)
    schema = reflect_engine(engine)
    get_run_logger().info("reflected %d tables from %s", len(schema.tables), schema.dialect)
    return schema.model_dump()


# --- query helpers (used by the copy and verify tasks) ------------------------------------------


def get_table(block_or_engine: str | Engine, name: str) -> sa.Table:
    """The reflected SQLAlchemy `Table` (cached per source)."""
    engine = (
        get_source_engine(block_or_engine) if isinstance(block_or_engine, str) else block_or_engine
    )
    key = (str(engine.url), name)
    with _lock:
        table = _tables.get(key)
    if table is None:
        table = sa.Table(name, sa.MetaData(), autoload_with=engine)
        with _lock:
            _tables[key] = table
    return table


def key_expr(table: sa.Table, cols: Sequence[str]) -> Any:
    """A column or a row-value tuple for keyset comparisons."""
    if len(cols) == 1:
        return table.c[cols[0]]
    return sa.tuple_(*(table.c[c] for c in cols))


def _bound(values: Sequence[Any]) -> Any:
    return values[0] if len(values) == 1 else sa.tuple_(*(sa.literal(v) for v in values))


def range_condition(
    table: sa.Table,
    cols: Sequence[str],
    lower: Sequence[Any] | None,
    upper: Sequence[Any] | None,
) -> Any:
    """`lower < key <= upper` (either side open when None)."""
    expr = key_expr(table, cols)
    conds = []
    if lower is not None:
        conds.append(expr > _bound(lower))
    if upper is not None:
        conds.append(expr <= _bound(upper))
    return sa.and_(sa.true(), *conds)


def count_rows(engine: Engine, table: sa.Table, where: Any = None) -> int:
    """`SELECT count(*)` of a table (optionally filtered)."""
    stmt = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        stmt = stmt.where(where)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def batch_bounds(
    engine: Engine, table: sa.Table, cols: Sequence[str], batch_size: int, where: Any = None
) -> list[list[Any]]:
    """Upper key of every full batch, computed in the database with ROW_NUMBER (keys only)."""
    keys = [table.c[c] for c in cols]
    rn = sa.func.row_number().over(order_by=keys).label("hw_rn")
    inner = sa.select(*keys, rn)
    if where is not None:
        inner = inner.where(where)
    sub = inner.subquery()
    stmt = (
        sa.select(*(sub.c[c] for c in cols))
        .where(sub.c.hw_rn % batch_size == 0)
        .order_by(*(sub.c[c] for c in cols))
    )
    with engine.connect() as conn:
        return [list(r) for r in conn.execute(stmt)]


def stream_rows(
    engine: Engine,
    stmt: Any,
    chunk: int = 2000,
) -> Iterator[Mapping[str, Any]]:
    """Yield row mappings with a server-side cursor (bounded memory)."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(stmt)
        for row in result:
            yield cast(Mapping[str, Any], row._mapping)  # keys are column names here


def max_value(engine: Engine, table: sa.Table, column: str) -> Any:
    """`max(column)` of a table (None when empty)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(table.c[column]))).scalar()


def orphan_condition(
    child: sa.Table, parent: sa.Table, child_cols: Sequence[str], parent_cols: Sequence[str]
) -> Any:
    """Child rows whose parent does not exist (NULL references included)."""
    match = sa.and_(
        *(parent.c[p] == child.c[c] for c, p in zip(child_cols, parent_cols, strict=True))
    )
    return ~sa.exists(sa.select(sa.literal(1)).select_from(parent).where(match))


# --- reading documents for one batch --------------------------------------------------------------


def _kinds(table: sa.Table) -> dict[str, Any]:
    return {c.name: classify_type(c.type) for c in table.columns}


def _in_chunks(
    expr_cols: Sequence[Any], keys: Sequence[tuple[Any, ...]], size: int = 500
) -> Iterator[Any]:
    """`cols IN (...)` conditions over chunks of keys (row values when composite)."""
    for i in range(0, len(keys), size):
        chunk = keys[i : i + size]
        if len(expr_cols) == 1:
            yield expr_cols[0].in_([k[0] for k in chunk])
        else:
            yield sa.tuple_(*expr_cols).in_([tuple(k) for k in chunk])


def _since_value(value: Any) -> Any:
    """Watermarks come back from MongoDB tz-aware; the SQL columns here are naive UTC."""
    import datetime as dt

    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def change_condition(engine: Engine, spec: Any, since: Mapping[str, Any]) -> Any:
    """Rows of the collection's table changed since the watermarks in `since` (incremental)."""
    table = get_table(engine, spec.table)
    conds: list[Any] = []
    if spec.watermark and spec.table in since and since[spec.table] is None:
        conds.append(sa.true())  # the table was empty at the last run: everything is new
    elif spec.watermark and spec.table in since:
        # strictly newer than the maximum captured before the last run's copy started
        conds.append(table.c[spec.watermark] > _since_value(since[spec.table]))
    for emb in spec.embeds:
        if emb.watermark and since.get(emb.table) is not None:
            child = get_table(engine, emb.table)
            changed = child.c[emb.watermark] > _since_value(since[emb.table])
            match = sa.and_(
                *(
                    child.c[c] == table.c[p]
                    for c, p in zip(emb.child_columns, emb.parent_columns, strict=True)
                )
            )
            conds.append(
                sa.exists(sa.select(sa.literal(1)).select_from(child).where(match, changed))
            )
    return sa.or_(*conds) if conds else sa.false()


class BatchDocuments:
    """Documents (and orphans) of one batch key range, read from the source."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.orphans: list[dict[str, Any]] = []
        self.embedded = 0
        self.rows = 0
        #: values kept as strings because their column's type could not convert them
        self.bad_values: list[dict[str, Any]] = []


class _Lenient(sa.types.TypeDecorator[Any]):
    """A column type whose result processor hands back the raw value when the real one fails."""

    impl = sa.types.NullType
    cache_ok = True

    def __init__(self, inner: sa.types.TypeEngine[Any]) -> None:
        super().__init__()
        self.inner = inner

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        proc = self.inner.dialect_impl(dialect).result_processor(dialect, coltype)
        if proc is None:
            return None

        def process(value: Any) -> Any:
            try:
                return proc(value)
            except (ValueError, TypeError, ArithmeticError):
                return value  # the converter names it (DocumentBuilder.bad_values)

        return process


def select_rows(engine: Engine, table: sa.Table) -> Any:
    """SELECT of every column. SQLite keeps whatever value was inserted in any column ('n/a' in
    a NUMERIC, 'soon' in a DATETIME), and SQLAlchemy's processor raising on one of them would
    fail the whole batch: there, a value its processor rejects comes back raw instead."""
    if engine.dialect.name == "sqlite":
        return sa.select(*(sa.type_coerce(c, _Lenient(c.type)).label(c.name) for c in table.c))
    return sa.select(table)


def _build_batch(
    engine: Engine,
    plan: Any,
    spec: Any,
    builder: Any,
    rows: Iterable[Mapping[str, Any]],
    lower: Sequence[Any] | None = None,
    upper: Sequence[Any] | None = None,
    ranged: bool = False,
) -> BatchDocuments:
    """The documents of parent `rows`, with their embedded children attached.

    `ranged`: the children are read by the parents' key range (`lower`, `upper`), else by IN
    lists of the parents' keys. `builder` may serve several batches (its occurrence count of
    duplicate rows carries over); the values it could not convert move to this batch.
    """
    out = BatchDocuments()
    by_key: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    need = {tuple(e.parent_columns) for e in spec.embeds}
    for row in rows:
        doc: dict[str, Any] = builder.build(row)
        for e in spec.embeds:
            doc[e.field] = []
        for cols in need:
            by_key.setdefault(",".join(cols), {})[tuple(row[c] for c in cols)] = doc
        out.docs.append(doc)
    out.rows = len(out.docs)
    out.bad_values, builder.bad_values = builder.bad_values, []
    if out.docs:
        for emb in spec.embeds:
            parents = by_key[",".join(emb.parent_columns)]
            use_range = ranged and set(emb.parent_columns) == set(spec.key_columns)
            _attach_children(engine, plan, spec, emb, parents, out, lower, upper, use_range, True)
    return out


def _parent_builder(engine: Engine, plan: Any, spec: Any) -> Any:
    from tasks.migration_plan import DocumentBuilder

    table = get_table(engine, spec.table)
    return DocumentBuilder(spec.fields, plan.decimal_mode, id_spec=spec, kinds=_kinds(table))


def read_batch_documents(
    engine: Engine,
    plan: Any,
    spec: Any,
    lower: Sequence[Any] | None,
    upper: Sequence[Any] | None,
    since: Mapping[str, Any] | None = None,
) -> BatchDocuments:
    """Read one key range of a table plus its embedded children and build the documents.

    Parents and children are both read ordered by the parent key (children restricted to the
    same key range), so one batch holds at most `batch_size` parents and their children.
    """
    table = get_table(engine, spec.table)
    stmt = select_rows(engine, table)
    if spec.id_mode != "row_hash":
        stmt = stmt.where(range_condition(table, spec.key_columns, lower, upper))
    if since is not None:
        stmt = stmt.where(change_condition(engine, spec, since))
    stmt = stmt.order_by(*(table.c[c] for c in spec.key_columns))
    first_embed = spec.embeds[0].parent_columns if spec.embeds else None
    ranged = since is None and first_embed is not None and set(spec.key_columns) == set(first_embed)
    rows = stream_rows(engine, stmt)
    builder = _parent_builder(engine, plan, spec)
    return _build_batch(engine, plan, spec, builder, rows, lower, upper, ranged)


def read_documents_by_keys(
    engine: Engine, plan: Any, spec: Any, keys: Sequence[tuple[Any, ...]]
) -> BatchDocuments:
    """The documents of the rows whose primary key is in `keys` (a verification sample)."""
    table = get_table(engine, spec.table)
    rows = (
        row
        for cond in _in_chunks([table.c[c] for c in spec.key_columns], list(keys))
        for row in stream_rows(engine, select_rows(engine, table).where(cond))
    )
    return _build_batch(engine, plan, spec, _parent_builder(engine, plan, spec), rows)


def iter_unkeyed_documents(
    engine: Engine, plan: Any, spec: Any, chunk: int
) -> Iterator[BatchDocuments]:
    """The documents of a table without primary key, `chunk` rows at a time (bounded memory).

    Such a table has no key to cut ranges on, so it is one stream ordered by every column (the
    duplicates of a row are adjacent, and one builder numbers their occurrences across chunks);
    children embedded in it are looked up per chunk.
    """
    table = get_table(engine, spec.table)
    stmt = select_rows(engine, table).order_by(*(table.c[c] for c in spec.key_columns))
    builder = _parent_builder(engine, plan, spec)
    rows = iter(stream_rows(engine, stmt))
    while batch := list(islice(rows, chunk)):
        yield _build_batch(engine, plan, spec, builder, batch)


def _attach_children(
    engine: Engine,
    plan: Any,
    spec: Any,
    emb: Any,
    parents: Mapping[tuple[Any, ...], dict[str, Any]],
    out: BatchDocuments,
    lower: Sequence[Any] | None,
    upper: Sequence[Any] | None,
    use_range: bool,
    top: bool,
) -> None:
    from tasks.migration_plan import (
        CONVERSION_ERRORS,
        DocumentBuilder,
        converter,
        keep_unconvertible,
    )

    child = get_table(engine, emb.table)
    kinds = _kinds(child)
    child_cols = [child.c[c] for c in emb.child_columns]
    order = [*child_cols, *(child.c[c] for c in emb.order_by)]
    if use_range:
        # child foreign key columns in the parent's key order, so the same range applies
        fk_in_key_order = [emb.child_columns[emb.parent_columns.index(k)] for k in spec.key_columns]
        cond = range_condition(child, fk_in_key_order, lower, upper)
        if upper is None:  # NULL references have no parent: the last range reports them
            cond = sa.or_(cond, *(child.c[c].is_(None) for c in emb.child_columns))
        conditions = [cond]
    else:
        conditions = list(_in_chunks(child_cols, list(parents)))
    if emb.mode == "ids":
        assert emb.value_column is not None
        conv = converter(emb.value_kind, plan.decimal_mode)
    else:
        builder = DocumentBuilder(
            emb.fields, plan.decimal_mode, kinds=kinds, table=emb.table, report_key=emb.key_columns
        )
    sub_index: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    sub_need = {tuple(s.parent_columns) for s in emb.embeds}
    for cond in conditions:
        stmt = select_rows(engine, child).where(cond).order_by(*order)
        for row in stream_rows(engine, stmt):
            key = tuple(row[c] for c in emb.child_columns)
            parent = parents.get(key)
            if emb.mode == "ids":
                raw = row[emb.value_column]
                try:
                    value = conv(raw)
                except CONVERSION_ERRORS as exc:
                    row_key = {c: row[c] for c in emb.key_columns}
                    value = keep_unconvertible(
                        raw, exc, emb.table, row_key, emb.value_column, out.bad_values
                    )
            else:
                value = builder.build(row)
                for s in emb.embeds:
                    value[s.field] = []
                for cols in sub_need:
                    sub_index.setdefault(",".join(cols), {})[tuple(row[c] for c in cols)] = value
            if parent is None:
                if top:
                    key_conv = {c: converter(kinds[c], plan.decimal_mode) for c in emb.key_columns}
                    out.orphans.append(
                        {
                            "_id": {
                                "field": emb.field,
                                "key": {c: key_conv[c](row[c]) for c in emb.key_columns},
                            },
                            "table": emb.table,
                            "parent_key": {
                                c: converter(kinds[c], plan.decimal_mode)(row[c])
                                for c in emb.child_columns
                            },
                            "row": value
                            if emb.mode == "documents"
                            else {
                                c: converter(kinds[c], plan.decimal_mode)(row[c])
                                for c in emb.key_columns
                            },
                        }
                    )
                continue
            parent[emb.field].append(value)
            out.embedded += 1
    if emb.mode == "documents":
        out.bad_values.extend(builder.bad_values)
    for sub in emb.embeds:
        index = sub_index.get(",".join(sub.parent_columns), {})
        if index:
            _attach_children(engine, plan, spec, sub, index, out, None, None, False, top=False)
