"""CLI commands of the db-migration capability (added to `headwater run`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import typer

from headwater.commands.run import app
from headwater.errors import InputError


def _load_plan(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"--plan {path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"--plan {path}: not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise InputError(f"--plan {path}: expected a mapping with `tables:` / `exclude:`")
    return data


def save_connection_blocks(source: str, target: str) -> tuple[str, str]:
    """Save the source and target URLs as blocks (credentials stay out of flow parameters).

    Returns:
        The names of the SqlAlchemyConnector and MongoConnection blocks.
    """
    from pydantic import SecretStr
    from pymongo.errors import InvalidURI
    from pymongo.uri_parser import parse_uri
    from sqlalchemy.exc import ArgumentError

    from blocks.mongo import MongoConnection
    from blocks.registry import sql_connector_from_url

    try:
        connector = sql_connector_from_url(source)
    except ArgumentError as exc:
        raise InputError("--source: not a SQLAlchemy URL (e.g. postgresql+psycopg://...)") from exc
    try:
        database = parse_uri(target).get("database")
    except (InvalidURI, ValueError) as exc:
        raise InputError(f"--target: not a mongodb:// URL: {exc}") from exc
    if not database:
        raise InputError("--target: the URL must name the database, e.g. mongodb://host/mydb")
    digest = hashlib.sha256(f"{source}\n{target}".encode()).hexdigest()[:10]
    src_name, dst_name = f"db-migration-source-{digest}", f"db-migration-target-{digest}"
    connector.save(src_name, overwrite=True)
    MongoConnection(url=SecretStr(target)).save(dst_name, overwrite=True)
    return src_name, dst_name


@app.command("db-migration")
def run_db_migration(
    source: str = typer.Option(..., "--source", help="SQLAlchemy URL of the source database."),
    target: str = typer.Option(..., "--target", help="mongodb:// URL including the database."),
    plan: Path | None = typer.Option(None, "--plan", help="YAML plan (rename/exclude/embed)."),
    mode: str = typer.Option("full", "--mode", help="full or incremental."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only publish the plan."),
    restart: bool = typer.Option(False, "--restart", help="Ignore checkpoints; copy again."),
    batch_size: int = typer.Option(5000, "--batch-size", help="Source rows per batch task."),
    verify_sample: int = typer.Option(
        20000, "--verify-sample", help="Rows checked field by field per table (0: all)."
    ),
    json_schema: bool = typer.Option(
        False, "--json-schema", help="Emit (and install) a $jsonSchema validator per collection."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Migrate a relational database (SQLite, PostgreSQL, MySQL/MariaDB) into MongoDB."""
    from flows.db_migration import DbMigrationParams, MigrationFailed, db_migration
    from tasks.mongo import close_clients
    from tasks.sql import dispose_engines

    if mode not in ("full", "incremental"):
        raise InputError(f"--mode {mode!r}: use full or incremental")
    plan_data = _load_plan(plan)
    src_block, dst_block = save_connection_blocks(source, target)
    params = DbMigrationParams(
        source_block=src_block,
        target_block=dst_block,
        plan=plan_data,
        mode=mode,  # type: ignore[arg-type]
        dry_run=dry_run,
        restart=restart,
        batch_size=batch_size,
        verify_sample=verify_sample,
        json_schema=json_schema,
    )
    try:
        summary = db_migration(params)
    except MigrationFailed as exc:
        _print(exc.summary, as_json)
        raise
    finally:
        dispose_engines()
        close_clients()
    _print(summary, as_json)


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, default=str))
        return
    if summary.get("dry_run"):
        for row in summary["plan"]:
            typer.echo("  ".join(f"{k}={v}" for k, v in row.items()))
        return
    for row in summary.get("tables", {}).values():
        typer.echo(
            f"{row['table']:<24} -> {row['collection']:<24} rows={row.get('source_rows')} "
            f"written={row['documents_written']} embedded={row['embedded_rows']} "
            f"orphans={row['orphans']} verified={'yes' if row.get('verified') else 'NO'} "
            f"{row['seconds']}s"
        )
    for warning in summary.get("warnings", []):
        typer.echo(f"warning: {warning}")
