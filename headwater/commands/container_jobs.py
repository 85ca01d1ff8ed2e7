"""CLI commands of the container-jobs capability (added to `headwater run`)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import typer

from headwater.commands.run import app
from headwater.errors import InputError
from headwater.settings import get_settings

UPLOADS = "container-jobs/uploads"


def _upload(store: Any, value: str) -> str:
    """A local file is uploaded (content-addressed key); anything else must be a store key."""
    from tasks.tool_registry import safe_input_name

    path = Path(value)
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        key = f"{UPLOADS}/{digest}/{safe_input_name(path.name)}"
        if not store.exists(key):
            store.put_file(key, path)
        return key
    from headwater.storage import validate_key

    if path.exists():
        raise InputError(f"input {value}: not a regular file")
    if store.exists(validate_key(value)):
        return value
    raise InputError(f"input {value}: no such file, nor an artifact key in {store.describe()}")


def _split_inputs(values: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """`--input` values: plain paths, or `slot=path` to name the slot."""
    plain: list[str] = []
    named: dict[str, list[str]] = {}
    for value in values:
        slot, sep, rest = value.partition("=")
        if sep and slot.replace("_", "").replace("-", "").isalnum() and not Path(value).exists():
            named.setdefault(slot, []).append(rest)
        else:
            plain.append(value)
    return plain, named


def _finish(state: Any, as_json: bool) -> None:
    from tasks.containers import load_records

    run_id = str(state.state_details.flow_run_id)
    records = load_records(get_settings(), run_id)
    out = {
        "flow_run_id": run_id,
        "state": state.type.value,
        "message": state.message,
        "records": records,
    }
    if as_json:
        typer.echo(json.dumps(out, default=str))
    else:
        for r in records:
            typer.echo(f"{r['step']} {r['label']}: {r['status']} ({r['message']})")
            for key in r["outputs"]:
                typer.echo(f"  {key}")
        typer.echo(f"{state.type.value}: {state.message}", err=True)
    if not state.is_completed():
        raise typer.Exit(1)


def _preflight(tools: list[str], tool_dirs: list[str]) -> None:
    """Fail before uploading anything when an image is missing."""
    from tasks.containers import docker_client, image_id
    from tasks.tool_registry import get_tool

    client = docker_client(get_settings())
    try:
        for name in tools:
            image_id(client, get_tool(name, tool_dirs))
    finally:
        client.close()


@app.command("container-job")
def container_job_cmd(
    tool: str = typer.Option(..., "--tool", help="Registered tool (`headwater tools list`)."),
    inputs: list[str] = typer.Option(
        [], "--input", help="Local file or artifact key; repeat; `slot=PATH` names the slot."
    ),
    params: list[str] = typer.Option([], "--param", help="Tool parameter NAME=VALUE; repeat."),
    concurrency: int = typer.Option(4, help="Containers at a time when fanning out."),
    reuse: bool = typer.Option(False, help="Reuse completed identical calculations."),
    split: bool = typer.Option(False, help="Split SDF inputs: one job per molecule."),
    tool_dir: list[str] = typer.Option([], help="Extra folder of tool specs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the records."),
) -> None:
    """Run one tool in a container on the inputs (one container per input file)."""
    from flows.container_jobs import ContainerJobRequest, container_job
    from headwater.storage import get_store
    from tasks.tool_registry import assign_inputs, get_tool, parse_param_args, validate_params

    plain, named = _split_inputs(inputs)
    given = parse_param_args(params)
    spec = get_tool(tool, tool_dir)  # unknown tool, bad params: rejected before any upload
    validate_params(spec, given)
    assign_inputs(spec, named or plain)
    if named and plain:
        raise InputError("--input: mix of plain paths and slot=PATH; name every slot")
    _preflight([tool], tool_dir)
    store = get_store(get_settings())
    keys: dict[str, list[str]] | list[str]
    if named:
        keys = {slot: [_upload(store, v) for v in vals] for slot, vals in named.items()}
    else:
        keys = [_upload(store, v) for v in plain]
    request = ContainerJobRequest(
        tool=tool,
        inputs=keys,
        params=given,
        concurrency=concurrency,
        reuse=reuse,
        split=split,
        tool_dirs=tool_dir,
    )
    _finish(container_job(request, return_state=True), as_json)


@app.command("pipeline")
def pipeline_cmd(
    file: Path = typer.Argument(..., help="Pipeline YAML (e.g. examples/pipelines/dock.yaml)."),
    inputs: list[str] = typer.Option(
        [], "--input", help="NAME=PATH (or plain PATHs in the pipeline's input order); repeat."
    ),
    concurrency: int = typer.Option(4, help="Containers at a time."),
    reuse: bool = typer.Option(True, help="Reuse completed steps (same tool, params, inputs)."),
    tool_dir: list[str] = typer.Option([], help="Extra folder of tool specs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the records."),
) -> None:
    """Run a pipeline of tools; each step's outputs feed the next."""
    from flows.container_jobs import PipelineRequest, load_pipeline, tool_pipeline
    from headwater.storage import get_store
    from tasks.tool_registry import get_tool, validate_params

    pipe = load_pipeline(file)
    plain, named = _split_inputs(inputs)
    if plain:
        if len(plain) > len(pipe.inputs) or named:
            raise InputError(f"--input: name the inputs as NAME=PATH ({', '.join(pipe.inputs)})")
        for name, value in zip(pipe.inputs, plain, strict=False):
            named.setdefault(name, []).append(value)
    unknown = sorted(set(named) - set(pipe.inputs))
    missing = [n for n in pipe.inputs if n not in named]
    if unknown or missing:
        raise InputError(
            f"pipeline {pipe.name} takes inputs {', '.join(pipe.inputs)}; "
            f"unknown: {', '.join(unknown) or '-'}, missing: {', '.join(missing) or '-'}"
        )
    for step in pipe.steps:
        validate_params(get_tool(step.tool, tool_dir), step.params)
    _preflight(sorted({s.tool for s in pipe.steps}), tool_dir)
    store = get_store(get_settings())
    keys = {name: [_upload(store, v) for v in vals] for name, vals in named.items()}
    request = PipelineRequest(
        pipeline=pipe, inputs=keys, concurrency=concurrency, reuse=reuse, tool_dirs=tool_dir
    )
    print(f"pipeline {pipe.name}: {len(pipe.steps)} step(s)", file=sys.stderr)
    _finish(tool_pipeline(request, return_state=True), as_json)
