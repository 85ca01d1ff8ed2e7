"""Catalogue-driven image processing: filter a catalogue, transform the selected images."""

from __future__ import annotations

from itertools import islice
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field, field_validator

from tasks.catalog_filter import parse_filter  # noqa: F401 - re-exported for callers
from tasks.image_io import pool_scope
from tasks.image_ops import DEFAULT_MAX_PIXELS, parse_operations
from tasks.images import process_image_chunk, select_images, write_image_manifest
from tasks.storage import Progress, artifact_key


class ImagePipelineParams(BaseModel):
    """Parameters of an image-pipeline run (the Prefect UI renders them as a form)."""

    catalog: str = Field(
        description="Catalogue CSV or Parquet: local path, s3://bucket/key, or an S3 store key."
    )
    images: str = Field(
        description="Image source: local folder, s3://bucket/prefix, or an S3 store prefix."
    )
    path_template: str = Field(
        default="{id}.jpg", description="Image path under the source, from catalogue columns."
    )
    id_column: str = Field(
        default="id", description="Catalogue column naming each image (output file names)."
    )
    filter: str | None = Field(
        default=None, description='Boolean expression, e.g. gender == "Women" and year >= 2012.'
    )
    operations: list[str] = Field(
        default_factory=lambda: ["resize:256x256", "format:webp"],
        description="Operations in order: resize:WxH, thumbnail:WxH, pad[:N], crop[:N], "
        "grayscale, format:jpeg|webp|png[:Q], quality:Q.",
    )
    features: bool = Field(
        default=False, description="Compute perceptual hashes and dominant-colour predictions."
    )
    limit: int | None = Field(
        default=None, ge=0, description="Process at most this many selected images."
    )
    sample: int | None = Field(
        default=None, ge=0, description="Random sample of this many selected images (seeded)."
    )
    seed: int = Field(default=0, description="Seed of the sample.")
    chunk_size: int = Field(default=1000, ge=1, le=100_000, description="Images per task.")
    shard_size: int | None = Field(
        default=None, ge=1, description="Write tar shards of N images instead of single files."
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1, description="Decompression-bomb limit (pixels per image)."
    )
    out: str | None = Field(
        default=None,
        description="Output root (local folder or s3://bucket/prefix); default the artifact store.",
    )
    run_id: str | None = Field(
        default=None,
        description="Run id (output prefix); reuse it to resume a run. Default: the flow run id.",
    )
    workers: int | None = Field(
        default=None, ge=0, description="Processes per chunk; default the CPUs available."
    )
    concurrency: int = Field(
        default=2, ge=1, le=64, description="Chunks in flight at once with the default runner."
    )
    task_runner: Literal["default", "dask"] = Field(
        default="default", description="Run chunks on the flow's runner or on Dask."
    )
    dask_address: str | None = Field(
        default=None,
        description="Existing Dask scheduler (tcp://host:8786); default a local cluster.",
    )

    @field_validator("operations")
    @classmethod
    def _check_operations(cls, value: list[str]) -> list[str]:
        parse_operations(value)
        return value

    @field_validator("run_id")
    @classmethod
    def _check_run_id(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or not all(c.isalnum() or c in "-_." for c in value) or value in (".", "..")
        ):
            raise ValueError("run id may contain only letters, digits, '-', '_' and '.'")
        return value


def dask_runner(address: str | None = None) -> TaskRunner:
    """A prefect-dask runner: the given scheduler, else a local cluster of single-thread workers."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True}
    )


def _run_chunks(
    params: dict[str, Any], run_id: str, chunks: int, vocabulary: list[str], window: int
) -> list[dict[str, Any]]:
    """Run the chunk tasks, at most `window` in flight (the next one starts as one finishes)."""
    progress = Progress(
        chunks,
        key=artifact_key(f"image-pipeline-progress-{run_id}"),
        description=f"chunks of run {run_id}",
    )
    pending = iter(range(chunks))
    in_flight = [
        process_image_chunk.submit(params, run_id, i, vocabulary) for i in islice(pending, window)
    ]
    results: list[dict[str, Any]] = []
    while in_flight:
        done = next(as_completed(in_flight))
        in_flight.remove(done)
        results.append(done.result())
        progress.advance(1)
        for i in islice(pending, 1):
            in_flight.append(process_image_chunk.submit(params, run_id, i, vocabulary))
    progress.finish()
    return sorted(results, key=lambda r: r["chunk"])


@flow(name="image-pipeline-chunks")
def process_image_chunks(
    params: dict[str, Any], run_id: str, chunks: int, vocabulary: list[str]
) -> list[dict[str, Any]]:
    """Fan the chunk tasks out on this subflow's task runner (Dask when asked for)."""
    return _run_chunks(params, run_id, chunks, vocabulary, window=chunks)


# threads for up to `concurrency` (<= 64) chunk tasks; the chunks share one process pool
@flow(name="image-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=64))  # type: ignore[arg-type]
def image_pipeline(params: ImagePipelineParams) -> dict[str, Any]:
    """Select images from a catalogue, transform them in chunks, write images and a manifest."""
    logger = get_run_logger()
    run_id = params.run_id or flow_run.get_id() or "local"
    spec = params.model_dump()
    plan = select_images(spec, run_id)
    chunk_results: list[dict[str, Any]] = []
    if plan["chunks"] and params.task_runner == "dask":
        runner = dask_runner(params.dask_address)
        chunk_results = process_image_chunks.with_options(task_runner=runner)(  # type: ignore[arg-type]
            spec, run_id, plan["chunks"], plan["vocabulary"]
        )
    elif plan["chunks"]:
        with pool_scope():  # one process pool for the whole run, shared by the chunks in flight
            chunk_results = _run_chunks(
                spec, run_id, plan["chunks"], plan["vocabulary"], window=params.concurrency
            )
    summary = write_image_manifest(spec, run_id, plan)
    summary["chunks_skipped"] = sum(1 for r in chunk_results if r["skipped"])
    summary["chunks_processed"] = sum(1 for r in chunk_results if not r["skipped"])
    logger.info(
        "image-pipeline %s: %d selected, %d processed, %d errors (%d chunks resumed)",
        run_id,
        summary["selected"],
        summary["processed"],
        summary["errors"],
        summary["chunks_skipped"],
    )
    return summary


def build_flow(runner: TaskRunner | None = None) -> Any:
    """The image-pipeline flow with another task runner (e.g. `DaskTaskRunner(address=...)`)."""
    return image_pipeline if runner is None else image_pipeline.with_options(task_runner=runner)  # type: ignore[arg-type]
