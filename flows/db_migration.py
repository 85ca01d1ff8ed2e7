"""db-migration: reflect a relational schema, plan documents, copy in batches, verify."""

from __future__ import annotations

import hashlib
import json
import queue
import time
from collections import deque
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from headwater.errors import HeadwaterError
from tasks.migration_plan import MigrationPlan, SchemaInfo, build_plan, collection_validator
from tasks.mongo import (
    apply_validators,
    check_target,
    copy_table_batch,
    mark_table_complete,
    prepare_table,
    verify_collection,
)
from tasks.sql import reflect_schema
from tasks.storage import Progress, publish_markdown, publish_table


class DbMigrationParams(BaseModel):
    """Parameters of a db-migration run (credentials live in the two blocks)."""

    source_block: str = Field(description="Name of the SqlAlchemyConnector block of the source.")
    target_block: str = Field(description="Name of the MongoConnection block of the target.")
    plan: dict[str, Any] | None = Field(
        default=None, description="Parsed YAML plan (rename, exclude, embed, arrays)."
    )
    mode: Literal["full", "incremental"] = Field(
        default="full", description="full: copy (or resume) everything; incremental: changes."
    )
    dry_run: bool = Field(default=False, description="Only publish the plan.")
    restart: bool = Field(default=False, description="Ignore checkpoints and copy again.")
    batch_size: int = Field(default=5000, ge=1, description="Source rows per batch task.")
    verify_sample: int = Field(
        default=20000, ge=0, description="Rows checked field by field per table (0: all)."
    )
    json_schema: bool = Field(
        default=False,
        description="Emit a $jsonSchema validator per collection from the SQL types and "
        "install it where the server supports validation.",
    )


class MigrationFailed(HeadwaterError):
    """Verification found a mismatch; `summary` holds the full run summary."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


def migration_id(params: DbMigrationParams, plan: MigrationPlan) -> str:
    """Stable id of a migration: the same source, target and plan resume the same checkpoints."""
    text = json.dumps(
        [params.source_block, params.target_block, plan.model_dump(exclude={"warnings"})],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(text.encode()).hexdigest()[:12]


WORKERS = 4


@flow(name="db-migration", task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))  # type: ignore[arg-type]
def db_migration(params: DbMigrationParams) -> dict[str, Any]:
    """Migrate a relational database into MongoDB collections, resumably, and verify it."""
    logger = get_run_logger()
    started = time.perf_counter()
    schema = SchemaInfo.model_validate(reflect_schema(params.source_block))
    caps = check_target(params.target_block)
    plan = build_plan(schema, params.plan)
    plan.decimal_mode = "decimal128" if caps["decimal128"] else "string"
    if plan.decimal_mode == "string":
        plan.warnings.append("target lacks Decimal128 (FerretDB): decimals stored as strings")
    for warning in plan.warnings:
        logger.warning("%s", warning)
    publish_table(plan.table_rows(), key="db-migration-plan", description="Migration plan")
    report: dict[str, Any] = {
        "mode": params.mode,
        "dry_run": params.dry_run,
        "target": caps,
        "decimal_mode": plan.decimal_mode,
        "warnings": plan.warnings,
        "field_mappings": plan.field_mappings,
        "unsupported_columns": plan.unsupported_columns,
        "plan": plan.table_rows(),
    }
    validators = (
        {c.collection: collection_validator(c, schema, plan.decimal_mode) for c in plan.collections}
        if params.json_schema
        else {}
    )
    if validators:
        status = (
            dict.fromkeys(validators, "dry run")
            if params.dry_run
            else apply_validators(params.target_block, validators)
        )
        report["validators"] = {
            name: {"status": status[name], "validator": v} for name, v in validators.items()
        }
        publish_markdown(
            "\n".join(
                ["## $jsonSchema validators", ""]
                + [
                    f"### {name}\n{status[name]}\n\n```json\n{json.dumps(v, indent=2)}\n```"
                    for name, v in validators.items()
                ]
            ),
            key="db-migration-validators",
            description="$jsonSchema validators derived from the SQL types",
        )
        unenforced = sorted(n for n, st in status.items() if st.startswith("not enforced"))
        if unenforced:
            logger.warning("validators %s for %s", status[unenforced[0]], ", ".join(unenforced))
    if params.dry_run:
        return report

    mig_id = migration_id(params, plan)
    plan_data = plan.model_dump()
    copy_start = time.perf_counter()
    preps = {
        c.table: prepare_table.submit(
            params.source_block,
            params.target_block,
            plan_data,
            c.table,
            mig_id,
            params.mode,
            params.restart,
            params.batch_size,
            params.verify_sample,
        )
        for c in plan.collections
    }
    prepared = {table: fut.result() for table, fut in preps.items()}
    progress = Progress(
        total=sum(p["pending_rows"] for p in prepared.values()),
        key="db-migration-progress",
        description="Rows copied of total",
    )
    tables: dict[str, dict[str, Any]] = {
        t: {
            "table": t,
            "collection": plan.collection(t).collection,
            "rows_copied": 0,
            "documents_written": 0,
            "embedded_rows": 0,
            "orphans": 0,
            "bad_values": 0,
            "batches": len(p["ranges"]),
            "batches_skipped": p["skipped"],
            "note": p["note"],
            "seconds": 0.0,
        }
        for t, p in prepared.items()
    }
    pending = {t: len(p["ranges"]) for t, p in prepared.items()}
    # Largest tables first and only a few batches queued ahead of the workers, so that a table
    # is verified as soon as its last batch has landed while the others still copy.
    todo = deque(
        (t, batch)
        for t in sorted(prepared, key=lambda t: -prepared[t]["pending_rows"])
        for batch in prepared[t]["ranges"]
    )
    finished: queue.SimpleQueue[tuple[str, str, PrefectFuture[Any]]] = queue.SimpleQueue()
    running = {"copy": 0, "all": 0}
    errors: list[BaseException] = []
    results: dict[str, dict[str, Any]] = {}
    bad_values: list[dict[str, Any]] = []  # the first 50 named; tables[t] counts them all
    copy_seconds = verify_start = 0.0

    def watch(kind: str, table: str, fut: PrefectFuture[Any]) -> None:
        running["all"] += 1
        running["copy"] += kind == "copy"
        fut.add_done_callback(lambda f: finished.put((kind, table, f)))

    def table_copied(table: str) -> None:
        if prepared[table]["note"] != "already complete":
            checkpoint = prepared[table]["checkpoint"]
            watch("mark", table, mark_table_complete.submit(params.target_block, checkpoint))
        if not errors:
            verify = verify_collection.submit(
                params.source_block,
                params.target_block,
                plan_data,
                table,
                params.verify_sample,
                max(params.batch_size, 5000),
                caps["ferretdb"] is not None,
            )
            watch("verify", table, verify)

    for t, n in pending.items():
        if n == 0:
            table_copied(t)
    while True:
        while todo and not errors and running["copy"] < WORKERS + 2:
            t, batch = todo.popleft()
            p = prepared[t]
            fut = copy_table_batch.submit(
                params.source_block,
                params.target_block,
                plan_data,
                t,
                p["checkpoint"],
                batch,
                p["since"],
            )
            watch("copy", t, fut)
        if not running["all"]:
            break
        kind, t, fut = finished.get()
        running["all"] -= 1
        running["copy"] -= kind == "copy"
        try:
            res = fut.result()
        except Exception as exc:
            # let in-flight tasks finish (and checkpoint) before failing the run
            errors.append(exc)
            continue
        if kind == "verify":
            results[t] = res
        if kind != "copy":
            continue
        row = tables[t]
        row["rows_copied"] += res["rows"]
        row["documents_written"] += res["written"]
        row["embedded_rows"] += res["embedded"]
        row["orphans"] += res["orphans"]
        row["bad_values"] += res["bad_value_count"]
        bad_values.extend(res["bad_values"][: max(0, 50 - len(bad_values))])
        progress.advance(res["rows"])
        pending[t] -= 1
        if pending[t] == 0:
            row["seconds"] = round(time.perf_counter() - copy_start, 3)
            table_copied(t)
        if not any(pending.values()):
            progress.finish()
            copy_seconds = time.perf_counter() - copy_start
            verify_start = time.perf_counter()
    if errors:
        raise errors[0]
    if not copy_seconds:  # nothing was pending
        copy_seconds = time.perf_counter() - copy_start
        verify_start = time.perf_counter()

    failed = []
    for table in tables:
        v = results[table]
        row = tables[table]
        row.update(
            {
                "source_rows": v["source_rows"],
                "documents": v["documents"],
                "embedded_expected": sum(e["expected"] for e in v["embedded"]),
                "embedded_actual": sum(e["actual"] for e in v["embedded"]),
                "checked_rows": v["checked_rows"],
                "verify_method": v["method"],
                "checksum": v["checksum"],
                "verified": v["verified"],
                "problems": v["problems"],
                "embeds": v["embedded"],
            }
        )
        if not v["verified"]:
            failed.append(f"{table}: {'; '.join(v['problems'])}")
    verify_seconds = time.perf_counter() - verify_start
    publish_table(
        [
            {
                k: tables[t][k]
                for k in (
                    "table",
                    "collection",
                    "source_rows",
                    "documents",
                    "documents_written",
                    "embedded_rows",
                    "orphans",
                    "bad_values",
                    "checked_rows",
                    "verify_method",
                    "verified",
                )
            }
            for t in tables
        ],
        key="db-migration-verification",
        description="Verification: counts, embedded arrays, field-by-field checksum",
    )
    report.update(
        {
            "migration_id": mig_id,
            "tables": tables,
            "rows_copied": sum(r["rows_copied"] for r in tables.values()),
            "documents_written": sum(r["documents_written"] for r in tables.values()),
            "bad_values": bad_values,
            "verified": not failed,
            "copy_seconds": round(copy_seconds, 3),
            "verify_seconds": round(verify_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    if bad_values:
        publish_table(
            [{**b, "key": json.dumps(b["key"], default=str)} for b in bad_values],
            key="db-migration-bad-values",
            description="Values their column's type could not convert, stored as strings",
        )
    if plan.unsupported_columns or plan.warnings:
        publish_markdown(
            "\n".join(
                ["## Notes"]
                + [f"- {w}" for w in plan.warnings]
                + [
                    f"- {u['table']}.{u['column']} ({u['sql_type']}) stored as string"
                    for u in plan.unsupported_columns
                ]
            ),
            key="db-migration-notes",
        )
    logger.info(
        "copied %d rows, wrote %d documents in %.1fs",
        report["rows_copied"],
        report["documents_written"],
        report["seconds"],
    )
    if failed:
        raise MigrationFailed("verification failed: " + " | ".join(failed), report)
    return report
