"""Run registered scientific tools in Docker containers, alone (fan-out) or chained in pipelines."""

from __future__ import annotations

import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field, field_validator, model_validator

from headwater.errors import InputError
from headwater.storage import validate_key
from tasks.containers import (
    SUCCESS,
    JobSpec,
    check_tool_images,
    run_job_batch,
    split_sdf_inputs,
)
from tasks.storage import Progress, artifact_key, publish_table
from tasks.tool_registry import (
    NAME_RE,
    assign_inputs,
    get_tool,
    safe_input_name,
    split_jobs,
    validate_params,
)


class ContainerJobRequest(BaseModel):
    """Parameters of the container-job flow (one tool, fanned out over its inputs)."""

    tool: str = Field(description="Registered tool name (`headwater tools list`).")
    inputs: dict[str, list[str]] | list[str] = Field(
        default_factory=list,
        description="Artifact-store keys: a list for the tool's first slot, or slot -> keys.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Tool parameters.")
    step: str | None = Field(default=None, description="Key folder of the outputs (default: tool).")
    concurrency: int = Field(default=4, ge=1, le=64, description="Containers at a time.")
    batch_size: int = Field(default=200, ge=1, le=5000, description="Jobs per Prefect task.")
    reuse: bool = Field(default=False, description="Reuse completed identical calculations.")
    split: bool = Field(
        default=False, description="Split SDF inputs of the first slot: one job per molecule."
    )
    tool_dirs: list[str] = Field(default_factory=list, description="Extra tool spec folders.")


class PipelineStep(BaseModel):
    """One pipeline step: a tool whose slots read pipeline inputs or earlier steps' outputs."""

    name: str = Field(description="Step name (kebab-case), also the outputs' key folder.")
    tool: str = Field(description="Registered tool name.")
    inputs: dict[str, str | list[str]] = Field(
        description="Slot -> source: a pipeline input, a step name, or `step:GLOB`."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Tool parameters.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"step name {value!r} must be kebab-case")
        return value


class Pipeline(BaseModel):
    """A pipeline definition (the YAML file)."""

    name: str = Field(description="Pipeline name.")
    version: str = Field(default="1", description="Definition version.")
    description: str = Field(default="", description="What the pipeline does.")
    inputs: list[str] = Field(description="Names of the pipeline's inputs.")
    steps: list[PipelineStep] = Field(min_length=1, description="Steps, in order.")

    @model_validator(mode="after")
    def _sources(self) -> Pipeline:
        known = set(self.inputs)
        for step in self.steps:
            if step.name in known:
                raise ValueError(f"step {step.name!r} reuses the name of an input or step")
            for slot, refs in step.inputs.items():
                for ref in [refs] if isinstance(refs, str) else refs:
                    if ref.split(":", 1)[0] not in known:
                        raise ValueError(
                            f"step {step.name}, input {slot}: {ref!r} "
                            "is not an input or earlier step"
                        )
            known.add(step.name)
        return self


class PipelineRequest(BaseModel):
    """Parameters of the tool-pipeline flow."""

    pipeline: Pipeline = Field(description="The pipeline definition (parsed YAML).")
    inputs: dict[str, list[str]] = Field(description="Pipeline input name -> artifact keys.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Containers at a time.")
    batch_size: int = Field(default=200, ge=1, le=5000, description="Jobs per Prefect task.")
    reuse: bool = Field(default=True, description="Reuse completed identical calculations.")
    tool_dirs: list[str] = Field(default_factory=list, description="Extra tool spec folders.")


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline YAML file."""
    path = Path(path)
    try:
        return Pipeline(**yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        raise InputError(f"pipeline {path}: {exc}") from None


def plan_jobs(
    tool: str,
    inputs: dict[str, list[str]] | list[str],
    params: dict[str, Any],
    tool_dirs: list[str],
    per_file: bool = False,
) -> list[JobSpec]:
    """Validate tool, parameters and inputs and split into jobs; raise before anything runs."""
    spec = get_tool(tool, tool_dirs)
    checked = validate_params(spec, params)
    slots = assign_inputs(spec, inputs)
    for keys in slots.values():
        for key in keys:
            validate_key(key)
            safe_input_name(PurePosixPath(key).name)
    jobs = split_jobs(spec, slots, per_file)
    labels = []
    for n, job in enumerate(jobs):
        first = next(iter(job.values()), [""])
        stem = PurePosixPath(first[0]).stem if first and first[0] else spec.name
        clean = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60].strip("._")
        labels.append(f"{n:05d}-{clean or 'job'}")
    return [
        JobSpec(label=label, tool=spec.name, params=checked, inputs=job)
        for label, job in zip(labels, jobs, strict=True)
    ]


def _run_jobs(
    jobs: list[JobSpec],
    step: str,
    concurrency: int,
    batch_size: int,
    reuse: bool,
    tool_dirs: list[str],
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    progress = Progress(len(jobs), key=artifact_key(f"{step}-progress"), description=f"step {step}")
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        records += run_job_batch(batch, step, concurrency, reuse, tool_dirs)
        progress.advance(len(batch))
    return records


def _summary(records: list[dict[str, Any]]) -> str:
    failed = [r for r in records if r["status"] not in SUCCESS]
    if not failed:
        return f"{len(records)} job(s) completed"
    first = "; ".join(f"{r['step']} {r['label']}: {r['message']}" for r in failed[:3])
    more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
    return f"{len(failed)} of {len(records)} job(s) failed: {first}{more}"


def _publish(records: list[dict[str, Any]], name: str) -> None:
    rows = [
        {
            "step": r["step"],
            "job": r["label"],
            "tool": r["tool"],
            "status": r["status"],
            "exit code": r["exit_code"],
            "message": r["message"],
            "outputs": ", ".join(r["outputs"]),
            "log": r["log_key"],
        }
        for r in records
    ]
    publish_table(
        rows, key=f"{name}-outputs", description=f"Calculations of {name} run {flow_run.get_id()}"
    )


@flow(name="container-job", log_prints=False)
def container_job(request: ContainerJobRequest) -> State:
    """Run one tool over its inputs (one container per input file), record and publish results."""
    log = get_run_logger()
    step = request.step or request.tool
    jobs = plan_jobs(request.tool, request.inputs, request.params, request.tool_dirs)
    if request.split:
        spec = get_tool(request.tool, request.tool_dirs)
        inputs = assign_inputs(spec, request.inputs)
        first = spec.inputs[0].name
        inputs[first] = split_sdf_inputs(inputs[first], step)
        jobs = plan_jobs(request.tool, inputs, request.params, request.tool_dirs, per_file=True)
    log.info("%s: %d job(s), %d at a time", request.tool, len(jobs), request.concurrency)
    records = _run_jobs(
        jobs,
        step,
        request.concurrency,
        request.batch_size,
        request.reuse,
        request.tool_dirs,
    )
    _publish(records, "container-job")
    message = _summary(records)
    if any(r["status"] not in SUCCESS for r in records):
        return Failed(message=message)
    return Completed(message=message)


def _resolve(
    refs: str | list[str], inputs: dict[str, list[str]], outputs: dict[str, list[str]]
) -> list[str]:
    keys: list[str] = []
    for ref in [refs] if isinstance(refs, str) else refs:
        source, _, glob = ref.partition(":")
        found = inputs.get(source, outputs.get(source, []))
        keys += [k for k in found if not glob or fnmatch.fnmatch(PurePosixPath(k).name, glob)]
    return keys


@flow(name="tool-pipeline", log_prints=False)
def tool_pipeline(request: PipelineRequest) -> State:
    """Run a pipeline of tools where each step's outputs feed the next; reuse completed steps."""
    log = get_run_logger()
    pipe = request.pipeline
    missing = [name for name in pipe.inputs if not request.inputs.get(name)]
    if missing:
        raise InputError(f"pipeline {pipe.name}: no files for input(s) {', '.join(missing)}")
    for step in pipe.steps:  # every tool and parameter set is checked before anything runs
        validate_params(get_tool(step.tool, request.tool_dirs), step.params)
    check_tool_images(sorted({s.tool for s in pipe.steps}), request.tool_dirs)
    outputs: dict[str, list[str]] = {}
    records: list[dict[str, Any]] = []
    for step in pipe.steps:
        slots = {slot: _resolve(ref, request.inputs, outputs) for slot, ref in step.inputs.items()}
        empty = [slot for slot, keys in slots.items() if not keys]
        if empty:
            records_msg = _summary(records)
            _publish(records, "tool-pipeline")
            return Failed(
                message=f"step {step.name}: no files for {', '.join(empty)} ({records_msg})"
            )
        jobs = plan_jobs(step.tool, slots, step.params, request.tool_dirs)
        log.info("step %s: %s on %d job(s)", step.name, step.tool, len(jobs))
        step_records = _run_jobs(
            jobs,
            step.name,
            request.concurrency,
            request.batch_size,
            request.reuse,
            request.tool_dirs,
        )
        records += step_records
        outputs[step.name] = [
            k for r in step_records if r["status"] in SUCCESS for k in r["outputs"]
        ]
        reused = sum(r["status"] == "cached" for r in step_records)
        log.info(
            "step %s: %d output(s), %d job(s) reused, %d failed",
            step.name,
            len(outputs[step.name]),
            reused,
            sum(r["status"] not in SUCCESS for r in step_records),
        )
    _publish(records, "tool-pipeline")
    message = _summary(records)
    if any(r["status"] not in SUCCESS for r in records):
        return Failed(message=message)
    return Completed(message=message)
