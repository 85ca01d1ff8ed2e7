"""Every Headwater deployment, schedule and work pool, declared in one place.

`headwater deploy` registers them (idempotently: deployments are upserted by flow and name,
work pools are created or updated). Entrypoints are file paths relative to the project root,
so a process worker runs them from a checkout and a Docker worker from the project image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

#: Root of the project checkout (entrypoints are relative to it).
PROJECT_ROOT = Path(__file__).resolve().parent.parent

PROCESS_POOL = "headwater-process"
DOCKER_POOL = "headwater-docker"
#: The project image built locally by `headwater image build` (no registry: never pulled).
PROJECT_IMAGE = "headwater:dev"
#: Where the Dockerfile puts the project inside the image.
IMAGE_WORKDIR = "/opt/headwater"
#: Time zone of the cron schedules.
TIMEZONE = "UTC"


@dataclass(frozen=True)
class WorkPoolSpec:
    """A work pool: its type and the defaults it gives every flow run's job."""

    name: str
    type: str
    description: str
    job_defaults: dict[str, Any] = field(default_factory=dict)


WORK_POOLS: tuple[WorkPoolSpec, ...] = (
    WorkPoolSpec(
        name=PROCESS_POOL,
        type="process",
        description="Runs flows as subprocesses of the worker, on one machine, from a checkout.",
    ),
    WorkPoolSpec(
        name=DOCKER_POOL,
        type="docker",
        description="Runs each flow in its own container of the project image headwater:dev.",
        job_defaults={
            "image": PROJECT_IMAGE,
            "image_pull_policy": "Never",
            "network_mode": "host",
            "auto_remove": True,
        },
    ),
)


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow, where it runs, when, and with which default parameters."""

    name: str
    flow_name: str
    entrypoint: str
    description: str
    capability: str
    parameters: dict[str, Any] = field(default_factory=dict)
    interval: timedelta | None = None
    cron: str | None = None
    #: A paused deployment keeps its schedule but creates no runs until resumed.
    paused: bool = False
    pool: str = PROCESS_POOL
    tags: tuple[str, ...] = ()
    #: Further source files the entrypoint imports (a deployment waits until they exist).
    requires: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        """`<flow-name>/<deployment-name>`, as the REST API and `run_deployment` address it."""
        return f"{self.flow_name}/{self.name}"

    @property
    def module_path(self) -> Path:
        """The flow's source file."""
        return PROJECT_ROOT / self.entrypoint.rsplit(":", 1)[0]

    @property
    def scheduled(self) -> bool:
        """True when the deployment has a schedule (interval or cron)."""
        return self.interval is not None or self.cron is not None


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="smoke-on-demand",
        flow_name="smoke",
        entrypoint="flows/smoke.py:smoke",
        capability="smoke",
        description="Write one marker object to the artifact store (platform check).",
    ),
    DeploymentSpec(
        name="smoke-docker",
        flow_name="smoke",
        entrypoint="flows/smoke.py:smoke",
        capability="smoke",
        description="The smoke flow in a container of the project image (Docker work pool).",
        pool=DOCKER_POOL,
    ),
    # --- relational -> document migration ------------------------------------------------------
    DeploymentSpec(
        name="db-migration-on-demand",
        flow_name="db-migration",
        entrypoint="flows/db_migration.py:db_migration",
        capability="db-migration",
        description="Migrate a SQL database into MongoDB (full copy, then verify).",
    ),
    DeploymentSpec(
        name="db-migration-hourly",
        flow_name="db-migration",
        entrypoint="flows/db_migration.py:db_migration",
        capability="db-migration",
        description="Incremental sync of the SQL source into MongoDB, hourly (off by default).",
        parameters={
            "params": {
                "source_block": "local-postgres",
                "target_block": "local-mongo",
                "mode": "incremental",
            }
        },
        cron="0 * * * *",
        paused=True,
    ),
    # --- leak detection --------------------------------------------------------------------------
    DeploymentSpec(
        name="leak-detection-every-10m",
        flow_name="leak-detection",
        entrypoint="flows/leak_detection.py:leak_detection",
        capability="leak-detection",
        description="Ingest new readings, score them against the baseline, raise/close alerts.",
        interval=timedelta(minutes=10),
    ),
    DeploymentSpec(
        name="leak-detection-on-demand",
        flow_name="leak-detection",
        entrypoint="flows/leak_detection.py:leak_detection",
        capability="leak-detection",
        description="One leak-detection pass now.",
    ),
    DeploymentSpec(
        name="leak-baseline-augment-daily",
        flow_name="leak-baseline-augment",
        entrypoint="flows/leak_detection.py:leak_baseline_augment",
        capability="leak-detection",
        description="Augment each sensor's baseline with recent data judged normal (03:00 UTC).",
        cron="0 3 * * *",
    ),
    # --- containerised tools ---------------------------------------------------------------------
    DeploymentSpec(
        name="container-job-on-demand",
        flow_name="container-job",
        entrypoint="flows/container_jobs.py:container_job",
        capability="container-job",
        description="Run a registered tool image on input files and record the calculation.",
    ),
    DeploymentSpec(
        name="tool-pipeline-on-demand",
        flow_name="tool-pipeline",
        entrypoint="flows/container_jobs.py:tool_pipeline",
        capability="container-job",
        description="Chain registered tools into a pipeline.",
    ),
    # --- image processing ------------------------------------------------------------------------
    DeploymentSpec(
        name="image-pipeline-on-demand",
        flow_name="image-pipeline",
        entrypoint="flows/image_pipeline.py:image_pipeline",
        capability="image-pipeline",
        description="Filter a catalogue, transform the selected images in chunks, write manifests.",
    ),
    # --- mailbox migration -----------------------------------------------------------------------
    DeploymentSpec(
        name="mail-migration-on-demand",
        flow_name="mail-migration",
        entrypoint="flows/mail_migration.py:mail_migration",
        capability="mail-migration",
        description="Copy one IMAP mailbox between servers, without duplicates.",
    ),
    DeploymentSpec(
        name="mail-migration-nightly",
        flow_name="mail-migration",
        entrypoint="flows/mail_migration.py:mail_migration",
        capability="mail-migration",
        description="Nightly incremental re-sync of a mailbox (02:00 UTC).",
        parameters={
            "params": {
                "source": {"block": "local-source-alice"},
                "dest": {"block": "local-dest-alice"},
                "mailbox": "alice",
            }
        },
        cron="0 2 * * *",
    ),
    DeploymentSpec(
        name="mail-migration-batch-on-demand",
        flow_name="mail-migration-batch",
        entrypoint="flows/mail_migration.py:mail_migration_batch",
        capability="mail-migration",
        description="Migrate a queue of mailboxes, retrying and chaining.",
    ),
)


def get_deployment(full_name: str) -> DeploymentSpec:
    """The spec named `<flow>/<deployment>` or just `<deployment>`; KeyError when unknown."""
    for spec in DEPLOYMENTS:
        if full_name in (spec.full_name, spec.name):
            return spec
    raise KeyError(full_name)
