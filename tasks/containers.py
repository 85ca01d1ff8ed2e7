"""Prefect tasks and helpers that run registered tools in Docker containers (docker SDK).

A job stages its inputs into a temporary folder, runs the tool's image with the inputs read-only
at /in, a writable /out, no network, a non-root user, a read-only root file system with a tmpfs
/tmp and the tool's limits, streams the container log into the Prefect run log, uploads outputs
and the full log, records the calculation, and removes the container whatever happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from headwater.errors import HeadwaterError
from headwater.settings import Settings, get_settings
from headwater.storage import ArtifactStore, get_store, run_key, validate_key
from tasks.tool_registry import (
    IN_DIR,
    OUT_DIR,
    ToolSpec,
    cache_key,
    get_tool,
    render_command,
    safe_input_name,
    unique_names,
)

CAPABILITY = "container-jobs"
LABEL = "io.headwater.capability"
MAX_LOG_LINES = 500  # per job into the Prefect log; the full log is always uploaded
SUCCESS = ("completed", "cached")


class ToolImageMissing(HeadwaterError):
    """The image of a tool has not been built on this Docker Engine."""


class JobSpec(BaseModel):
    """One container run: a tool, its validated parameters and the artifact keys per slot."""

    label: str = Field(description="Unique label inside the step (also the key folder).")
    tool: str = Field(description="Tool name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated parameters.")
    inputs: dict[str, list[str]] = Field(default_factory=dict, description="Slot -> store keys.")


@dataclass
class RunOutcome:
    """How a container ended."""

    exit_code: int | None
    status: str
    message: str
    started: datetime
    finished: datetime
    log: bytes = b""
    lines: int = 0


@dataclass
class JobContext:
    """What every job of a batch shares (clients, settings, logger)."""

    settings: Settings
    store: ArtifactStore
    client: Any
    step: str
    run_id: str
    reuse: bool
    tool_dirs: list[str]
    log: Any
    images: dict[str, str] = field(default_factory=dict)


# --- docker ----------------------------------------------------------------------------------


def docker_client(settings: Settings | None = None, timeout: float = 60) -> Any:
    """A Docker SDK client for the configured engine (`HEADWATER_DOCKER_HOST` or the socket)."""
    import docker

    settings = settings or get_settings()
    url = settings.docker_host or "unix:///var/run/docker.sock"
    return docker.DockerClient(base_url=url, timeout=timeout, max_pool_size=32)


def image_id(client: Any, spec: ToolSpec) -> str:
    """Id of the tool's image, or ToolImageMissing saying how to build it."""
    import docker.errors

    try:
        return str(client.images.get(spec.image).id)
    except docker.errors.ImageNotFound:
        raise ToolImageMissing(
            f"image {spec.image} of tool {spec.name} is not built on this Docker Engine; "
            f"build it with `headwater tools build {spec.name}`"
        ) from None


def _is_transient(exc: BaseException) -> bool:
    import docker.errors
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError) and exc.status_code is not None:
        return exc.status_code >= 500
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import EndpointConnectionError

        return isinstance(exc, EndpointConnectionError | BotoConnectionError)
    except ImportError:  # pragma: no cover
        return False


def retry_on_transient(_task: Any, _run: Any, state: Any) -> bool:
    """Retry only when the engine or the store was unreachable, never on a tool's own failure."""
    try:
        state.result()
    except Exception as exc:
        return _is_transient(exc)
    return False


def run_container(
    client: Any,
    spec: ToolSpec,
    argv: list[str],
    in_dir: Path,
    out_dir: Path,
    on_line: Callable[[str], None] | None = None,
    labels: dict[str, str] | None = None,
) -> RunOutcome:
    """Run `argv` in the tool's image with the sandbox settings; always remove the container."""
    import docker.errors
    import requests

    limits = spec.limits
    kwargs: dict[str, Any] = {
        "command": argv,
        "user": spec.user,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={limits.tmpfs},mode=1777"},
        "volumes": {
            str(in_dir): {"bind": IN_DIR, "mode": "ro"},
            str(out_dir): {"bind": OUT_DIR, "mode": "rw"},
        },
        "working_dir": "/tmp",
        "environment": {"HOME": "/tmp", "TMPDIR": "/tmp"},
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(limits.cpus * 1e9),
        "pids_limit": limits.pids,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "labels": {LABEL: CAPABILITY, **(labels or {})},
        "detach": True,
    }
    log = bytearray()
    lines = 0
    container = None
    started = datetime.now(UTC)
    try:
        container = client.containers.create(spec.image, **kwargs)
        container.start()
        started = datetime.now(UTC)

        def pump() -> None:
            nonlocal lines
            pending = b""
            try:
                for chunk in container.logs(stream=True, follow=True):
                    log.extend(chunk)
                    pending += chunk
                    *done, pending = pending.split(b"\n")
                    for raw in done:
                        lines += 1
                        if on_line:
                            on_line(raw.decode("utf-8", "replace"))
            except (requests.exceptions.RequestException, docker.errors.APIError):
                return  # the container went away (removed after a kill): log is what we have
            if pending:
                lines += 1
                if on_line:
                    on_line(pending.decode("utf-8", "replace"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            result = container.wait(timeout=spec.timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            with contextlib.suppress(docker.errors.APIError):  # it may have exited meanwhile
                container.kill()
            result = container.wait(timeout=30)
        reader.join(timeout=10)
        finished = datetime.now(UTC)
        exit_code = int(result.get("StatusCode", -1))
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        if timed_out:
            status, message = "failed", f"timed out after {spec.timeout:g} s"
        elif oom:
            status, message = "failed", f"out of memory (limit {spec.limits.memory})"
        elif exit_code != 0:
            status, message = "failed", f"exit code {exit_code}: {_last_error(log)}"
        else:
            status, message = "completed", "exit code 0"
        return RunOutcome(exit_code, status, message, started, finished, bytes(log), lines)
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def _last_error(log: bytearray | bytes) -> str:
    """The last line of the log that looks like an error (else the last line), shortened."""
    text = bytes(log).decode("utf-8", "replace").strip().splitlines()
    for line in reversed(text):
        if "error" in line.lower():
            return line.strip()[:300]
    return text[-1].strip()[:300] if text else "no output"


# --- staging, outputs ------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage_inputs(
    store: ArtifactStore, inputs: dict[str, list[str]], in_dir: Path
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Download inputs into `in_dir` under safe names; return (slot -> names, slot -> hashes)."""
    flat = [(slot, key) for slot, keys in inputs.items() for key in keys]
    names = unique_names([PurePosixPath(validate_key(key)).name for _slot, key in flat])
    staged: dict[str, list[str]] = {}
    hashes: dict[str, list[str]] = {}
    for (slot, key), name in zip(flat, names, strict=True):
        target = in_dir / name
        store.get_file(key, target)
        target.chmod(0o644)
        staged.setdefault(slot, []).append(name)
        hashes.setdefault(slot, []).append(f"{name}:{sha256_file(target)}")
    return staged, hashes


def collect_outputs(spec: ToolSpec, out_dir: Path) -> list[tuple[str, Path]]:
    """Regular files under `out_dir` matching the tool's output globs, as (relative key, path).

    Symlinks are never followed (a tool could point one at a host file) and every path part is
    made safe for an object key.
    """
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(out_dir, followlinks=False):
        dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                continue
            rel = PurePosixPath(path.relative_to(out_dir).as_posix())
            if not any(rel.match(glob) or fnmatch_all(rel, glob) for glob in spec.outputs):
                continue
            safe_parts = [safe_input_name(p) for p in rel.parts]
            found["/".join(safe_parts)] = path
    return sorted(found.items())


def fnmatch_all(rel: PurePosixPath, glob: str) -> bool:
    """`**/*`-style globs match every depth (PurePath.match is anchored at the right only)."""
    import fnmatch

    return fnmatch.fnmatch(rel.as_posix(), glob.replace("**/", "*"))


# --- records ---------------------------------------------------------------------------------


_SCHEMA_LOCK = threading.Lock()
_SCHEMA_DONE: set[str] = set()


def ensure_schema(url: str) -> None:
    """Bring the calculations table up to date (Alembic branch `calculations`), once per process."""
    from alembic import command
    from alembic.config import Config

    from headwater.db import MIGRATIONS_DIR

    with _SCHEMA_LOCK:  # Alembic's context is process-global: never run it from two threads
        if url in _SCHEMA_DONE:
            return
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        command.upgrade(cfg, "calculations@head")
        _SCHEMA_DONE.add(url)


def _session(settings: Settings) -> Any:
    from headwater.db import session_factory

    url = settings.sqlalchemy_url()
    ensure_schema(url)
    return session_factory(url)()


def save_record(settings: Settings, record: dict[str, Any]) -> None:
    """Insert or update one calculation record (idempotent on its id)."""
    from headwater.models.calculations import Calculation

    with _session(settings) as session:
        session.merge(Calculation(**record))
        session.commit()


def find_cached(settings: Settings, store: ArtifactStore, key: str) -> dict[str, Any] | None:
    """The newest completed record with this cache key whose outputs still exist."""
    from sqlalchemy import select

    from headwater.models.calculations import Calculation

    with _session(settings) as session:
        rows = session.scalars(
            select(Calculation)
            .where(Calculation.cache_key == key, Calculation.status == "completed")
            .order_by(Calculation.finished.desc())
            .limit(3)
        ).all()
        for row in rows:
            if all(store.exists(k) for k in row.outputs[:20]):
                return row.to_dict()
    return None


def load_records(settings: Settings, flow_run_id: str) -> list[dict[str, Any]]:
    """Every calculation record of a flow run (ordered by step, then label)."""
    from sqlalchemy import select

    from headwater.models.calculations import Calculation

    with _session(settings) as session:
        rows = session.scalars(
            select(Calculation)
            .where(Calculation.flow_run_id == flow_run_id)
            .order_by(Calculation.started, Calculation.step, Calculation.label)
        ).all()
        return [r.to_dict() for r in rows]


# --- one job ---------------------------------------------------------------------------------


def run_job(ctx: JobContext, job: JobSpec) -> dict[str, Any]:
    """Stage, run (or reuse), upload and record one job; tool failures are recorded, not raised."""
    spec = get_tool(job.tool, ctx.tool_dirs)
    prefix = run_key(CAPABILITY, ctx.step, job.label, run_id=ctx.run_id)
    record: dict[str, Any] = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.run_id}/{ctx.step}/{job.label}")),
        "flow_run_id": ctx.run_id,
        "step": ctx.step,
        "label": job.label,
        "tool": spec.name,
        "tool_version": spec.version,
        "image": spec.image,
        "image_id": ctx.images.get(spec.image),
        "parameters": job.params,
        "inputs": job.inputs,
        "outputs": [],
        "status": "running",
        "exit_code": None,
        "message": None,
        "started": datetime.now(UTC),
        "finished": None,
        "log_key": None,
        "cache_key": None,
        "reused_from": None,
    }
    work = Path(tempfile.mkdtemp(prefix="hw-job-"))
    try:
        in_dir, out_dir = work / "in", work / "out"
        in_dir.mkdir()
        out_dir.mkdir()
        work.chmod(0o755)
        in_dir.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(out_dir, spec.uid, spec.gid)
        else:
            out_dir.chmod(0o777)
        staged, hashes = stage_inputs(ctx.store, job.inputs, in_dir)
        if spec.image not in ctx.images:
            ctx.images[spec.image] = image_id(ctx.client, spec)
        record["image_id"] = ctx.images[spec.image]
        record["cache_key"] = cache_key(spec, record["image_id"], job.params, hashes)
        if ctx.reuse:
            cached = find_cached(ctx.settings, ctx.store, record["cache_key"])
            if cached:
                record.update(
                    status="cached",
                    exit_code=cached["exit_code"],
                    outputs=cached["outputs"],
                    log_key=cached["log_key"],
                    reused_from=cached["id"],
                    message=f"reused calculation {cached['id']}",
                    finished=datetime.now(UTC),
                )
                ctx.log.info("%s %s: reused calculation %s", ctx.step, job.label, cached["id"])
                save_record(ctx.settings, record)
                return _jsonable(record)
        save_record(ctx.settings, record)
        argv = render_command(spec, job.params, staged)
        ctx.log.info("%s %s: running %s in %s", ctx.step, job.label, spec.name, spec.image)
        shown = 0

        def on_line(line: str) -> None:
            nonlocal shown
            shown += 1
            if shown <= MAX_LOG_LINES:
                ctx.log.info("[%s %s] %s", ctx.step, job.label, line)
            elif shown == MAX_LOG_LINES + 1:
                ctx.log.info("[%s %s] ... (more lines in the uploaded log)", ctx.step, job.label)

        outcome = run_container(
            ctx.client,
            spec,
            argv,
            in_dir,
            out_dir,
            on_line,
            labels={"io.headwater.flow-run": ctx.run_id, "io.headwater.step": ctx.step[:60]},
        )
        log_key = ctx.store.put_bytes(f"{prefix}/log.txt", outcome.log)
        outputs = [
            ctx.store.put_file(f"{prefix}/out/{rel}", path)
            for rel, path in collect_outputs(spec, out_dir)
        ]
        record.update(
            status=outcome.status,
            exit_code=outcome.exit_code,
            message=outcome.message,
            started=outcome.started,
            finished=outcome.finished,
            outputs=outputs,
            log_key=log_key,
        )
        level = ctx.log.info if outcome.status == "completed" else ctx.log.error
        level("%s %s: %s (%d output(s))", ctx.step, job.label, outcome.message, len(outputs))
    except ToolImageMissing:
        raise
    except HeadwaterError as exc:
        record.update(status="failed", message=str(exc), finished=datetime.now(UTC))
        ctx.log.error("%s %s: %s", ctx.step, job.label, exc)
    except Exception as exc:
        if _is_transient(exc):
            raise
        record.update(
            status="failed",
            message=f"{type(exc).__name__}: {exc}"[:500],
            finished=datetime.now(UTC),
        )
        ctx.log.error("%s %s: %s", ctx.step, job.label, record["message"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save_record(ctx.settings, record)
    return _jsonable(record)


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


# --- tasks -----------------------------------------------------------------------------------


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_on_transient)
def check_tool_images(tools: list[str], tool_dirs: list[str]) -> dict[str, str]:
    """Resolve the image id of every tool; fail with how to build a missing image."""
    client = docker_client()
    try:
        return {name: image_id(client, get_tool(name, tool_dirs)) for name in tools}
    finally:
        client.close()


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_on_transient)
def run_job_batch(
    jobs: list[JobSpec],
    step: str,
    concurrency: int = 4,
    reuse: bool = False,
    tool_dirs: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run a batch of jobs, `concurrency` containers at a time; return their records."""
    from prefect.runtime import flow_run

    settings = get_settings()
    client = docker_client(settings, timeout=120)
    ctx = JobContext(
        settings=settings,
        store=get_store(settings),
        client=client,
        step=step,
        run_id=flow_run.get_id() or "local",
        reuse=reuse,
        tool_dirs=list(tool_dirs or []),
        log=get_run_logger(),
    )
    try:
        ensure_schema(settings.sqlalchemy_url())
        for name in sorted({job.tool for job in jobs}):  # a missing image fails before any job
            spec = get_tool(name, ctx.tool_dirs)
            ctx.images[spec.image] = image_id(client, spec)
        if concurrency <= 1 or len(jobs) <= 1:
            return [run_job(ctx, job) for job in jobs]
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="hw-job") as pool:
            return list(pool.map(lambda job: run_job(ctx, job), jobs))
    finally:
        client.close()


def split_sdf_records(data: bytes) -> list[tuple[str, bytes]]:
    """Split an SDF into its records: (title, record bytes ending in `$$$$`), blanks skipped."""
    records = []
    for chunk in data.replace(b"\r\n", b"\n").split(b"$$$$\n"):
        chunk = chunk.removesuffix(b"$$$$")
        if not chunk.strip():
            continue
        title = chunk.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        records.append((title, chunk.rstrip(b"\n") + b"\n$$$$\n"))
    return records


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_on_transient)
def split_sdf_inputs(keys: list[str], step: str) -> list[str]:
    """Split every SDF among `keys` into one object per molecule (other files pass through)."""
    from prefect.runtime import flow_run

    store = get_store()
    run_id = flow_run.get_id() or "local"
    out: list[str] = []
    for n, key in enumerate(keys):
        if not key.lower().endswith((".sdf", ".sd")):
            out.append(key)
            continue
        stem = safe_input_name(PurePosixPath(key).stem)
        for i, (title, record) in enumerate(split_sdf_records(store.get_bytes(key)), 1):
            name = f"{stem}-{i:05d}" + (f"-{safe_input_name(title)}" if title.strip("._- ") else "")
            target = run_key(
                CAPABILITY, step, "inputs", f"{n:03d}", f"{name[:100]}.sdf", run_id=run_id
            )
            out.append(store.put_bytes(target, record))
    get_run_logger().info("split %d input(s) into %d molecule file(s)", len(keys), len(out))
    return out


def leftover_containers(client: Any) -> list[str]:
    """Ids of Headwater tool containers still present (should always be empty)."""
    found = client.containers.list(all=True, filters={"label": f"{LABEL}={CAPABILITY}"})
    return [c.id for c in found]
