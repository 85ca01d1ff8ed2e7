"""Benchmark: the image-pipeline flow vs a plain multiprocessing Pillow script, same files, one run.

Usage: uv run python bench/image_pipeline.py [--quick | --million] [--small N] [--large N]
       [--rounds N] [--ephemeral] [--transform fit|thumbnail]

Builds a set by replicating the sample JPEGs under new ids (hard links) plus a set of
1800x2400 photos, then times (1) a plain `multiprocessing.Pool` Pillow script and (2) the flow,
both doing resize-to-fit 256x256 + WebP q90 (`--transform thumbnail`: shrink only, so the 60x80
samples are only re-encoded) on the same files and writing one WebP per image.
The two alternate (A/B/A/B, `--rounds` pairs) because the machine is shared and its load varies;
the result holds every run with its load average, the medians, and the per-pair ratios. A sample
of the two sides' outputs is compared byte for byte. The flow talks to the running Prefect server
(as deployed flows do) when one is healthy, else to Prefect's ephemeral API (`--ephemeral` forces
it; its server process then counts in the flow's wall time and memory). Peak memory is the largest
resident set of the process tree (parent + pool workers). Writes bench/results/image_pipeline.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FASHION = Path("/work/shared/data/images/fashion")
BOX = 256
QUALITY = 90
#: --transform: (flow operations, whether the script enlarges small images, description)
TRANSFORMS = {
    "fit": (
        [f"resize:{BOX}x{BOX}", f"format:webp:{QUALITY}"],
        True,
        f"resize to fit {BOX}x{BOX} (Lanczos, up or down), WebP q{QUALITY}",
    ),
    "thumbnail": (
        [f"thumbnail:{BOX}x{BOX}", f"format:webp:{QUALITY}"],
        False,
        f"thumbnail {BOX}x{BOX} (Lanczos, shrink only: the 60x80 samples keep their size), "
        f"WebP q{QUALITY}",
    ),
}


class PeakMemory:
    """Samples the process tree (this process and its children): peak RSS and CPU time.

    `peak` is the largest sum of resident sets in bytes (pages shared by forked processes count
    once per process, so it overstates); `peak_pss` the largest sum of proportional set sizes
    (shared pages split between their processes: what the tree really holds); `cpu_s` the user +
    system seconds of every process seen (a process's last sample counts, so one that exits
    loses < `interval`).
    CPU per image does not depend on how loaded the shared machine is, unlike images/s.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
        self._cpu: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_s(self) -> float:
        """CPU seconds of the tree."""
        return sum(self._cpu.values())

    def _sample(self) -> None:
        me = psutil.Process()
        total = pss = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    mem = proc.memory_full_info()
                    total += mem.rss
                    pss += mem.pss
                    times = proc.cpu_times()
                    self._cpu[(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)
        self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._base = psutil.Process().cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        key = next(k for k in self._cpu if k[0] == os.getpid())
        self._cpu[key] -= self._base.user + self._base.system  # only this run's CPU


def build_dataset(root: Path, n_small: int, n_large: int, folder_size: int = 1000) -> Path:
    """Catalogue + images: sample JPEGs hard-linked under new ids, plus 1800x2400 photos."""
    import pandas as pd

    styles = pd.read_csv(FASHION / "styles.csv", on_bad_lines="skip")
    sources = sorted((FASHION / "images").glob("*.jpg"))
    styles = styles[styles["id"].isin([int(p.stem) for p in sources])].reset_index(drop=True)
    large_dir = root / "large-originals"
    large_dir.mkdir(parents=True, exist_ok=True)
    large_sources = []
    for path in sources[:12]:  # a few distinct realistic-size photos
        target = large_dir / f"{path.stem}.jpg"
        if not target.exists():
            Image.open(path).convert("RGB").resize((1800, 2400), Image.Resampling.LANCZOS).save(
                target, "JPEG", quality=90
            )
        large_sources.append(target)
    images = root / "images"
    total = n_small + n_large
    header = list(styles.columns)
    id_at = header.index("id")
    # missing cells as "" (like DataFrame.to_csv); rows are streamed: a million dicts is ~1 GB
    records = [
        ["" if isinstance(v, float) and math.isnan(v) else v for v in row]
        for row in styles.itertuples(index=False)
    ]
    catalogue = root / "styles.csv"
    with catalogue.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*header, "folder"])
        for i in range(total):
            row = list(records[i % len(records)])
            src = (
                FASHION / "images" / f"{row[id_at]}.jpg"
                if i < n_small
                else large_sources[i % len(large_sources)]
            )
            ident = 10_000_000 + i
            folder = f"{i // folder_size:05d}"
            dest = images / folder / f"{ident}.jpg"
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dest)
            row[id_at] = ident
            writer.writerow([*row, folder])
    return catalogue


def _baseline_one(args: tuple[str, str, bool]) -> int:
    """Plain Pillow: open, orient, draft, resize to fit the box (or only shrink), save WebP."""
    src, dest, upscale = args
    with Image.open(src) as source:
        w, h = source.size
        scale = min(BOX / w, BOX / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if scale < 0.5:
            source.draft("RGB", (size[0] * 2, size[1] * 2))
        im = ImageOps.exif_transpose(source).convert("RGB")
        if upscale or scale < 1:
            im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=None)
        im.save(dest, "WEBP", quality=QUALITY, method=4)
    return 1


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run_baseline(data: Path, out: Path, workers: int, upscale: bool) -> dict[str, Any]:
    """Time the plain multiprocessing script over the same files."""
    out.mkdir(parents=True, exist_ok=True)
    with (data / "styles.csv").open() as fh:
        jobs = [
            (
                str(data / "images" / r["folder"] / f"{r['id']}.jpg"),
                str(out / f"{r['id']}.webp"),
                upscale,
            )
            for r in csv.DictReader(fh)
        ]
    load_start = _load()
    start = time.perf_counter()
    with PeakMemory() as mem, multiprocessing.Pool(workers) as pool:
        done = sum(pool.imap_unordered(_baseline_one, jobs, chunksize=64))
    wall = time.perf_counter() - start
    return {
        "side": "baseline",
        "load_avg_1m": [load_start, _load()],
        "images": done,
        "wall_s": round(wall, 2),
        "images_per_s": round(done / wall, 1),
        "cpu_ms_per_image": round(mem.cpu_s / done * 1000, 2),
        "peak_rss_mb": round(mem.peak / 2**20),
        "peak_pss_mb": round(mem.peak_pss / 2**20),
    }


def run_flow(
    data: Path,
    out: Path,
    chunk_size: int,
    shard_size: int | None,
    run_id: str,
    operations: list[str],
) -> dict[str, Any]:
    """Time the image-pipeline flow (catalogue parse, chunks, manifest) over the same files."""
    from flows.image_pipeline import ImagePipelineParams, image_pipeline

    params = ImagePipelineParams(
        catalog=str(data / "styles.csv"),
        images=str(data / "images"),
        path_template="{folder}/{id}.jpg",
        operations=operations,
        chunk_size=chunk_size,
        shard_size=shard_size,
        out=str(out),
        run_id=run_id,
    )
    load_start = _load()
    start_epoch = time.time()
    start = time.perf_counter()
    with PeakMemory() as mem:
        summary = image_pipeline(params)
    wall = time.perf_counter() - start
    n = int(summary["processed"])
    run_dir = out / "image-pipeline" / run_id
    work = run_dir / "work"
    import pyarrow.parquet as pq

    manifest_rows = pq.read_metadata(run_dir / "metadata.parquet").num_rows
    with (run_dir / "errors.csv").open() as fh:
        error_rows = sum(1 for _ in fh) - 1
    manifests = [p.stat().st_mtime for p in work.glob("manifest-*.parquet")]
    return {
        "side": "flow",
        "load_avg_1m": [load_start, _load()],
        "images": n,
        "errors": summary["errors"],
        "selected": summary["selected"],
        "manifest_rows": manifest_rows,  # rows of metadata.parquet (one per selected image)
        "errors_csv_rows": error_rows,
        "wall_s": round(wall, 2),
        "images_per_s": round(n / wall, 1),
        "cpu_ms_per_image": round(mem.cpu_s / n * 1000, 2) if n else None,
        "peak_rss_mb": round(mem.peak / 2**20),
        "peak_pss_mb": round(mem.peak_pss / 2**20),
        "chunk_size": chunk_size,
        "shard_size": shard_size,
        # phases, from the files' modification times: plan written, last chunk manifest written
        "selected_at_s": round((work / "plan.json").stat().st_mtime - start_epoch, 1),
        "chunks_done_at_s": round(max(manifests) - start_epoch, 1) if manifests else None,
    }


def compare_outputs(baseline: Path, flow: Path, sample: int = 2000) -> dict[str, int]:
    """Byte-compare a spread sample of the baseline's outputs with the flow's (same names)."""
    names = sorted(p.name for p in baseline.iterdir())
    step = max(1, len(names) // sample)
    picked = names[::step] + names[-50:]  # the tail holds the large photos
    same = sum(1 for n in picked if (baseline / n).read_bytes() == (flow / n).read_bytes())
    return {"compared": len(picked), "identical": same}


def median_of(runs: list[dict[str, Any]], side: str) -> dict[str, Any]:
    """Median images/s, wall time and peak RSS of one side's runs."""
    mine = [r for r in runs if r["side"] == side]
    return {
        "runs": len(mine),
        "images": mine[0]["images"],
        "images_per_s": round(statistics.median(r["images_per_s"] for r in mine), 1),
        "wall_s": round(statistics.median(r["wall_s"] for r in mine), 2),
        "cpu_ms_per_image": round(statistics.median(r["cpu_ms_per_image"] for r in mine), 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
        "peak_pss_mb": max(r.get("peak_pss_mb", 0) for r in mine),
        "load_avg_1m": round(statistics.median(x for r in mine for x in r["load_avg_1m"]), 2),
    }


def use_prefect_api(ephemeral: bool) -> str:
    """Point Prefect at the running server (before Prefect is imported); else ephemeral."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if not ephemeral:
        from headwater import services

        status = services.check("prefect")
        if status.healthy:
            os.environ["PREFECT_API_URL"] = status.url
            return status.url
    return "ephemeral"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~5,000 images (< 2 minutes)")
    parser.add_argument(
        "--million", action="store_true", help="1,000,000 images with tar shards (flow only)"
    )
    parser.add_argument("--small", type=int, default=None, help="replicated 60x80 images")
    parser.add_argument("--large", type=int, default=None, help="1800x2400 images")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="keep the generated set here")
    parser.add_argument(
        "--rounds", type=int, default=2, help="baseline/flow pairs, alternated (A/B/A/B)"
    )
    parser.add_argument(
        "--ephemeral", action="store_true", help="use Prefect's ephemeral API, not the server"
    )
    parser.add_argument(
        "--transform",
        choices=sorted(TRANSFORMS),
        default="fit",
        help="fit: resize to fit 256x256 (enlarges the 60x80 samples); thumbnail: shrink only",
    )
    parser.add_argument("--name", default=None, help="results entry (default from the sizes)")
    args = parser.parse_args()
    if args.million:
        n_small, n_large, chunk, shard = 1_000_000, 0, 2000, 1000
    elif args.quick:
        n_small, n_large, chunk, shard = 4_800, 200, 500, None
    else:
        n_small, n_large, chunk, shard = 98_000, 2_000, 1000, None
    n_small = args.small if args.small is not None else n_small
    n_large = args.large if args.large is not None else n_large
    chunk = args.chunk_size or chunk
    workers = len(os.sched_getaffinity(0))
    api = use_prefect_api(args.ephemeral)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hw-bench-images-"))
    os.environ.setdefault("HEADWATER_DATA_DIR", str(work / "headwater"))
    t0 = time.perf_counter()
    build_dataset(work / "data", n_small, n_large)
    gen_s = round(time.perf_counter() - t0, 1)
    print(
        f"dataset: {n_small} small + {n_large} large images in {gen_s}s at {work}", file=sys.stderr
    )
    result: dict[str, Any] = {
        "capability": "image-pipeline",
        "command": " ".join(["uv run python bench/image_pipeline.py", *sys.argv[1:]]),
        "images_small_60x80": n_small,
        "images_large_1800x2400": n_large,
        "cpus": workers,
        "transform": TRANSFORMS[args.transform][2],
        "operations": TRANSFORMS[args.transform][0],
        "prefect_api": api,
        "dataset_build_s": gen_s,
    }
    runs: list[dict[str, Any]] = []
    result["runs"] = runs
    rounds = 1 if args.million else max(1, args.rounds)
    name = "million" if args.million else "quick" if args.quick else f"n{n_small + n_large}"
    if args.transform != "fit":
        name += f"-{args.transform}"
    name = args.name or name
    try:
        for r in range(rounds):
            base_out, flow_out = work / "baseline-out", work / "flow-out"
            if not args.million:
                runs.append(
                    run_baseline(work / "data", base_out, workers, TRANSFORMS[args.transform][1])
                )
                print(f"round {r + 1} baseline: {runs[-1]}", file=sys.stderr)
                save_result(name, summarise(result))  # partial results survive an interruption
            run_id = f"bench-{r + 1}-{int(time.time())}"
            runs.append(
                run_flow(
                    work / "data", flow_out, chunk, shard, run_id, TRANSFORMS[args.transform][0]
                )
            )
            print(f"round {r + 1} flow: {runs[-1]}", file=sys.stderr)
            if not args.million and shard is None and r == 0:
                result["outputs_compared"] = compare_outputs(
                    base_out, flow_out / "image-pipeline" / run_id / "images"
                )
                print(f"outputs: {result['outputs_compared']}", file=sys.stderr)
            shutil.rmtree(base_out, ignore_errors=True)
            shutil.rmtree(flow_out, ignore_errors=True)
            save_result(name, summarise(result))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Add the medians and ratios of the runs so far to `result` (in place) and return it."""
    runs = result["runs"]
    for side in ("baseline", "flow"):
        if any(r["side"] == side for r in runs):
            result[side] = median_of(runs, side)
    if "baseline" in result and "flow" in result:
        result["ratio_flow_vs_baseline"] = round(
            result["flow"]["images_per_s"] / result["baseline"]["images_per_s"], 3
        )
        # > 1: the flow spends less CPU per image than the script (load-independent)
        result["cpu_ratio_baseline_vs_flow"] = round(
            result["baseline"]["cpu_ms_per_image"] / result["flow"]["cpu_ms_per_image"], 3
        )
        result["ratio_per_pair"] = [
            round(f["images_per_s"] / b["images_per_s"], 3)
            for b, f in zip(runs[0::2], runs[1::2], strict=False)
        ]
    return result


def save_result(name: str, result: dict[str, Any]) -> None:
    """Write `result` under `name` in bench/results/image_pipeline.json (other entries kept)."""
    out = ROOT / "bench" / "results" / "image_pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing[name] = result
    out.write_text(json.dumps(existing, indent=2) + "\n")


if __name__ == "__main__":
    main()
