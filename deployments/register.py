"""Register the declared work pools and deployments against the configured Prefect server."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from deployments.definitions import (
    DEPLOYMENTS,
    DOCKER_POOL,
    IMAGE_WORKDIR,
    PROJECT_ROOT,
    TIMEZONE,
    WORK_POOLS,
    DeploymentSpec,
    WorkPoolSpec,
)


@dataclass
class Registered:
    """Outcome of registering one deployment."""

    full_name: str
    id: UUID | None
    skipped: str | None = None


def base_job_template(spec: WorkPoolSpec) -> dict[str, Any]:
    """The worker type's default job template with the pool's defaults filled in."""
    if spec.type == "docker":
        from prefect_docker.worker import DockerWorker

        template = DockerWorker.get_default_base_job_template()
    else:
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
    props = template["variables"]["properties"]
    for key, value in spec.job_defaults.items():
        props[key]["default"] = value
    return template


def ensure_work_pools(names: list[str] | None = None) -> list[str]:
    """Create or update the declared work pools (idempotent); return their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    done = []
    with get_client(sync_client=True) as client:
        for spec in WORK_POOLS:
            if names and spec.name not in names:
                continue
            client.create_work_pool(
                WorkPoolCreate(
                    name=spec.name,
                    type=spec.type,
                    description=spec.description,
                    base_job_template=base_job_template(spec),
                ),
                overwrite=True,
            )
            done.append(spec.name)
    return done


def load_flow(entrypoint: str) -> Any:
    """Load the flow at `entrypoint` (relative to the project root), failing loudly.

    Prefect's own loader substitutes a placeholder flow when the module fails to import;
    this one raises instead, so a broken capability is never deployed silently.
    """
    from prefect.flows import load_flow_from_entrypoint

    root = str(PROJECT_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    path, func = entrypoint.rsplit(":", 1)
    return load_flow_from_entrypoint(f"{PROJECT_ROOT / path}:{func}", use_placeholder_flow=False)


def _schedules(spec: DeploymentSpec) -> list[Any]:
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    if spec.interval is not None:
        return [
            DeploymentScheduleCreate(schedule=IntervalSchedule(interval=spec.interval), active=True)
        ]
    if spec.cron is not None:
        return [
            DeploymentScheduleCreate(
                schedule=CronSchedule(cron=spec.cron, timezone=TIMEZONE), active=True
            )
        ]
    return []


def pull_steps(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """Where the worker finds the code: this checkout, or the project folder in the image."""
    directory = IMAGE_WORKDIR if spec.pool == DOCKER_POOL else str(PROJECT_ROOT)
    return [{"prefect.deployments.steps.set_working_directory": {"directory": directory}}]


def register_deployment(spec: DeploymentSpec, flow: Any | None = None) -> UUID:
    """Upsert one deployment (by flow name and deployment name); return its id."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    flow = flow or load_flow(spec.entrypoint)
    if flow.name != spec.flow_name:
        raise ValueError(
            f"{spec.entrypoint} defines flow {flow.name!r}, expected {spec.flow_name!r}"
        )
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow.name)
        deployment_id: UUID = client.create_deployment(
            flow_id=flow_id,
            name=spec.name,
            description=spec.description,
            entrypoint=spec.entrypoint,
            path=None,
            pull_steps=pull_steps(spec),
            parameters=spec.parameters,
            parameter_openapi_schema=parameter_schema(flow).model_dump(exclude_unset=True),
            enforce_parameter_schema=True,
            work_pool_name=spec.pool,
            job_variables={},
            schedules=_schedules(spec),
            paused=spec.paused,
            tags=["headwater", spec.capability, *spec.tags],
        )
    return deployment_id


def available(spec: DeploymentSpec) -> str | None:
    """None when the spec's flow module exists, else why it is skipped."""
    for path in (spec.module_path, *(PROJECT_ROOT / r for r in spec.requires)):
        if not path.is_file():
            return f"{path.relative_to(PROJECT_ROOT)} does not exist yet"
    return None


def register_all(
    names: list[str] | None = None, pools: bool = True, strict: bool = False
) -> list[Registered]:
    """Register the work pools and every available deployment (or only `names`).

    Args:
        names: Deployment names (`flow/deployment` or `deployment`); default all.
        pools: Also create or update the work pools.
        strict: Raise when a flow module exists but fails to load (default: report and go on).
    """
    if pools:
        ensure_work_pools()
    out: list[Registered] = []
    for spec in DEPLOYMENTS:
        if names and spec.full_name not in names and spec.name not in names:
            continue
        reason = available(spec)
        if reason is None:
            try:
                out.append(Registered(spec.full_name, register_deployment(spec)))
                continue
            except Exception as exc:
                if strict:
                    raise
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        out.append(Registered(spec.full_name, None, skipped=reason))
    return out


def project_env() -> dict[str, str]:
    """Environment for a subprocess that loads entrypoints from the project root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(PROJECT_ROOT), env.get("PYTHONPATH", "")] if p
    )
    return env
