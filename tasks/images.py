"""Prefect tasks of the image pipeline: select from a catalogue, process chunks, write a manifest.

Data moves as keys: `select_images` writes the plan and one input file per chunk under the run's
prefix, `process_image_chunk` reads its input, transforms the images in a process pool and
writes the images (or tar shards) and a chunk manifest, `write_image_manifest` merges the chunk
manifests into metadata.csv / metadata.parquet / errors.csv and publishes the report.
"""

from __future__ import annotations

import hashlib
import io
import json
import string
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from prefect import get_run_logger, task

from headwater.errors import InputError
from headwater.settings import Settings, get_settings
from headwater.storage import ArtifactStore
from tasks.catalog_filter import filter_mask, parse_filter
from tasks.catalog_io import LINE_COLUMN, Catalogue, read_catalogue_file
from tasks.image_io import (
    Location,
    WorkConfig,
    default_workers,
    open_store,
    output_location,
    parse_location,
    run_items,
)
from tasks.image_ops import (
    DEFAULT_MAX_PIXELS,
    Operations,
    parse_operations,
)
from tasks.storage import publish_markdown, publish_table

COMMON_COLOUR_SHARE = 0.015
NEAR_DUPLICATE_BITS = 3  # phash Hamming distance counted as a near-duplicate
OUTPUT_COLUMNS: dict[str, pa.DataType] = {
    "catalog_line": pa.int64(),
    "source": pa.string(),
    "output_key": pa.string(),
    "member": pa.string(),
    "width": pa.int64(),
    "height": pa.int64(),
    "format": pa.string(),
    "bytes": pa.int64(),
    "sha256": pa.string(),
    "phash": pa.string(),
    "dominant_rgb": pa.string(),
    "predicted_colour": pa.string(),
    "status": pa.string(),
    "stage": pa.string(),
    "reason": pa.string(),
}


# ---- catalogue loading ------------------------------------------------------------------------
def load_catalogue(text: str, settings: Settings | None = None) -> Catalogue:
    """Read a catalogue from a local path, `s3://bucket/key`, or a key of the S3 artifact store."""
    settings = settings or get_settings()
    path = Path(text).expanduser()
    if not text.startswith("s3://") and (path.exists() or settings.storage != "s3"):
        return read_catalogue_file(path)
    loc = parse_location(text, settings)
    store = open_store(Location(loc.kind, loc.root), settings)
    if not store.exists(loc.prefix):
        raise InputError(f"catalogue {text!r}: no such object in {store.describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, Path(loc.prefix).name)
        store.get_file(loc.prefix, local)
        return read_catalogue_file(local)


def template_fields(template: str, columns: Sequence[str]) -> list[str]:
    """The column names a path template uses; InputError for unknown ones."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise InputError(f"path template {template!r}: {exc}") from None
    if not names:
        raise InputError(f"path template {template!r} uses no column, e.g. '{{id}}.jpg'")
    for name in names:
        if not name or name not in columns:
            raise InputError(
                f"path template {template!r}: unknown column {name!r}; "
                f"columns: {', '.join(columns)}"
            )
    return names


def _safe_name(value: Any) -> str:
    text = str(value)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip(".") or "_"


def select_rows(
    catalogue: Catalogue,
    filter_text: str | None,
    *,
    id_column: str,
    template: str,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Filter, de-duplicate by id, sample/limit; add `source` and `name`. Returns (rows, errors)."""
    columns = catalogue.columns
    if id_column not in columns:
        raise InputError(
            f"id column {id_column!r} is not in the catalogue; columns: {', '.join(columns)}"
        )
    template_fields(template, columns)
    frame = catalogue.frame
    selected = frame[filter_mask(frame, filter_text, columns).to_numpy()]
    errors: list[dict[str, Any]] = []
    missing_id = selected[id_column].isna().to_numpy()
    for line in selected.loc[missing_id, LINE_COLUMN]:
        errors.append({"id": "", "stage": "catalog", "reason": f"line {line}: empty {id_column}"})
    selected = selected[~missing_id]
    dup = selected[id_column].duplicated().to_numpy()
    if dup.any():
        first = selected.drop_duplicates(id_column).set_index(id_column)[LINE_COLUMN]
        for ident, line in zip(
            selected.loc[dup, id_column], selected.loc[dup, LINE_COLUMN], strict=True
        ):
            errors.append(
                {
                    "id": str(ident),
                    "stage": "catalog",
                    "reason": f"line {line}: duplicate {id_column}, first on line {first[ident]}",
                }
            )
        selected = selected[~dup]
    if sample is not None and sample < len(selected):
        selected = selected.sample(n=sample, random_state=seed).sort_values(LINE_COLUMN)
    if limit is not None:
        selected = selected.head(limit)
    # built in Arrow when possible: a million rows as Python dicts and strings cost ~200 MB
    sources = _format_in_arrow(selected, template)
    if sources is None:
        sources = pa.chunked_array(
            [
                pa.array(
                    [template.format_map(row) for row in _row_dicts(selected, template, columns)],
                    pa.string(),
                )
            ],
            pa.string(),
        )
    ids = _text_column(selected, id_column, integers_only=True)
    if ids is None:
        ids = pa.chunked_array(
            [pa.array([_safe_name(v) for v in selected[id_column]], pa.string())], pa.string()
        )
    selected = selected.reset_index(drop=True)
    selected["source"] = pd.Series(pd.arrays.ArrowStringArray(sources))
    selected["name"] = pd.Series(pd.arrays.ArrowStringArray(ids))
    return selected, errors


def _text_column(
    frame: pd.DataFrame, name: str, *, integers_only: bool = False
) -> pa.ChunkedArray | None:
    """An integer or text column as Arrow strings (missing: ""), as `str()` would write it.

    None for other types (floats, booleans, dates ...), whose Arrow text differs from Python's.
    """
    try:
        values = pa.Table.from_pandas(frame[[name]], preserve_index=False).column(0)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    if pa.types.is_integer(values.type):
        values = pc.cast(values, pa.string())
    elif integers_only or not (
        pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    ):
        return None
    return values.cast(pa.string()).fill_null("")


def _format_in_arrow(frame: pd.DataFrame, template: str) -> pa.ChunkedArray | None:
    """`template.format_map(row)` for every row, vectorised; None when a field needs Python."""
    parts: list[Any] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if spec or conversion:
            return None
        values = _text_column(frame, name)
        if values is None:
            return None
        parts.append(values)
    if not any(isinstance(p, pa.ChunkedArray) for p in parts):
        return None
    joined = pc.binary_join_element_wise(*parts, "")
    return joined if isinstance(joined, pa.ChunkedArray) else pa.chunked_array([joined])


def _row_dicts(
    frame: pd.DataFrame, template: str, columns: Sequence[str]
) -> Iterator[dict[str, Any]]:
    names = template_fields(template, columns)
    cols = {n: frame[n].tolist() for n in dict.fromkeys(names)}
    for i in range(len(frame)):
        yield {n: ("" if cols[n][i] is None or cols[n][i] is pd.NA else cols[n][i]) for n in cols}


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only transient I/O failures (network, S3), never bad input or bugs."""
    try:
        state.result()
    except InputError:
        return False
    except (OSError, ConnectionError, TimeoutError):
        return True
    except Exception as exc:
        return type(exc).__module__.startswith(("botocore", "urllib3"))
    return False


# ---- tasks ------------------------------------------------------------------------------------
def _plan_fingerprint(plan: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()


def _arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    return pa.Schema.from_pandas(frame, preserve_index=False)


@task(name="select-images")
def select_images(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Read and filter the catalogue; write the plan and one input file per chunk; return counts."""
    logger = get_run_logger()
    settings = get_settings()
    loc = output_location(params.get("out"), run_id, settings)
    store = open_store(loc, settings)
    ops = parse_operations(params["operations"])
    plan_spec = {k: params.get(k) for k in PLAN_KEYS}
    fingerprint = _plan_fingerprint(plan_spec)
    plan_key = loc.key("work", "plan.json")
    if store.exists(plan_key):
        plan = json.loads(store.get_bytes(plan_key))
        if plan["fingerprint"] != fingerprint:
            raise InputError(
                f"run id {run_id!r} was started with different parameters "
                f"({', '.join(k for k in PLAN_KEYS if plan['spec'].get(k) != plan_spec.get(k))}); "
                "use another --run-id"
            )
        logger.info(
            "Resuming run %s: %d selected images in %d chunks",
            run_id,
            plan["selected"],
            plan["chunks"],
        )
        return plan
    source = parse_location(params["images"], settings)
    if source.kind == "local" and not Path(source.root).is_dir():
        raise InputError(f"images {params['images']!r}: no such folder")
    catalogue = load_catalogue(params["catalog"], settings)
    columns = catalogue.columns
    parse_filter(params.get("filter") or "True", columns)  # refuse before any image is read
    selected, dup_errors = select_rows(
        catalogue,
        params.get("filter"),
        id_column=params["id_column"],
        template=params["path_template"],
        limit=params.get("limit"),
        sample=params.get("sample"),
        seed=params.get("seed") or 0,
    )
    catalog_errors = [
        {"id": b.id, "stage": "catalog", "reason": b.reason, "line": b.line}
        for b in catalogue.bad_rows
    ] + [{**e, "line": None} for e in dup_errors]
    vocabulary: list[str] = []
    if "baseColour" in columns:
        # predict among the catalogue's common colours (>= 1.5 % of rows): rare shades such as
        # Charcoal or Steel otherwise absorb most dark/neutral products
        freq = catalogue.frame["baseColour"].value_counts()
        common = freq[freq >= COMMON_COLOUR_SHARE * freq.sum()]
        vocabulary = sorted(str(v) for v in (common if len(common) else freq).index)
    del catalogue
    selected = selected.rename(columns={LINE_COLUMN: "catalog_line"})
    chunk_size = int(params["chunk_size"])
    n_selected = len(selected)
    n_chunks = _write_chunk_inputs(store, loc, selected, chunk_size)
    del selected
    # hand the catalogue's freed Arrow buffers back to the OS (mimalloc keeps them otherwise), so
    # the flow process stays small during the long chunk phase
    pa.default_memory_pool().release_unused()
    err_buf = io.BytesIO()
    pd.DataFrame(catalog_errors, columns=["id", "stage", "reason", "line"]).to_csv(
        err_buf, index=False
    )
    store.put_bytes(loc.key("work", "catalog_errors.csv"), err_buf.getvalue())
    plan = {
        "fingerprint": fingerprint,
        "spec": plan_spec,
        "run_id": run_id,
        "location": loc.describe(),
        "selected": n_selected,
        "chunks": n_chunks,
        "chunk_size": chunk_size,
        "catalog_errors": len(catalog_errors),
        "malformed_lines": [b["line"] for b in catalog_errors if b["line"] is not None],
        "vocabulary": vocabulary,
        "columns": columns,
        "operations": ops.describe(),
    }
    store.put_bytes(
        plan_key, json.dumps(plan, default=str).encode()
    )  # last: marks the plan complete
    logger.info(
        "Selected %d of the catalogue's rows (%d malformed/duplicate rows reported) into %d chunks",
        n_selected,
        len(catalog_errors),
        n_chunks,
    )
    return plan


def _write_chunk_inputs(
    store: ArtifactStore, loc: Location, selected: pd.DataFrame, chunk_size: int
) -> int:
    """Write one Parquet input file per chunk of `chunk_size` rows; return the chunk count."""
    n_chunks = (len(selected) + chunk_size - 1) // chunk_size
    schema = _arrow_schema(selected)
    for i in range(n_chunks):
        part = selected.iloc[i * chunk_size : (i + 1) * chunk_size]
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False), buf)
        store.put_bytes(loc.key("work", f"input-{i:05d}.parquet"), buf.getvalue())
    return n_chunks


PLAN_KEYS = (
    "catalog",
    "images",
    "path_template",
    "id_column",
    "filter",
    "operations",
    "features",
    "limit",
    "sample",
    "seed",
    "chunk_size",
    "shard_size",
    "max_pixels",
)


def chunk_manifest_key(loc: Location, chunk: int) -> str:
    """Key of a chunk's manifest (its presence marks the chunk complete)."""
    return loc.key("work", f"manifest-{chunk:05d}.parquet")


@task(
    name="process-image-chunk",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_io,
)
def process_image_chunk(
    params: dict[str, Any], run_id: str, chunk: int, vocabulary: list[str]
) -> dict[str, Any]:
    """Transform one chunk's images in a process pool; write images/shards and its manifest."""
    logger = get_run_logger()
    settings = get_settings()
    loc = output_location(params.get("out"), run_id, settings)
    store = open_store(loc, settings)
    manifest_key = chunk_manifest_key(loc, chunk)
    if store.exists(manifest_key):
        table = pq.read_table(io.BytesIO(store.get_bytes(manifest_key)), columns=["status"])
        ok = sum(1 for s in table["status"].to_pylist() if s == "ok")
        logger.info("Chunk %d already complete: skipped", chunk)
        return {"chunk": chunk, "ok": ok, "errors": table.num_rows - ok, "skipped": True}
    frame = pq.read_table(
        io.BytesIO(store.get_bytes(loc.key("work", f"input-{chunk:05d}.parquet")))
    ).to_pandas(types_mapper=pd.ArrowDtype)
    ops = parse_operations(params["operations"])
    shard_size = params.get("shard_size")
    source = parse_location(params["images"], settings)
    cfg = WorkConfig(
        ops=ops,
        features=bool(params.get("features")),
        vocabulary=tuple(vocabulary),
        max_pixels=int(params.get("max_pixels") or DEFAULT_MAX_PIXELS),
        source=source,
        sink=None if shard_size else Location(loc.kind, loc.root),
        settings=settings,
    )
    names = [str(n) for n in frame["name"]]
    keys = [loc.key("images", f"{n}.{ops.extension}") for n in names]
    items = list(zip(names, [str(s) for s in frame["source"]], keys, strict=True))
    workers = params.get("workers")
    workers = default_workers() if workers is None else int(workers)
    rows = run_items(cfg, items, workers)
    output_keys: list[str | None] = []
    members: list[str | None] = []
    if shard_size:
        output_keys, members = _write_shards(store, loc, chunk, rows, ops, int(shard_size))
    else:
        for row, key in zip(rows, keys, strict=True):
            output_keys.append(key if row["status"] == "ok" else None)
            members.append(None)
    manifest = _chunk_manifest(frame, rows, output_keys, members)
    buf = io.BytesIO()
    pq.write_table(manifest, buf)
    store.put_bytes(manifest_key, buf.getvalue())  # last: marks the chunk complete
    ok = sum(1 for r in rows if r["status"] == "ok")
    logger.info("Chunk %d: %d images written, %d errors", chunk, ok, len(rows) - ok)
    return {"chunk": chunk, "ok": ok, "errors": len(rows) - ok, "skipped": False}


def _write_shards(
    store: ArtifactStore,
    loc: Location,
    chunk: int,
    rows: list[dict[str, Any]],
    ops: Operations,
    size: int,
) -> tuple[list[str | None], list[str | None]]:
    ok_rows = [r for r in rows if r["status"] == "ok"]
    assignment: dict[int, tuple[str, str]] = {}
    for shard_no, start in enumerate(range(0, len(ok_rows), size)):
        key = loc.key("shards", f"{chunk:05d}-{shard_no:03d}.tar")
        with tempfile.NamedTemporaryFile(suffix=".tar") as tmp:
            with tarfile.open(fileobj=tmp, mode="w") as tar:
                for row in ok_rows[start : start + size]:
                    member = f"{row['name']}.{ops.extension}"
                    info = tarfile.TarInfo(member)
                    info.size = len(row["data"])
                    info.mtime = 0  # deterministic shards
                    tar.addfile(info, io.BytesIO(row["data"]))
                    assignment[id(row)] = (key, member)
            tmp.flush()
            store.put_file(key, tmp.name)
    for row in ok_rows:
        row.pop("data", None)
    keys = [assignment[id(r)][0] if id(r) in assignment else None for r in rows]
    members = [assignment[id(r)][1] if id(r) in assignment else None for r in rows]
    return keys, members


def _chunk_manifest(
    frame: pd.DataFrame,
    rows: list[dict[str, Any]],
    keys: list[str | None],
    members: list[str | None],
) -> pa.Table:
    base = pa.Table.from_pandas(
        frame.drop(columns=["name", "source", "catalog_line"]), preserve_index=False
    )
    cols: dict[str, list[Any]] = {name: [] for name in OUTPUT_COLUMNS}
    for row, key, member, line, src in zip(
        rows, keys, members, frame["catalog_line"].tolist(), frame["source"].tolist(), strict=True
    ):
        values = {**row, "output_key": key, "member": member, "catalog_line": line, "source": src}
        for name in OUTPUT_COLUMNS:
            cols[name].append(values.get(name))
    for name, dtype in OUTPUT_COLUMNS.items():
        base = base.append_column(pa.field(name, dtype), pa.array(cols[name], type=dtype))
    return base


@task(
    name="write-image-manifest",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_io,
)
def write_image_manifest(
    params: dict[str, Any], run_id: str, plan: dict[str, Any]
) -> dict[str, Any]:
    """Merge chunk manifests into metadata.csv/.parquet and errors.csv; publish the report."""
    logger = get_run_logger()
    settings = get_settings()
    loc = output_location(params.get("out"), run_id, settings)
    store = open_store(loc, settings)
    counts = {"ok": 0, "error": 0}
    phashes: dict[str, list[str]] = {}
    colour_total = colour_agree = 0
    schema: pa.Schema | None = None
    with tempfile.TemporaryDirectory() as tmp:
        pq_path, csv_path, err_path = Path(tmp, "m.parquet"), Path(tmp, "m.csv"), Path(tmp, "e.csv")
        pq_writer: pq.ParquetWriter | None = None
        csv_writer: pacsv.CSVWriter | None = None
        errors = pd.read_csv(
            io.BytesIO(store.get_bytes(loc.key("work", "catalog_errors.csv"))), dtype=str
        )
        errors[["id", "stage", "reason"]].to_csv(err_path, index=False)
        id_col = params["id_column"]
        for chunk in range(plan["chunks"]):
            table = pq.read_table(io.BytesIO(store.get_bytes(chunk_manifest_key(loc, chunk))))
            if schema is None:
                schema = table.schema
                pq_writer = pq.ParquetWriter(pq_path, schema)
                csv_writer = pacsv.CSVWriter(csv_path, schema)
            table = table.cast(schema)
            assert pq_writer is not None and csv_writer is not None
            pq_writer.write_table(table)
            csv_writer.write_table(table)
            small = table.select(
                [id_col, "status", "stage", "reason", "phash", "predicted_colour"]
                + (["baseColour"] if "baseColour" in table.column_names else [])
            ).to_pandas()
            counts["ok"] += int((small["status"] == "ok").sum())
            bad = small[small["status"] != "ok"]
            counts["error"] += len(bad)
            if len(bad):
                bad.rename(columns={id_col: "id"})[["id", "stage", "reason"]].to_csv(
                    err_path, mode="a", header=False, index=False
                )
            for ident, ph in zip(small[id_col], small["phash"], strict=True):
                if isinstance(ph, str):
                    phashes.setdefault(ph, []).append(str(ident))
            if "baseColour" in small.columns:
                known = small[small["predicted_colour"].notna() & small["baseColour"].notna()]
                colour_total += len(known)
                colour_agree += int((known["predicted_colour"] == known["baseColour"]).sum())
        if pq_writer is None:  # nothing selected: empty manifest with the catalogue's columns
            columns = [*plan["columns"], *OUTPUT_COLUMNS]
            pd.DataFrame(columns=columns).to_parquet(pq_path, index=False)
            pd.DataFrame(columns=columns).to_csv(csv_path, index=False)
        else:
            pq_writer.close()
            assert csv_writer is not None
            csv_writer.close()
        store.put_file(loc.key("metadata.parquet"), pq_path)
        store.put_file(loc.key("metadata.csv"), csv_path)
        store.put_file(loc.key("errors.csv"), err_path)
        error_rows = max(sum(1 for _ in err_path.open()) - 1, 0)
    groups = near_duplicate_groups(phashes, NEAR_DUPLICATE_BITS)
    dup_lines = ["id,group,phash"]
    for g, (hashes, ids) in enumerate(groups):
        for ident in ids:
            dup_lines.append(f"{ident},{g},{hashes[0]}")
    store.put_bytes(loc.key("near_duplicates.csv"), ("\n".join(dup_lines) + "\n").encode())
    summary = {
        "run_id": run_id,
        "location": loc.describe(),
        "selected": plan["selected"],
        "processed": counts["ok"],
        "image_errors": counts["error"],
        "catalog_errors": plan["catalog_errors"],
        "errors": error_rows,
        "malformed_lines": plan["malformed_lines"],
        "chunks": plan["chunks"],
        "operations": plan["operations"],
        "near_duplicate_groups": len(groups),
        "near_duplicate_images": sum(len(ids) for _, ids in groups),
        "colour_checked": colour_total,
        "colour_agreement": round(colour_agree / colour_total, 4) if colour_total else None,
        "metadata_csv": loc.key("metadata.csv"),
        "metadata_parquet": loc.key("metadata.parquet"),
        "errors_csv": loc.key("errors.csv"),
        "empty": plan["selected"] == 0,
    }
    store.put_bytes(loc.key("report.json"), json.dumps(summary, indent=2, default=str).encode())
    publish_table(
        [{"metric": k, "value": str(v)} for k, v in summary.items() if k != "malformed_lines"],
        key=f"image-pipeline-summary-{run_id}",
        description=f"image-pipeline run {run_id}",
    )
    publish_markdown(_report_markdown(summary, groups), key=f"image-pipeline-report-{run_id}")
    if summary["empty"]:
        logger.warning(
            "The filter selected no images: wrote an empty manifest to %s", loc.describe()
        )
    logger.info(
        "Run %s: %d images processed, %d errors, %d near-duplicate groups",
        run_id,
        counts["ok"],
        error_rows,
        len(groups),
    )
    return summary


def near_duplicate_groups(
    phashes: dict[str, list[str]], max_bits: int
) -> list[tuple[list[str], list[str]]]:
    """Groups of ids whose perceptual hashes differ by at most `max_bits` bits (LSH + union-find).

    Exact-hash duplicates are grouped first; distinct hashes are then compared only when they share
    one of `max_bits + 1` bands, which by the pigeonhole principle finds every pair within range.
    """
    hashes = list(phashes)
    values = [int(h, 16) for h in hashes]
    parent = list(range(len(hashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bands = max_bits + 1
    width = 64 // bands
    for band in range(bands):
        shift = band * width
        mask = (1 << (width if band < bands - 1 else 64 - shift)) - 1
        buckets: dict[int, list[int]] = {}
        for i, v in enumerate(values):
            buckets.setdefault((v >> shift) & mask, []).append(i)
        for members in buckets.values():
            for a_pos, a in enumerate(members):
                for b in members[a_pos + 1 :]:
                    if find(a) != find(b) and bin(values[a] ^ values[b]).count("1") <= max_bits:
                        parent[find(a)] = find(b)
    grouped: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        grouped.setdefault(find(i), []).append(i)
    out = []
    for members in grouped.values():
        ids = [ident for m in members for ident in phashes[hashes[m]]]
        if len(ids) > 1:
            out.append(([hashes[m] for m in members], sorted(ids)))
    out.sort(key=lambda g: (-len(g[1]), g[1][0]))
    return out


def _report_markdown(summary: dict[str, Any], groups: list[tuple[list[str], list[str]]]) -> str:
    lines = [f"# image-pipeline run `{summary['run_id']}`", ""]
    if summary["empty"]:
        lines += ["**The filter selected no images**: the manifest is empty.", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items() if k not in ("malformed_lines",)]
    if summary["malformed_lines"]:
        lines += [
            "",
            f"Malformed catalogue lines: {', '.join(map(str, summary['malformed_lines'][:100]))}",
        ]
    if groups:
        lines += ["", "## Near-duplicates (perceptual hash)", ""]
        for hashes, ids in groups[:50]:
            shown = ", ".join(ids[:20]) + (f" ... (+{len(ids) - 20})" if len(ids) > 20 else "")
            lines.append(f"- {len(ids)} images, phash {hashes[0]}: {shown}")
    return "\n".join(lines) + "\n"
