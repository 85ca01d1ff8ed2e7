"""CLI commands of the mail-migration capability (added to `headwater run`).

Passwords are never given on the command line: an account is an `imap://user@host:port` URL
plus the name of a Prefect Secret block holding its password, or an ImapAccount block name.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer

from headwater.commands.run import app
from headwater.errors import InputError

SECURITY_HELP = "plain, starttls or tls (default: tls for imaps://, starttls for imap://)."


def account_ref(
    side: str, url: str | None, secret: str | None, block: str | None, security: str | None
) -> Any:
    """An AccountRef from CLI options; names the option that is wrong."""
    from tasks.imap import AccountRef

    if block:
        if url or secret:
            raise InputError(f"--{side}-block: give either a block or --{side} with a secret")
        return AccountRef(block=block)
    if not url:
        raise InputError(f"--{side}: required (imap://user@host:port), or --{side}-block")
    if not secret:
        raise InputError(
            f"--{side}-password-secret: required with --{side} (name of a Prefect Secret block)"
        )
    if security not in (None, "plain", "tls", "starttls"):
        raise InputError(f"--security: {security!r} is not plain, tls or starttls")
    return AccountRef.from_url(url, secret, security)  # type: ignore[arg-type]


def _pairs(values: list[str], option: str, sep: str = "=") -> list[tuple[str, str]]:
    out = []
    for value in values:
        if sep not in value:
            raise InputError(f"{option}: {value!r} is not SOURCE{sep}TARGET")
        left, right = value.split(sep, 1)
        out.append((left, right))
    return out


def load_batch_file(path: Path, security: str | None = None) -> list[Any]:
    """Read a batch CSV into MailboxJob objects.

    Columns (header row required): `name` (optional), then per side either `source_block` /
    `dest_block`, or `source` / `dest` (imap:// URLs) with `source_password_secret` /
    `dest_password_secret`; optional `security`, `source_security`, `dest_security`.
    A `password` column is refused: passwords never live in batch files.
    """
    from flows.mail_migration import MailboxJob

    if not path.is_file():
        raise InputError(f"{path}: batch file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(line for line in fh if not line.startswith("#"))]
    if not rows:
        raise InputError(f"{path}: no mailbox rows")
    jobs = []
    for i, row in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if any("password" in k and not k.endswith("_secret") for k in row):
            raise InputError(f"{path}: inline password columns are not allowed; use *_secret")
        try:
            sides = {
                side: account_ref(
                    side,
                    row.get(side) or None,
                    row.get(f"{side}_password_secret") or None,
                    row.get(f"{side}_block") or None,
                    row.get(f"{side}_security") or row.get("security") or security,
                )
                for side in ("source", "dest")
            }
        except (InputError, ValueError) as exc:
            raise InputError(f"{path} line {i}: {exc}") from None
        name = row.get("name") or f"{sides['source'].label} -> {sides['dest'].label}"
        jobs.append(MailboxJob(name=name, source=sides["source"], dest=sides["dest"]))
    return jobs


def failed_names(report_path: Path) -> list[str]:
    """Names of the failed mailboxes of a previous batch report (JSON)."""
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"--only-failed {report_path}: not a readable JSON report ({exc})"
        ) from None
    if "failed" not in report:
        raise InputError(f"--only-failed {report_path}: no 'failed' list (not a batch report)")
    return list(report["failed"])


def _options(**kwargs: Any) -> Any:
    from tasks.imap_core import SyncOptions

    if kwargs["delete2"] and not kwargs["confirm_delete2"]:
        raise InputError("--delete2 removes destination messages: add --confirm-delete2")
    return SyncOptions(**{k: v for k, v in kwargs.items() if v is not None})


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, default=str))
        return
    rows = report.get("folders") or report.get("mailboxes") or []
    for r in rows:
        name = r.get("source_folder") or r.get("mailbox")
        typer.echo(
            f"{r.get('status', ''):8} {name}: source {r.get('source_count', 0)}, "
            f"dest {r.get('dest_before', 0)}->{r.get('dest_after', 0)}, copied "
            f"{r.get('copied', 0)}, skipped {r.get('skipped', 0)}, failed {r.get('failed', 0)}"
            + (f" ({r['reason']})" if r.get("reason") else "")
        )
    typer.echo(f"{report.get('status')}: {report.get('totals')}")


@app.command("mail-migration")
def mail_migration_cmd(
    source: str = typer.Option(None, "--source", help="imap://user@host:port of the source."),
    source_password_secret: str = typer.Option(
        None, help="Prefect Secret block holding the source password."
    ),
    source_block: str = typer.Option(None, help="ImapAccount block of the source (instead)."),
    dest: str = typer.Option(None, "--dest", help="imap://user@host:port of the destination."),
    dest_password_secret: str = typer.Option(
        None, help="Prefect Secret block holding the destination password."
    ),
    dest_block: str = typer.Option(None, help="ImapAccount block of the destination (instead)."),
    security: str = typer.Option(None, help=SECURITY_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be copied only."),
    just_folders: bool = typer.Option(False, help="Create folders only."),
    include: list[str] = typer.Option([], help="Regex of source folders to sync (repeatable)."),
    exclude: list[str] = typer.Option([], help="Regex of source folders to skip (repeatable)."),
    folder_map: list[str] = typer.Option([], help="SOURCE=DEST folder mapping (repeatable)."),
    rewrite: list[str] = typer.Option(
        [], help="PATTERN=REPLACEMENT regex on destination names (repeatable)."
    ),
    max_age: float = typer.Option(None, help="Only messages newer than this many days."),
    min_age: float = typer.Option(None, help="Only messages older than this many days."),
    resync_flags: bool = typer.Option(False, help="Update flags of already copied messages."),
    delete2: bool = typer.Option(False, help="Expunge destination messages not on the source."),
    confirm_delete2: bool = typer.Option(False, help="Required with --delete2."),
    connections: int = typer.Option(4, help="Connection pairs per folder (within host limits)."),
    rate_limit: float = typer.Option(None, help="Max messages per second."),
    engine: str = typer.Option("python", help="python (built in) or imapsync (if on PATH)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Migrate one IMAP mailbox (incremental: only what the destination lacks is copied)."""
    from flows.mail_migration import MailMigrationParams, mail_migration

    if engine not in ("python", "imapsync"):
        raise InputError(f"--engine: {engine!r} is not python or imapsync")
    params = MailMigrationParams(
        source=account_ref("source", source, source_password_secret, source_block, security),
        dest=account_ref("dest", dest, dest_password_secret, dest_block, security),
        engine=engine,  # type: ignore[arg-type]
        options=_options(
            dry_run=dry_run,
            just_folders=just_folders,
            include=include,
            exclude=exclude,
            folder_map=dict(_pairs(folder_map, "--folder-map")),
            regex_rewrites=_pairs(rewrite, "--rewrite"),
            max_age_days=max_age,
            min_age_days=min_age,
            resync_flags=resync_flags,
            delete2=delete2,
            confirm_delete2=confirm_delete2,
            connections=connections,
            rate_limit=rate_limit,
        ),
    )
    state = mail_migration(params, return_state=True)
    if state.is_completed():
        _print(state.result(), as_json)
        return
    exc = state.result(raise_on_failure=False)
    report = {"mailbox": params.label, "status": "failed", "error": str(exc)[:500]}
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"error: {report['error']}", err=True)
    raise typer.Exit(1)


@app.command("mail-migration-batch")
def mail_migration_batch_cmd(
    file: Path = typer.Argument(..., help="CSV of mailbox pairs (passwords as secret names)."),
    only_failed: Path = typer.Option(
        None, help="A previous batch report (JSON): re-run only its failed mailboxes."
    ),
    report_out: Path = typer.Option(None, help="Write the batch report JSON here."),
    security: str = typer.Option(None, help=SECURITY_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be copied only."),
    parallel: int = typer.Option(2, help="Mailboxes migrated at once."),
    retries: int = typer.Option(2, help="Retries of a mailbox after a transient failure."),
    retry_delay: float = typer.Option(5.0, help="First retry delay in seconds (doubles)."),
    next_deployment: str = typer.Option(
        None, help="Deployment (flow/deployment) to start when the batch has finished."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Migrate many mailboxes from a CSV; failures are listed; re-run with --only-failed."""
    from flows.mail_migration import MailMigrationBatchParams, mail_migration_batch
    from tasks.imap_core import SyncOptions

    jobs = load_batch_file(file, security)
    only = failed_names(only_failed) if only_failed else None
    params = MailMigrationBatchParams(
        jobs=jobs,
        options=SyncOptions(dry_run=dry_run),
        only=only,
        parallel_mailboxes=parallel,
        retries=retries,
        retry_delay_seconds=retry_delay,
        next_deployment=next_deployment,
    )
    report = mail_migration_batch(params)
    if report_out:
        report_out.write_text(json.dumps(report, indent=1, default=str))
    _print(report, as_json)
    if report["failed"]:
        raise typer.Exit(1)
