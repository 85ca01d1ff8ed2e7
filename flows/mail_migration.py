"""Mailbox migration: copy IMAP mailboxes incrementally, without duplicates; queue, retry, chain.

How it behaves:
- The destination is the ground truth. Each folder task reads message identities on both sides
  (Message-ID + INTERNALDATE + RFC822.SIZE, a header hash without Message-ID; a multiset, so
  duplicate Message-IDs are all copied) and copies only what is missing, so a re-run or a retry
  after a dropped connection never duplicates. Bytes are moved as received (no re-encoding).
- Connection limits: every IMAP server gets a Prefect global concurrency limit
  `imap-<host>-<port>` (created or updated by `ensure_host_limits` from the account's
  `max_connections`). A folder task holds one slot per side for its connection pair and takes
  extra pairs only when slots are free. Without a Prefect server (ephemeral API) a
  process-local semaphore per host does the same. `options.rate_limit` caps messages/s per
  host pair in the process (token bucket; Prefect rate limits would cost an API call each).
- Queue and retry: `mail-migration-batch` runs mailbox subflows `parallel_mailboxes` at a
  time; a transient failure (connection drop, timeout) is retried with exponential backoff, a
  refused login is not (no retry storm); failures are listed and `only=[...]` (CLI
  `--only-failed REPORT.json`) re-runs just those.
- Chaining: `next_deployment="mail-migration/mail-migration-on-demand"` (plus
  `next_parameters`) starts that deployment with `run_deployment` when the batch ends. The
  same can be done without code by a Prefect automation: trigger on event
  `prefect.flow-run.Completed` for flow `mail-migration-batch`, action "run deployment".
- Passwords are Prefect Secret blocks or ImapAccount blocks, loaded inside tasks; parameters
  carry only their names.
"""

from __future__ import annotations

import contextvars
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from headwater.errors import HeadwaterError, InputError
from headwater.storage import get_store, run_key
from tasks import imap_core
from tasks.imap import (
    AccountRef,
    create_folders,
    ensure_host_limits,
    is_transient,
    list_folders,
    plan_mailbox,
    sync_folders,
)
from tasks.imap_core import SyncOptions
from tasks.storage import Progress, artifact_key, publish_table

CAPABILITY = "mail-migration"


class MailMigrationParams(BaseModel):
    """One mailbox pair to migrate."""

    source: AccountRef = Field(description="Source mailbox (block or address + secret name).")
    dest: AccountRef = Field(description="Destination mailbox (block or address + secret name).")
    options: SyncOptions = Field(default_factory=SyncOptions, description="What and how to copy.")
    mailbox: str | None = Field(default=None, description="Label of the pair in reports.")
    engine: Literal["python", "imapsync"] = Field(
        default="python", description="Built-in engine, or imapsync when it is on PATH."
    )
    parallel_folders: int = Field(default=4, ge=1, le=32, description="Folders synced at once.")
    use_global_limits: bool = Field(
        default=True,
        description="Use Prefect global concurrency limits per host (else a local semaphore).",
    )

    @property
    def label(self) -> str:
        """The mailbox label used in reports and artifact keys."""
        return self.mailbox or f"{self.source.label} -> {self.dest.label}"


class MailMigrationFailed(HeadwaterError):
    """A mailbox did not finish; `transient` says whether a retry may help."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (str(self), self.transient))


def _totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("source_count", "dest_before", "dest_after", "copied", "skipped", "failed", "bytes")
    return {k: sum(int(r.get(k, 0)) for r in rows) for k in keys}


@flow(
    name="mail-migration",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
    log_prints=False,
)
def mail_migration(params: MailMigrationParams) -> dict[str, Any]:
    """Migrate one mailbox: list, create folders, sync each folder, verify, report."""
    logger = get_run_logger()
    opts = params.options
    if opts.delete2 and not opts.confirm_delete2:
        raise InputError("options.delete2 deletes destination messages: set confirm_delete2 too")
    label = params.label
    logger.info("mail-migration %s (engine %s, dry run %s)", label, params.engine, opts.dry_run)

    if params.engine == "imapsync":
        from tasks.imapsync_engine import run_imapsync

        rows = run_imapsync(params.source, params.dest, opts)
    else:
        limits = ensure_host_limits.submit(params.source, params.dest)
        src_future = list_folders.submit(params.source)
        dst_future = list_folders.submit(params.dest)
        source_folders = src_future.result()
        plans = plan_mailbox(source_folders, dst_future.result(), opts)
        sizes = {f["name"]: f.get("messages", 0) for f in source_folders}
        missing = sorted({p.dest for p in plans if not p.dest_exists})
        if missing and not opts.dry_run:
            create_folders(params.dest, missing)
        limits.result()  # the per-host limits exist before any copy starts
        groups = imap_core.pack_groups(
            imap_core.group_by_dest(plans), sizes, params.parallel_folders
        )
        progress = Progress(
            total=len(groups),
            key=artifact_key(f"mail-migration-progress-{label}"),
            description=f"Folder batches of {label} synced",
        )
        futures = {
            sync_folders.submit(
                params.source,
                params.dest,
                [p.to_dict() for p in group],
                opts,
                params.use_global_limits,
            ): group
            for group in groups
        }
        rows = []
        for future in as_completed(list(futures)):
            group = futures[future]
            try:
                rows.extend(future.result())
            except Exception as exc:
                for plan in group:
                    rows.append(
                        imap_core.FolderReport(
                            plan.source,
                            plan.dest,
                            status="failed",
                            reason=f"{type(exc).__name__}: {str(exc)[:300]}",
                        ).to_dict()
                        | {"transient": is_transient(exc)}
                    )
            progress.advance(1)
        progress.finish()

    for row in rows:
        row["mailbox"] = label
        row.pop("failures", None)
    rows.sort(key=lambda r: r["source_folder"])
    failed = [r for r in rows if r["status"] == "failed"]
    report = {
        "mailbox": label,
        "status": "failed" if failed else ("dry-run" if opts.dry_run else "ok"),
        "engine": params.engine,
        "totals": _totals(rows),
        "folders": rows,
    }
    publish_table(
        [{k: v for k, v in r.items() if k != "transient"} for r in rows],
        key=f"mail-migration-{label}",
        description=f"Mailbox {label}: per-folder counts",
    )
    try:
        get_store().put_bytes(
            run_key(CAPABILITY, artifact_key(label), "report.json"),
            json.dumps(report, default=str, indent=1).encode(),
        )
    except Exception as exc:
        logger.warning("could not store the report: %s", type(exc).__name__)
    logger.info("mail-migration %s: %s %s", label, report["status"], report["totals"])
    if failed:
        transient = all(r.get("transient") for r in failed)
        reasons = "; ".join(f"{r['source_folder']}: {r['reason']}" for r in failed[:3])
        raise MailMigrationFailed(f"{label}: {len(failed)} folder(s) failed: {reasons}", transient)
    return report


# --- batch ----------------------------------------------------------------------------------------


class MailboxJob(BaseModel):
    """One line of a batch: a named pair of accounts."""

    name: str = Field(description="Label of the mailbox pair (unique in the batch).")
    source: AccountRef
    dest: AccountRef


class MailMigrationBatchParams(BaseModel):
    """Many mailbox pairs with shared options, retries and an optional chained deployment."""

    jobs: list[MailboxJob] = Field(description="Mailbox pairs to migrate.")
    options: SyncOptions = Field(default_factory=SyncOptions)
    only: list[str] | None = Field(
        default=None, description="Run only these job names (e.g. the failed ones of a report)."
    )
    parallel_mailboxes: int = Field(default=2, ge=1, le=16, description="Mailboxes at once.")
    retries: int = Field(default=2, ge=0, le=10, description="Retries of a transient failure.")
    retry_delay_seconds: float = Field(
        default=5.0, ge=0, description="First retry delay; doubles each attempt."
    )
    use_global_limits: bool = Field(default=True)
    next_deployment: str | None = Field(
        default=None,
        description="Deployment ('flow-name/deployment-name') started when this batch ends.",
    )
    next_parameters: dict[str, Any] = Field(
        default_factory=dict, description="Parameters for the chained deployment."
    )
    chain_on_failure: bool = Field(
        default=False, description="Also start the chained deployment when mailboxes failed."
    )


def _run_job(job: MailboxJob, params: MailMigrationBatchParams) -> dict[str, Any]:
    """Run one mailbox subflow, retrying transient failures with exponential backoff."""
    logger = get_run_logger()
    child = MailMigrationParams(
        source=job.source,
        dest=job.dest,
        options=params.options,
        mailbox=job.name,
        use_global_limits=params.use_global_limits,
    )
    attempt = 0
    while True:
        attempt += 1
        state = mail_migration(child, return_state=True)
        if state.is_completed():
            report = state.result()
            return {
                "mailbox": job.name,
                "status": report["status"],
                "attempts": attempt,
                "reason": "",
                **report["totals"],
            }
        exc = state.result(raise_on_failure=False)
        transient = (
            exc.transient
            if isinstance(exc, MailMigrationFailed)
            else is_transient(exc)
            if isinstance(exc, BaseException)
            else False
        )
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        if transient and attempt <= params.retries:
            delay = params.retry_delay_seconds * 2 ** (attempt - 1)
            logger.warning("%s: transient failure (%s), retry in %.0fs", job.name, reason, delay)
            time.sleep(delay)
            continue
        logger.error("%s: failed permanently after %d attempt(s): %s", job.name, attempt, reason)
        return {
            "mailbox": job.name,
            "status": "failed",
            "attempts": attempt,
            "reason": reason,
            "transient": transient,
        }


@flow(name="mail-migration-batch")
def mail_migration_batch(params: MailMigrationBatchParams) -> dict[str, Any]:
    """Migrate many mailboxes under concurrency limits; list failures; chain the next job."""
    logger = get_run_logger()
    names = [j.name for j in params.jobs]
    if len(set(names)) != len(names):
        raise InputError("jobs: mailbox names must be unique in a batch")
    jobs = [j for j in params.jobs if params.only is None or j.name in params.only]
    logger.info("mail-migration-batch: %d of %d mailboxes", len(jobs), len(params.jobs))
    progress = Progress(
        total=len(jobs), key="mail-migration-batch-progress", description="Mailboxes finished"
    )
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=params.parallel_mailboxes) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, _run_job, job, params) for job in jobs
        ]
        for future in futures:
            rows.append(future.result())
            progress.advance(1)
    progress.finish()
    failed = [r["mailbox"] for r in rows if r["status"] == "failed"]
    report = {
        "status": "failed" if failed else "ok",
        "mailboxes": rows,
        "failed": failed,
        "totals": _totals([r for r in rows if r["status"] != "failed"]),
    }
    publish_table(
        [{k: v for k, v in r.items() if k != "transient"} for r in rows],
        key="mail-migration-batch",
        description=f"{len(rows)} mailboxes, {len(failed)} failed",
    )
    try:
        get_store().put_bytes(
            run_key(CAPABILITY, "batch-report.json"), json.dumps(report, indent=1).encode()
        )
    except Exception as exc:
        logger.warning("could not store the batch report: %s", type(exc).__name__)
    if params.next_deployment and (not failed or params.chain_on_failure):
        report["chained_flow_run"] = start_next(params.next_deployment, params.next_parameters)
    logger.info(
        "mail-migration-batch: %d ok, %d failed %s", len(rows) - len(failed), len(failed), failed
    )
    return report


def start_next(deployment: str, parameters: dict[str, Any]) -> str:
    """Chain: start the next deployment without waiting for it; return its flow run id."""
    from prefect.deployments import run_deployment

    run: Any = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False)
    get_run_logger().info("chained %s: flow run %s", deployment, run.id)
    return str(run.id)
