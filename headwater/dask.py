"""The Dask task runner (prefect-dask) for fan-out inside a flow: a local cluster or a scheduler.

Flows keep their default task runner; scale-out is configuration:

    from headwater.dask import with_dask
    with_dask(image_pipeline, address="tcp://scheduler:8786")(params)

or a deployment whose entrypoint is a `with_dask(...)` variant (see `deployments/dask_flows.py`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from headwater.settings import Settings, get_settings

F = TypeVar("F")

#: A small local cluster: worker processes (image transforms and row batches hold the GIL).
LOCAL_CLUSTER = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "dashboard_address": None,
}


def dask_address(settings: Settings | None = None) -> str | None:
    """The Dask scheduler address (`HEADWATER_DASK_ADDRESS`), or None for a local cluster."""
    settings = settings or get_settings()
    address = getattr(settings, "dask_address", None)
    return str(address) if address else None


def dask_task_runner(
    address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    settings: Settings | None = None,
) -> Any:
    """A `DaskTaskRunner` on the scheduler at `address`, else on a temporary local cluster.

    Args:
        address: Scheduler address such as ``tcp://10.0.0.5:8786``; default the setting, and
            without one a `distributed.LocalCluster` started for the flow run and closed after.
        n_workers: Worker processes of the local cluster (ignored with an address).
        threads_per_worker: Threads per local worker (ignored with an address).
        settings: Settings to read the address from; default the process settings.

    Returns:
        A `prefect_dask.DaskTaskRunner`.
    """
    from prefect_dask import DaskTaskRunner

    address = address or dask_address(settings)
    if address:
        return DaskTaskRunner(address=address)
    kwargs = dict(LOCAL_CLUSTER)
    if n_workers is not None:
        kwargs["n_workers"] = n_workers
    if threads_per_worker is not None:
        kwargs["threads_per_worker"] = threads_per_worker
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)


def with_dask(flow: F, address: str | None = None, **cluster: Any) -> F:
    """A copy of `flow` (same name) whose tasks run on Dask; see `dask_task_runner`."""
    runner = dask_task_runner(address, **cluster)
    return flow.with_options(task_runner=runner)  # type: ignore[attr-defined, no-any-return]
