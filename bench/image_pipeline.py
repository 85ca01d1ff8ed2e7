"""Benchmark: the image-pipeline flow vs a plain multiprocessing Pillow script, same files, one run.

Usage: uv run python bench/image_pipeline.py [--quick | --million] [--small N] [--large N]

Builds a set by replicating the sample JPEGs under new ids (hard links) plus a set of
1800x2400 photos, then times (1) a plain `multiprocessing.Pool` Pillow script and (2) the flow,
both doing resize-to-fit 256x256 + WebP q90 on the same files. Peak memory is the largest
resident set of the process tree (parent + pool workers). Writes bench/results/image_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FASHION = Path("/work/shared/data/images/fashion")
BOX = 256
QUALITY = 90


class PeakMemory:
    """Samples the RSS of this process and its children; `peak` in bytes."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
    rows = []
    total = n_small + n_large
    for i in range(total):
        base = styles.iloc[i % len(styles)]
        ident = 10_000_000 + i
        folder = f"{i // folder_size:05d}"
        src = (
            FASHION / "images" / f"{base['id']}.jpg"
            if i < n_small
            else large_sources[i % len(large_sources)]
        )
        dest = images / folder / f"{ident}.jpg"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dest)
        rows.append({**base.to_dict(), "id": ident, "folder": folder})
    catalogue = root / "styles.csv"
    pd.DataFrame(rows).to_csv(catalogue, index=False)
    return catalogue


def _baseline_one(args: tuple[str, str]) -> int:
    """Plain Pillow: open, orient, draft, resize to fit the box, save WebP."""
    src, dest = args
    with Image.open(src) as im:
        w, h = im.size
        scale = min(BOX / w, BOX / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if scale < 0.5:
            im.draft("RGB", (size[0] * 2, size[1] * 2))
        im = ImageOps.exif_transpose(im).convert("RGB")
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=None)
        im.save(dest, "WEBP", quality=QUALITY, method=4)
    return 1


def run_baseline(data: Path, out: Path, workers: int) -> dict[str, float]:
    """Time the plain multiprocessing script over the same files."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with (data / "styles.csv").open() as fh:
        jobs = [
            (str(data / "images" / r["folder"] / f"{r['id']}.jpg"), str(out / f"{r['id']}.webp"))
            for r in csv.DictReader(fh)
        ]
    start = time.perf_counter()
    with PeakMemory() as mem, multiprocessing.Pool(workers) as pool:
        done = sum(pool.imap_unordered(_baseline_one, jobs, chunksize=64))
    wall = time.perf_counter() - start
    return {
        "images": done,
        "wall_s": round(wall, 2),
        "images_per_s": round(done / wall, 1),
        "peak_rss_mb": round(mem.peak / 2**20),
    }


def run_flow(data: Path, out: Path, chunk_size: int, shard_size: int | None) -> dict[str, object]:
    """Time the image-pipeline flow (catalogue parse, chunks, manifest) over the same files."""
    from flows.image_pipeline import ImagePipelineParams, image_pipeline

    params = ImagePipelineParams(
        catalog=str(data / "styles.csv"),
        images=str(data / "images"),
        path_template="{folder}/{id}.jpg",
        operations=[f"resize:{BOX}x{BOX}", f"format:webp:{QUALITY}"],
        chunk_size=chunk_size,
        shard_size=shard_size,
        out=str(out),
        run_id=f"bench-{int(time.time())}",
    )
    start = time.perf_counter()
    with PeakMemory() as mem:
        summary = image_pipeline(params)
    wall = time.perf_counter() - start
    n = int(summary["processed"])
    return {
        "images": n,
        "errors": summary["errors"],
        "manifest_rows": summary["selected"],
        "wall_s": round(wall, 2),
        "images_per_s": round(n / wall, 1),
        "peak_rss_mb": round(mem.peak / 2**20),
        "chunk_size": chunk_size,
        "shard_size": shard_size,
    }


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
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hw-bench-images-"))
    os.environ.setdefault("HEADWATER_DATA_DIR", str(work / "headwater"))
    t0 = time.perf_counter()
    build_dataset(work / "data", n_small, n_large)
    gen_s = round(time.perf_counter() - t0, 1)
    print(
        f"dataset: {n_small} small + {n_large} large images in {gen_s}s at {work}", file=sys.stderr
    )
    result: dict[str, object] = {
        "capability": "image-pipeline",
        "command": " ".join(["uv run python bench/image_pipeline.py", *sys.argv[1:]]),
        "images_small_60x80": n_small,
        "images_large_1800x2400": n_large,
        "cpus": workers,
        "transform": f"resize to fit {BOX}x{BOX} (Lanczos), WebP q{QUALITY}",
        "dataset_build_s": gen_s,
    }
    try:
        if not args.million:
            result["baseline"] = run_baseline(work / "data", work / "baseline-out", workers)
            print(f"baseline: {result['baseline']}", file=sys.stderr)
        result["flow"] = run_flow(work / "data", work / "flow-out", chunk, shard)
        print(f"flow: {result['flow']}", file=sys.stderr)
        if "baseline" in result:
            result["ratio_flow_vs_baseline"] = round(
                result["flow"]["images_per_s"] / result["baseline"]["images_per_s"],
                3,  # type: ignore[index]
            )
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results" / "image_pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    name = "million" if args.million else "quick" if args.quick else f"n{n_small + n_large}"
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing[name] = result
    out.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
