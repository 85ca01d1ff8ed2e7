"""Prefect tasks that write to and verify a MongoDB-wire server (MongoDB or FerretDB)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy.exc as sa_exc
from bson import Int64
from prefect import get_run_logger, task
from pymongo import MongoClient, ReplaceOne
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from headwater.errors import ConfigError
from tasks.migration_plan import (
    CHECKPOINTS,
    CollectionSpec,
    MigrationPlan,
    canonical,
    classify_type,
    diff_documents,
    range_id,
    sample_ranges,
    split_ranges,
)
from tasks.retry import retry_on
from tasks.sql import (
    batch_bounds,
    change_condition,
    count_rows,
    get_source_engine,
    get_table,
    iter_unkeyed_documents,
    max_value,
    orphan_condition,
    read_batch_documents,
    read_documents_by_keys,
)

WRITE_CHUNK = 5000
#: Replacements per bulk write: FerretDB v1 holds a backend connection per update in a bulk
#: until the bulk ends, and a few hundred at once exhausted its pool of 50 (a server-wide hang).
REPLACE_CHUNK = 8
#: Bad values a batch reports by name (all of them are counted).
BAD_VALUE_EXAMPLES = 20
#: Documents per cursor batch when verification scans a collection.
SCAN_BATCH = 5000
#: Sampled source rows whose digests verification holds at once (bounds its memory).
VERIFY_GROUP_ROWS = 200_000

_lock = threading.Lock()
_clients: dict[str, tuple[MongoClient[Any], str]] = {}

#: Test hook: raise after this many batches were written in this process (a crash mid-table).
FAULT_AFTER_BATCHES: int | None = None
_batches_written = 0


def target_client(block_name: str) -> tuple[MongoClient[Any], str]:
    """A cached pymongo client and the database name of a saved `MongoConnection` block."""
    with _lock:
        hit = _clients.get(block_name)
        if hit is None:
            from blocks.mongo import MongoConnection

            block: Any = MongoConnection.load(block_name)  # sync context: the block itself
            hit = (
                client_for_url(block.url.get_secret_value(), block.server_selection_timeout_ms),
                block.database_name(),
            )
            _clients[block_name] = hit
        return hit


def client_for_url(url: str, timeout_ms: int = 5000) -> MongoClient[Any]:
    """A pymongo client with UTC-aware datetimes and standard UUIDs."""
    return MongoClient(
        url, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, uuidRepresentation="standard"
    )


def close_clients() -> None:
    """Close every cached client."""
    with _lock:
        for client, _ in _clients.values():
            client.close()
        _clients.clear()


def check_database(client: MongoClient[Any], database: str) -> dict[str, Any]:
    """Ping the server and probe what it stores; one ConfigError naming the target on failure.

    Decimals are written as Decimal128, or as exact decimal strings on FerretDB v1.
    """
    try:
        client.admin.command("ping")
        db = client[database]
        db.list_collection_names()
        info = client.server_info()
    except OperationFailure as exc:
        raise ConfigError(
            "target",
            f"MongoDB refused the login or command: {exc.details or exc}",
        ) from exc
    except (ServerSelectionTimeoutError, ConnectionFailure) as exc:
        raise ConfigError(
            "target", f"cannot reach the MongoDB server: {str(exc).split(',')[0]}"
        ) from exc
    ferretdb = "ferretdbVersion" in info
    # FerretDB v1 cannot store Decimal128 (it drops the connection, and a probe has been seen
    # to take the server down), so it is detected from buildInfo instead of being tried.
    decimal128 = not ferretdb
    return {
        "server_version": info.get("version"),
        "ferretdb": info.get("ferretdbVersion"),
        "decimal128": decimal128,
    }


#: Connection-level failures of either side; everything else fails at once.
_transient = retry_on(
    AutoReconnect, ConnectionFailure, sa_exc.OperationalError, sa_exc.InterfaceError
)


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
def check_target(target_block: str) -> dict[str, Any]:
    """Check the target is reachable and probe its BSON support (Decimal128)."""
    client, database = target_client(target_block)
    caps = check_database(client, database)
    if not caps["decimal128"]:
        get_run_logger().warning(
            "target does not store Decimal128 (FerretDB): decimals are written as exact strings"
        )
    return caps


# --- validators -----------------------------------------------------------------------------------


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
def apply_validators(target_block: str, validators: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Install each collection's `$jsonSchema` validator; what happened, per collection.

    A collection that exists gets `collMod`, a new one is created with its validator. A server
    without document validation (FerretDB v1 answers NotImplemented) leaves the collection
    unvalidated: that is reported, not fatal, since the validator is also published.
    """
    client, database = target_client(target_block)
    db = client[database]
    existing = set(db.list_collection_names())
    status: dict[str, str] = {}
    for name, validator in validators.items():
        try:
            if name in existing:
                db.command("collMod", name, validator=validator, validationLevel="strict")
            else:
                db.create_collection(name, validator=validator, validationLevel="strict")
            status[name] = "applied"
        except OperationFailure as exc:
            if exc.code not in (59, 115, 238):  # CommandNotFound, NotSupported, NotImplemented
                raise
            reason = str(exc.details.get("errmsg") if exc.details else exc).split(",")[0]
            status[name] = f"not enforced: the server does not support validators ({reason})"
    return status


# --- checkpoints ----------------------------------------------------------------------------------


def checkpoint_id(migration_id: str, table: str) -> str:
    """The `_headwater_migrations` document id of one table of one migration."""
    return f"{migration_id}:{table}"


def _watermarks(engine: Any, spec: CollectionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.watermark:
        out[spec.table] = max_value(engine, get_table(engine, spec.table), spec.watermark)
    for emb in spec.embeds:
        if emb.watermark:
            out[emb.table] = max_value(engine, get_table(engine, emb.table), emb.watermark)
    return out


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
def prepare_table(
    source_block: str,
    target_block: str,
    plan_data: dict[str, Any],
    table: str,
    migration_id: str,
    mode: str,
    restart: bool,
    batch_size: int,
    sample: int = 0,
) -> dict[str, Any]:
    """Open or resume the table's checkpoint and list the batch key ranges still to copy.

    When verification will sample `sample` rows, the ranges it samples come first: written
    first, they are what the server returns first in natural order (see verify_collection).
    """
    plan = MigrationPlan.model_validate(plan_data)
    spec = plan.collection(table)
    engine = get_source_engine(source_block)
    client, database = target_client(target_block)
    checkpoints = client[database][CHECKPOINTS]
    ck_id = checkpoint_id(migration_id, table)
    ck = checkpoints.find_one({"_id": ck_id})
    gen_no = int(ck.get("generation_no", 0)) if ck else 0
    note = ""
    since: dict[str, Any] | None = None
    resume = False
    if ck and not restart and not ck.get("complete"):
        resume = True  # a crashed or cancelled run: same generation, skip finished ranges
    elif ck and not restart and ck.get("complete"):
        if mode == "full" or not spec.watermark:
            note = "already complete" if mode == "full" else "complete; no watermark"
            return {
                "table": table,
                "checkpoint": ck_id,
                "ranges": [],
                "pending_rows": 0,
                "skipped": len(ck.get("done", [])),
                "since": None,
                "note": note,
            }
        since = dict(ck.get("watermarks") or {})
    if resume:
        assert ck is not None
        generation = ck["generation"]
        since = ck.get("since")
        done = set(ck.get("done", []))
        note = "resumed"
    else:
        gen_no += 1
        generation = f"{'inc' if since is not None else 'full'}:{gen_no}"
        done = set()
        checkpoints.replace_one(
            {"_id": ck_id},
            {
                "migration_id": migration_id,
                "table": table,
                "collection": spec.collection,
                "generation": generation,
                "generation_no": gen_no,
                "since": since,
                "watermarks": _watermarks(engine, spec),
                "done": [],
                "complete": False,
                "started_at": dt.datetime.now(dt.UTC),
            },
            upsert=True,
        )
        note = "incremental" if since is not None else "full copy"
    sa_table = get_table(engine, table)
    where = change_condition(engine, spec, since) if since is not None else None
    total = count_rows(engine, sa_table, where)
    if spec.id_mode == "row_hash":
        bounds: list[list[Any]] = []
    else:
        bounds = batch_bounds(engine, sa_table, spec.key_columns, batch_size, where)
    ranges = []
    pending_rows = 0
    all_ranges = split_ranges(bounds)
    first = set(sample_ranges(len(all_ranges), total, sample)) if 0 < sample < total else set()
    for i, (lower, upper) in enumerate(all_ranges):
        rid = range_id(lower, upper, generation)
        rows = batch_size if upper is not None else total - batch_size * len(bounds)
        if spec.id_mode == "row_hash":
            rows = total
        if rid in done:
            continue
        pending_rows += rows
        ranges.append(
            {
                "index": i,
                "lower": lower,
                "upper": upper,
                "range_id": rid,
                "rows": rows,
                "chunk": batch_size,
            }
        )
    ranges.sort(key=lambda r: r["index"] not in first)  # stable: key order otherwise
    return {
        "table": table,
        "checkpoint": ck_id,
        "ranges": ranges,
        "pending_rows": pending_rows,
        "skipped": len(done),
        "since": since,
        "note": note,
    }


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
def mark_table_complete(target_block: str, checkpoint: str) -> None:
    """Mark a table's checkpoint complete (its watermarks become the next incremental base)."""
    client, database = target_client(target_block)
    client[database][CHECKPOINTS].update_one(
        {"_id": checkpoint},
        {"$set": {"complete": True, "finished_at": dt.datetime.now(dt.UTC)}},
    )


# --- copying --------------------------------------------------------------------------------------


DUPLICATE_KEY = 11000
VALIDATION_FAILED = 121


def _failed(
    exc: BulkWriteError, chunk: Sequence[dict[str, Any]], code: int
) -> list[dict[str, Any]]:
    """The documents of `chunk` whose write failed with `code`; raise on any other error."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") not in (DUPLICATE_KEY, VALIDATION_FAILED) for e in errors):
        raise exc
    return [chunk[e["index"]] for e in errors if e.get("code") == code]


def _replace(collection: Any, docs: Sequence[dict[str, Any]], bypass: bool = False) -> None:
    """Replace-upserts by `_id`, a few at a time; refused by the validator: again, bypassing it."""
    for j in range(0, len(docs), REPLACE_CHUNK):
        part = docs[j : j + REPLACE_CHUNK]
        ops = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in part]
        try:
            # None, not False: pymongo would send `false`, which FerretDB v1 may refuse
            collection.bulk_write(ops, ordered=False, bypass_document_validation=bypass or None)
        except BulkWriteError as exc:
            invalid = _failed(exc, part, VALIDATION_FAILED)
            if bypass or len(invalid) != len(exc.details.get("writeErrors", [])):
                raise
            _replace(collection, invalid, bypass=True)


def write_documents(collection: Any, docs: Sequence[dict[str, Any]]) -> int:
    """Idempotent writes in chunks: unordered insert, then replace-upserts for ids that exist.

    A first copy is plain bulk inserts (fast, also on FerretDB); documents whose `_id` is
    already there (a resumed or repeated batch) are replaced by `_id`, so a batch written
    twice still leaves exactly one document per source row. A document the collection's
    `$jsonSchema` validator refuses (one holding a value its column's type could not convert,
    which the batch reports) is written again bypassing validation: nothing is dropped.
    """
    for i in range(0, len(docs), WRITE_CHUNK):
        chunk = docs[i : i + WRITE_CHUNK]
        try:
            collection.insert_many(chunk, ordered=False)
        except BulkWriteError as exc:
            _replace(collection, _failed(exc, chunk, DUPLICATE_KEY))
            _replace(collection, _failed(exc, chunk, VALIDATION_FAILED), bypass=True)
    return len(docs)


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
def copy_table_batch(
    source_block: str,
    target_block: str,
    plan_data: dict[str, Any],
    table: str,
    checkpoint: str,
    batch: dict[str, Any],
    since: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Copy one key range of a table (with its embedded children) and checkpoint it."""
    global _batches_written
    start = time.perf_counter()
    with _lock:
        _batches_written += 1
        crash = FAULT_AFTER_BATCHES is not None and _batches_written > FAULT_AFTER_BATCHES
    if crash:  # the process "dies": this and later batches never write nor checkpoint
        raise RuntimeError(f"injected fault after {FAULT_AFTER_BATCHES} batches")
    plan = MigrationPlan.model_validate(plan_data)
    spec = plan.collection(table)
    engine = get_source_engine(source_block)
    client, database = target_client(target_block)
    db = client[database]
    if spec.id_mode == "row_hash":  # no key to cut ranges on: one stream, written in chunks
        chunks: Any = iter_unkeyed_documents(engine, plan, spec, batch.get("chunk") or 5000)
    else:
        chunks = [read_batch_documents(engine, plan, spec, batch["lower"], batch["upper"], since)]
    rows = written = embedded = orphans = 0
    bad_values: list[dict[str, Any]] = []
    for got in chunks:
        written += write_documents(db[spec.collection], got.docs)
        if got.orphans:
            write_documents(db[spec.orphans_collection], got.orphans)
        rows += got.rows
        embedded += got.embedded
        orphans += len(got.orphans)
        bad_values += got.bad_values
    if bad_values:
        first = bad_values[0]
        get_run_logger().warning(
            "%s: %d value(s) kept as strings, e.g. %s.%s at %s: %s (%r)",
            table, len(bad_values), first["table"], first["column"], first["key"],
            first["error"], first["value"],
        )  # fmt: skip
    db[CHECKPOINTS].update_one(
        {"_id": checkpoint},
        {"$addToSet": {"done": batch["range_id"]}, "$inc": {"rows_written": written}},
    )
    return {
        "table": table,
        "rows": rows,
        "written": written,
        "embedded": embedded,
        "orphans": orphans,
        "bad_values": bad_values[:BAD_VALUE_EXAMPLES],
        "bad_value_count": len(bad_values),
        "seconds": time.perf_counter() - start,
    }


# --- verification ---------------------------------------------------------------------------------


def _expected_nested(engine: Any, spec: CollectionSpec, path: list[Any]) -> int:
    """Source rows of a nested embed whose whole parent chain exists."""
    import sqlalchemy as sa

    tables = [get_table(engine, spec.table)] + [get_table(engine, e.table) for e in path]
    joined: sa.FromClause = tables[0]
    for parent, child, emb in zip(tables, tables[1:], path, strict=False):
        on = sa.and_(
            *(
                child.c[c] == parent.c[p]
                for c, p in zip(emb.child_columns, emb.parent_columns, strict=True)
            )
        )
        joined = joined.join(child, on)
    stmt = sa.select(sa.func.count()).select_from(joined)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _id_key(value: Any) -> Any:
    """A dict key for a document `_id` that is equal for the source and the stored value."""
    if type(value) in (int, Int64, str):
        return value
    return canonical({"id": value})


def _digest(doc: Mapping[str, Any]) -> int:
    """A 128-bit digest of a document's canonical form (sums of these are order independent)."""
    return int.from_bytes(hashlib.blake2b(canonical(doc).encode(), digest_size=16).digest(), "big")


def _elements(value: Any, parts: Sequence[str]) -> int:
    """Elements under a dotted array path of one document, as `$unwind` would count them."""
    if not parts:
        return 1
    child = value.get(parts[0]) if isinstance(value, Mapping) else None
    if child is None:
        return 0
    if isinstance(child, list):
        return sum(_elements(v, parts[1:]) for v in child)
    return _elements(child, parts[1:])


def _range_groups(picked: Sequence[int], rows_per_range: int) -> list[list[int]]:
    """Sampled ranges in groups of at most VERIFY_GROUP_ROWS source rows (one target scan each)."""
    per_group = max(1, VERIFY_GROUP_ROWS // max(rows_per_range, 1))
    return [list(picked[i : i + per_group]) for i in range(0, len(picked), per_group)] or [[]]


def _server_count(db: Any, name: str, ferretdb: bool) -> int:
    """Documents in a collection, exactly, counted by the server (nothing is sent back).

    FerretDB v1 answers `count` by counting what it reads (its cheapest exact count; not
    `collStats`, which is PostgreSQL's ANALYZE estimate of the table's rows: 799,989 of
    800,000 seen after a bulk load). MongoDB answers an unfiltered `count` from metadata, so
    there `countDocuments`.
    """
    if ferretdb:
        return int(db.command("count", name)["n"])
    return int(db[name].count_documents({}))


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_transient)
def verify_collection(
    source_block: str,
    target_block: str,
    plan_data: dict[str, Any],
    table: str,
    sample: int,
    batch_size: int,
    ferretdb: bool = False,
) -> dict[str, Any]:
    """Compare counts, embedded array sizes and a field-by-field content checksum.

    `ferretdb`: the target is FerretDB (what `check_target` found), which counts differently.
    """
    plan = MigrationPlan.model_validate(plan_data)
    spec = plan.collection(table)
    engine = get_source_engine(source_block)
    client, database = target_client(target_block)
    db = client[database]
    coll = db[spec.collection]
    sa_table = get_table(engine, table)
    source_rows = count_rows(engine, sa_table)
    problems: list[str] = []
    embedded: list[dict[str, Any]] = []
    paths: dict[str, list[str]] = {}

    def walk(embeds: Sequence[Any], path: list[Any]) -> None:
        for emb in embeds:
            chain = [*path, emb]
            field = ".".join(e.field for e in chain)
            paths[field] = field.split(".")
            row: dict[str, Any] = {
                "field": field,
                "expected": _expected_nested(engine, spec, chain),
            }
            if not path:
                child = get_table(engine, emb.table)
                orphans_src = count_rows(
                    engine,
                    child,
                    orphan_condition(child, sa_table, emb.child_columns, emb.parent_columns),
                )
                orphans_dst = db[spec.orphans_collection].count_documents({"_id.field": emb.field})
                row.update({"orphans_source": orphans_src, "orphans_target": orphans_dst})
                if orphans_src != orphans_dst:
                    problems.append(f"{field}: orphans {orphans_dst} != source {orphans_src}")
            embedded.append(row)
            walk(emb.embeds, chain)

    walk(spec.embeds, [])

    kinds = {c: classify_type(sa_table.c[c].type) for c in spec.key_columns}
    keyed = spec.id_mode != "row_hash" and all(
        k in ("int", "bigint", "string") for k in kinds.values()
    )
    method = "full checksum"
    if 0 < sample < source_rows and not paths and keyed:
        # A sample of a large table: the server's exact count, and the first `sample` stored
        # documents in natural order (the copy writes the sampled ranges first) compared field
        # by field with their source rows, looked up by key. On FerretDB v1 any other read
        # decodes the whole collection; a LIMIT without filter is the read it pushes down.
        method = f"count + first {sample} stored documents"
        documents = _server_count(db, spec.collection, ferretdb)
        stored = list(coll.find({}, batch_size=SCAN_BATCH).limit(sample))
        names = spec.id_fields or spec.key_columns

        def key_of(doc_id: Any) -> tuple[Any, ...]:
            if spec.id_mode == "single":
                return (doc_id,)
            return tuple(doc_id.get(n) for n in names)

        keys = [key_of(d["_id"]) for d in stored]
        source = read_documents_by_keys(engine, plan, spec, keys).docs
        expected = {_id_key(d["_id"]): d for d in source}
        elements: dict[str, int] = {}
        mismatched = []
        dst_sum = 0
        for doc in stored:
            got = _digest(doc)
            dst_sum += got
            want = expected.get(_id_key(doc["_id"]))
            if want is None:
                mismatched.append(f"_id={doc['_id']!r}: no source row")
            elif _digest(want) != got:
                diffs = diff_documents(want, doc) or ["differs"]
                mismatched.append(f"_id={doc['_id']!r}: {', '.join(diffs[:5])}")
        checked = len(stored)
        content_ok = not mismatched
        mismatched = mismatched[:10]
    else:
        bounds = (
            []
            if spec.id_mode == "row_hash"
            else batch_bounds(engine, sa_table, spec.key_columns, batch_size)
        )
        ranges = split_ranges(bounds)
        picked = sample_ranges(len(ranges), source_rows, sample)

        def scan_counts(stored: Mapping[str, Any], counts: dict[str, int]) -> None:
            for field, parts in paths.items():
                counts[field] += _elements(stored, parts)

        def compare_groups(
            groups: list[list[int]],
        ) -> tuple[int, dict[str, int], int, int, list[str]]:
            # Every document is read once per group of sampled ranges, in natural order:
            # FerretDB v1 decodes the whole collection for any `_id` range, `$in` or count
            # query, so the number of queries is what costs. The first scan also gives the exact
            # document count and the embedded array sizes; on MongoDB, a plain collection scan.
            documents = dst_sum = checked = 0
            counts = dict.fromkeys(paths, 0)
            mismatched: list[str] = []
            for n, group in enumerate(groups):
                expected: dict[Any, int] = {}
                for idx in group:
                    lower, upper = ranges[idx]
                    for doc in read_batch_documents(engine, plan, spec, lower, upper).docs:
                        expected[_id_key(doc["_id"])] = _digest(doc)
                wrong: dict[Any, dict[str, Any]] = {}
                for stored in coll.find({}, batch_size=SCAN_BATCH):
                    if n == 0:
                        documents += 1
                        scan_counts(stored, counts)
                    key = _id_key(stored["_id"])
                    want = expected.pop(key, None)
                    if want is None:
                        continue
                    got = _digest(stored)
                    dst_sum += got
                    checked += 1
                    if got != want and len(wrong) < 10:
                        wrong[key] = stored
                checked += len(expected)  # rows without a stored document: checked (and bad)
                if wrong or expected:
                    # only on a mismatch: read the group again to name the differing fields
                    missing = set(list(expected)[: max(0, 10 - len(wrong))])
                    for idx in group:
                        lower, upper = ranges[idx]
                        for doc in read_batch_documents(engine, plan, spec, lower, upper).docs:
                            key = _id_key(doc["_id"])
                            if (key in wrong or key in missing) and len(mismatched) < 10:
                                diffs = diff_documents(doc, wrong.get(key)) or ["differs"]
                                mismatched.append(f"_id={doc['_id']!r}: {', '.join(diffs[:5])}")
            return documents, counts, dst_sum, checked, mismatched

        if len(picked) == len(ranges):
            # Every row is checked: the order-independent sum of the document digests on each
            # side, i.e. one stream of the source and one scan of the target, in bounded memory.
            # Only when the sums differ are the rows compared one by one to name the fields.
            if spec.id_mode == "row_hash":
                unkeyed = iter_unkeyed_documents(engine, plan, spec, batch_size)
                chunks: Any = (b.docs for b in unkeyed)
            else:
                chunks = (
                    read_batch_documents(engine, plan, spec, lo, up).docs for lo, up in ranges
                )
            src_sum = sum(_digest(doc) for docs in chunks for doc in docs)
            documents = dst_sum = 0
            elements = dict.fromkeys(paths, 0)
            for stored in coll.find({}, batch_size=SCAN_BATCH):
                documents += 1  # noqa: SIM113 (a cursor has no length)
                scan_counts(stored, elements)
                dst_sum += _digest(stored)
            checked = source_rows
            mismatched = []
            content_ok = src_sum == dst_sum
            if not content_ok and spec.id_mode == "row_hash":
                mismatched.append("rows of a table without primary key differ (no key names them)")
            elif not content_ok:
                everything = _range_groups(list(range(len(ranges))), batch_size)
                mismatched = compare_groups(everything)[4] or ["stored documents differ"]
        else:
            documents, elements, dst_sum, checked, mismatched = compare_groups(
                _range_groups(picked, batch_size)
            )
            content_ok = not mismatched
    if documents != source_rows:
        problems.insert(0, f"documents {documents} != source rows {source_rows}")
    for row in embedded:
        row["actual"] = elements[row["field"]]
        if row["expected"] != row["actual"]:
            problems.append(
                f"{row['field']}: elements {row['actual']} != source rows {row['expected']}"
            )
    if not content_ok:
        problems.append("content checksum differs: " + "; ".join(mismatched))
    return {
        "table": table,
        "collection": spec.collection,
        "method": method,
        "source_rows": source_rows,
        "documents": documents,
        "embedded": embedded,
        "checked_rows": checked,
        "checksum": f"{dst_sum % 2**64:016x}",
        "verified": not problems,
        "problems": problems,
    }


def drop_collections(client: MongoClient[Any], database: str, names: Sequence[str]) -> None:
    """Drop collections (tests and benchmarks start from an empty target)."""
    for name in names:
        client[database].drop_collection(name)


def stored_documents(
    client: MongoClient[Any], database: str, collection: str, query: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every document of a collection matching `query` (small collections in tests)."""
    return list(client[database][collection].find(dict(query or {})))
