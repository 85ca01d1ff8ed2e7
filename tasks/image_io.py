"""Where the image pipeline reads and writes, and the process-pool side of a chunk.

Kept free of Prefect imports so pool workers start fast (they import only this, Pillow and boto3).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.errors import InputError
from headwater.settings import Settings, get_settings
from headwater.storage import ArtifactStore, LocalStore, S3Store, s3_bucket_block
from tasks.image_ops import ImageError, Operations, process_bytes

CAPABILITY = "image-pipeline"
WORK_UNIT = 16  # images per process-pool call (amortises pickling)


# ---- locations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Location:
    """A place to read from or write to: a local folder or an S3 bucket, plus a key prefix."""

    kind: str  # "local" | "s3"
    root: str  # folder (local) or bucket (s3)
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """The object key of `parts` under this location's prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def describe(self) -> str:
        """Human-readable address."""
        if self.kind == "s3":
            return f"s3://{self.root}/{self.prefix}".rstrip("/")
        return str(Path(self.root, self.prefix))


def parse_location(
    text: str, settings: Settings | None = None, *, must_exist: bool = False
) -> Location:
    """`s3://bucket/prefix`, a local folder, or (with an S3 store) a key prefix in its bucket."""
    settings = settings or get_settings()
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise InputError(f"location {text!r}: no bucket after s3://")
        return Location("s3", bucket, prefix.strip("/"))
    path = Path(text).expanduser()
    if path.exists() or settings.storage != "s3":
        if must_exist and not path.exists():
            raise InputError(f"location {text!r}: no such local file or folder")
        return Location("local", str(path.resolve()))
    return Location("s3", settings.s3_bucket, text.strip("/"))


_STORES: dict[tuple[str, str, str], ArtifactStore] = {}
_STORES_LOCK = threading.Lock()


def open_store(location: Location, settings: Settings | None = None) -> ArtifactStore:
    """The artifact store behind a location (cached per process; S3 credentials from settings)."""
    settings = settings or get_settings()
    cache = (location.kind, location.root, settings.s3_endpoint_url or "")
    with _STORES_LOCK:
        store = _STORES.get(cache)
        if store is None:
            if location.kind == "local":
                store = LocalStore(location.root)
            else:
                block = s3_bucket_block(settings)
                block.bucket_name = location.root
                store = S3Store(block)
            _STORES[cache] = store
    return store


def output_location(out: str | None, run_id: str, settings: Settings | None = None) -> Location:
    """Where a run writes: `<out or the artifact store>/image-pipeline/<run-id>`."""
    settings = settings or get_settings()
    if out:
        base = parse_location(out, settings)
        return Location(
            base.kind, base.root, "/".join(p for p in (base.prefix, CAPABILITY, run_id) if p)
        )
    if settings.storage == "s3":
        return Location("s3", settings.s3_bucket, f"{CAPABILITY}/{run_id}")
    return Location("local", str(settings.artifacts_dir.resolve()), f"{CAPABILITY}/{run_id}")


# ---- worker side (runs in the process pool) ---------------------------------------------------
@dataclass(frozen=True)
class WorkConfig:
    """What a pool worker needs besides the image list (pickled once per work unit)."""

    ops: Operations
    features: bool
    vocabulary: tuple[str, ...]
    max_pixels: int
    source: Location
    sink: Location | None  # None: return the bytes (tar shards are written by the parent)
    settings: Settings


def _read_source(cfg: WorkConfig, rel: str) -> bytes:
    if cfg.source.kind == "local":
        path = Path(cfg.source.root, cfg.source.prefix, rel)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ImageError("read", f"missing image {path}") from None
        except IsADirectoryError:
            raise ImageError("read", f"{path} is a folder") from None
        except OSError as exc:
            raise ImageError("read", f"cannot read {path} ({exc.strerror})") from None
    store = open_store(Location("s3", cfg.source.root), cfg.settings)
    key = cfg.source.key(rel)
    from botocore.exceptions import ClientError

    try:
        return store.get_bytes(key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ImageError("read", f"missing image s3://{cfg.source.root}/{key}") from None
        raise


def process_work_unit(cfg: WorkConfig, items: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Process (name, source, output_key) items; write outputs when the config has a sink."""
    sink = open_store(Location(cfg.sink.kind, cfg.sink.root), cfg.settings) if cfg.sink else None
    out: list[dict[str, Any]] = []
    for name, rel, key in items:
        row: dict[str, Any] = {"name": name}
        try:
            data = _read_source(cfg, rel)
            result = process_bytes(
                data,
                cfg.ops,
                features=cfg.features,
                vocabulary=cfg.vocabulary,
                max_pixels=cfg.max_pixels,
            )
        except ImageError as exc:
            row.update(status="error", stage=exc.stage, reason=exc.reason)
            out.append(row)
            continue
        if sink is not None:
            try:
                sink.put_bytes(key, result.data)
            except OSError as exc:
                row.update(status="error", stage="write", reason=str(exc))
                out.append(row)
                continue
        else:
            row["data"] = result.data
        row.update(
            status="ok",
            width=result.width,
            height=result.height,
            format=result.format.lower(),
            bytes=len(result.data),
            sha256=result.sha256,
            **result.features,
        )
        out.append(row)
    return out


_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_USERS = 0  # open `pool_scope`s; the last one to close shuts the pool down
_POOL_LOCK = threading.Lock()


def default_workers() -> int:
    """Pool size: the CPUs we may use, or 0 (in-process) inside a daemonic worker (e.g. Dask)."""
    if multiprocessing.current_process().daemon:
        return 0
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_pool(workers: int) -> ProcessPoolExecutor:
    """The process pool shared by every chunk running in this process (created on first use).

    Chunks in flight at once share it, so the machine runs `workers` image processes whatever
    the chunk concurrency; it lives until the enclosing `pool_scope` (the flow run) ends.
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or workers != _POOL_SIZE:
            if _POOL is not None:
                _POOL.shutdown(wait=True)
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["tasks.image_io"])
            _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            _POOL_SIZE = workers
        return _POOL


def _close_pool(wait: bool) -> None:
    global _POOL
    if _POOL is not None:
        # nothing is queued after a run that succeeded; after a failure, drop the queued work
        _POOL.shutdown(wait=wait, cancel_futures=True)
        _POOL = None


@contextmanager
def pool_scope() -> Iterator[None]:
    """One long-lived pool for all the chunks of a flow run; its processes exit when it ends."""
    global _POOL_USERS
    with _POOL_LOCK:
        _POOL_USERS += 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _POOL_USERS -= 1
            if _POOL_USERS == 0:
                _close_pool(wait=True)


@atexit.register
def _shutdown_pool() -> None:
    _close_pool(wait=False)


def run_items(
    cfg: WorkConfig, items: list[tuple[str, str, str]], workers: int
) -> list[dict[str, Any]]:
    """Process items in the shared pool (or in this process when workers <= 1), in order."""
    units = [items[i : i + WORK_UNIT] for i in range(0, len(items), WORK_UNIT)]
    if workers <= 1 or len(items) <= WORK_UNIT:
        return [row for unit in units for row in process_work_unit(cfg, unit)]
    pool = get_pool(workers)
    futures = [pool.submit(process_work_unit, cfg, unit) for unit in units]
    return [row for fut in futures for row in fut.result()]
