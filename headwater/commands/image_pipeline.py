"""CLI commands of the image-pipeline capability (added to `headwater run`)."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from pydantic import ValidationError

from headwater.commands.run import app
from headwater.errors import InputError


@app.command("image-pipeline")
def image_pipeline_command(
    catalog: str = typer.Option(
        ..., "--catalog", help="Catalogue CSV/Parquet: path, s3://bucket/key or store key."
    ),
    images: str = typer.Option(
        ..., "--images", help="Image folder, s3://bucket/prefix or store prefix."
    ),
    path_template: str = typer.Option(
        "{id}.jpg", "--path-template", help="Image path from columns."
    ),
    filter_: str | None = typer.Option(
        None, "--filter", help='e.g. gender == "Women" and year >= 2012'
    ),
    op: list[str] = typer.Option(
        ["resize:256x256", "format:webp"],
        "--op",
        help="Operation (repeatable): resize:WxH, format:webp ...",
    ),
    features: bool = typer.Option(False, "--features", help="Perceptual hash + dominant colour."),
    limit: int | None = typer.Option(None, "--limit", help="At most N selected images."),
    sample: int | None = typer.Option(None, "--sample", help="Random sample of N selected images."),
    chunk_size: int = typer.Option(1000, "--chunk-size", help="Images per task."),
    shard_size: int | None = typer.Option(
        None, "--shard-size", help="Write tar shards of N images."
    ),
    max_pixels: int | None = typer.Option(
        None, "--max-pixels", help="Decompression-bomb pixel limit."
    ),
    out: str | None = typer.Option(None, "--out", help="Output root; default the artifact store."),
    run_id: str | None = typer.Option(None, "--run-id", help="Run id; reuse it to resume a run."),
    workers: int | None = typer.Option(None, "--workers", help="Processes per chunk."),
    task_runner: str = typer.Option("default", "--task-runner", help="default or dask."),
    dask_address: str | None = typer.Option(
        None, "--dask-address", help="Existing Dask scheduler."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Filter a catalogue and transform the selected images in chunks (images + manifest)."""
    from flows.image_pipeline import ImagePipelineParams, image_pipeline

    fields: dict[str, Any] = {
        "catalog": catalog,
        "images": images,
        "path_template": path_template,
        "filter": filter_,
        "operations": op,
        "features": features,
        "limit": limit,
        "sample": sample,
        "chunk_size": chunk_size,
        "shard_size": shard_size,
        "out": out,
        "run_id": run_id,
        "workers": workers,
        "task_runner": task_runner,
        "dask_address": dask_address,
    }
    if max_pixels is not None:
        fields["max_pixels"] = max_pixels
    try:
        params = ImagePipelineParams(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"--{where.replace('_', '-')}: {first['msg']}") from None
    summary = image_pipeline(params)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return
    if summary.get("empty"):
        typer.echo("The filter selected no images: wrote an empty manifest.")
    typer.echo(
        f"run {summary['run_id']}: {summary['selected']} selected, "
        f"{summary['processed']} processed, "
        f"{summary['errors']} errors -> {summary['location']}"
    )
    if summary.get("malformed_lines"):
        typer.echo(f"malformed catalogue lines: {', '.join(map(str, summary['malformed_lines']))}")
    if summary.get("colour_agreement") is not None:
        typer.echo(
            f"colour agreement: {summary['colour_agreement']:.1%} of {summary['colour_checked']}"
        )
