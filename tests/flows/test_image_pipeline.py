"""End-to-end runs of the image-pipeline flow on local folders (the artifact store in a tmp dir)."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from flows.image_pipeline import ImagePipelineParams, image_pipeline
from headwater.errors import InputError

FASHION = Path("/work/shared/data/images/fashion")
BAD_IDS = {
    "900001": "zero-byte",
    "900002": "truncated",
    "900003": "not an image",
    "900004": "decompression bomb",
}


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample with extra rows whose images are broken in each way."""
    root = tmp_path_factory.mktemp("fashion")
    shutil.copytree(FASHION / "images", root / "images")
    sample = (FASHION / "images" / "10025.jpg").read_bytes()
    (root / "images" / "900001.jpg").write_bytes(b"")
    (root / "images" / "900002.jpg").write_bytes(sample[: len(sample) // 3])
    (root / "images" / "900003.jpg").write_text("<html>not a picture</html>")
    Image.new("L", (1500, 1000)).save(root / "images" / "900004.jpg", "JPEG")
    text = (FASHION / "styles.csv").read_text()
    for ident in BAD_IDS:
        text += f"{ident},Women,Apparel,Topwear,Tshirts,Red,Summer,2016,Casual,Broken {ident}\n"
    (root / "styles.csv").write_text(text)
    return root


def reference(fashion: Path) -> pd.DataFrame:
    return pd.read_csv(fashion / "styles.csv", on_bad_lines="skip")


def params(fashion: Path, **kw) -> ImagePipelineParams:  # type: ignore[no-untyped-def]
    base = {
        "catalog": str(fashion / "styles.csv"),
        "images": str(fashion / "images"),
        "operations": ["resize:128x128", "format:webp:80"],
        "max_pixels": 1_000_000,
        "chunk_size": 100,
    }
    return ImagePipelineParams(**{**base, **kw})


def run_dir(settings, run_id: str) -> Path:  # type: ignore[no-untyped-def]
    return settings.artifacts_dir / "image-pipeline" / run_id


def test_full_run_manifest_errors_and_resume(fashion: Path, local_settings) -> None:  # type: ignore[no-untyped-def]
    summary = image_pipeline(params(fashion, run_id="full", features=True))
    ref = reference(fashion)
    out = run_dir(local_settings, "full")
    assert summary["selected"] == len(ref) == 316
    assert summary["processed"] == 316 - 2 - len(BAD_IDS)
    assert summary["malformed_lines"] == [37, 41, 46, 51, 57, 65]

    meta = pd.read_parquet(out / "metadata.parquet")
    meta_csv = pd.read_csv(out / "metadata.csv")
    assert len(meta) == len(meta_csv) == 316
    assert sorted(meta["id"]) == sorted(ref["id"])
    for col in [
        *ref.columns,
        "catalog_line",
        "output_key",
        "width",
        "height",
        "bytes",
        "sha256",
        "phash",
        "predicted_colour",
        "status",
    ]:
        assert col in meta.columns and col in meta_csv.columns
    ok = meta[meta["status"] == "ok"]
    for row in ok.itertuples():
        data = (local_settings.artifacts_dir / row.output_key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256 and len(data) == row.bytes
        img = Image.open(io.BytesIO(data))
        assert img.format == "WEBP" and img.size == (row.width, row.height) == (96, 128)
    assert ok["phash"].str.len().eq(16).all()
    assert set(ok["predicted_colour"]) <= set(ref["baseColour"].dropna())

    errors = pd.read_csv(out / "errors.csv", dtype=str)
    by_id = dict(zip(errors["id"], errors["reason"], strict=True))
    for ident in ("44065", "3413", "23101", "23108", "4854", "23109"):
        assert "expected 10 fields, saw 11" in by_id[ident]
    assert errors.set_index("id").loc["44065", "stage"] == "catalog"
    assert "line 37" in by_id["44065"]
    assert "missing image" in by_id["39403"] and "missing image" in by_id["39410"]
    for ident, reason in BAD_IDS.items():
        assert reason in by_id[ident]
    assert len(errors) == 6 + 2 + len(BAD_IDS)

    # resume: forget one chunk's work, re-run with the same id, only that chunk is redone
    manifests = sorted((out / "work").glob("manifest-*.parquet"))
    assert len(manifests) == 4
    stamps = {m.name: m.stat().st_mtime_ns for m in manifests}
    manifests[2].unlink()
    redo = meta.sort_values("catalog_line").iloc[200:300]  # chunk 2 (chunks follow the catalogue)
    for key in redo["output_key"].dropna():
        (local_settings.artifacts_dir / key).unlink(missing_ok=True)
    again = image_pipeline(params(fashion, run_id="full", features=True))
    assert again["chunks_skipped"] == 3 and again["chunks_processed"] == 1
    assert again["processed"] == summary["processed"]
    after = {m.name: m.stat().st_mtime_ns for m in (out / "work").glob("manifest-*.parquet")}
    assert {k: v for k, v in after.items() if k != manifests[2].name} == {
        k: v for k, v in stamps.items() if k != manifests[2].name
    }
    assert all((local_settings.artifacts_dir / k).exists() for k in meta["output_key"].dropna())
    assert (
        pd.read_parquet(out / "metadata.parquet").sort_values("id")["sha256"].tolist()
        == meta.sort_values("id")["sha256"].tolist()
    )


def test_filtered_sharded_run(fashion: Path, local_settings) -> None:  # type: ignore[no-untyped-def]
    expr = 'gender == "Men" and masterCategory in ["Footwear", "Accessories"] and year >= 2012'
    summary = image_pipeline(
        params(
            fashion,
            run_id="shards",
            filter=expr,
            shard_size=10,
            operations=["crop:64", "grayscale", "format:png"],
        )
    )
    ref = reference(fashion)
    want = ref[
        (ref.gender == "Men")
        & ref.masterCategory.isin(["Footwear", "Accessories"])
        & (ref.year >= 2012)
    ]
    assert summary["selected"] == len(want) > 10
    meta = pd.read_parquet(run_dir(local_settings, "shards") / "metadata.parquet")
    assert sorted(meta["id"]) == sorted(want["id"])
    members = {}
    for tar_path in (run_dir(local_settings, "shards") / "shards").glob("*.tar"):
        with tarfile.open(tar_path) as tar:
            for info in tar.getmembers():
                members[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    ok = meta[meta["status"] == "ok"]
    assert len(members) == len(ok)
    for row in ok.itertuples():
        data = members[row.member]
        assert hashlib.sha256(data).hexdigest() == row.sha256
        img = Image.open(io.BytesIO(data))
        assert (img.format, img.mode, img.size) == ("PNG", "L", (64, 64))


def test_filter_selecting_nothing_gives_empty_manifest(fashion: Path, local_settings) -> None:  # type: ignore[no-untyped-def]
    summary = image_pipeline(params(fashion, run_id="empty", filter='season == "Monsoon"'))
    assert summary["empty"] is True and summary["selected"] == 0 and summary["processed"] == 0
    out = run_dir(local_settings, "empty")
    assert len(pd.read_parquet(out / "metadata.parquet")) == 0
    assert "productDisplayName" in pd.read_csv(out / "metadata.csv").columns
    assert not (out / "images").exists()


def test_bad_filter_refused_before_any_image(fashion: Path, local_settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=r"unknown column 'colour'.*baseColour"):
        image_pipeline(params(fashion, run_id="bad", filter='colour == "Red"'))
    with pytest.raises(InputError, match="function calls"):
        image_pipeline(params(fashion, run_id="bad2", filter='__import__("os").getcwd() == 1'))
    assert not (run_dir(local_settings, "bad") / "images").exists()


def test_cli_json_and_limit(fashion: Path, local_settings) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from headwater.cli import app

    args = [
        "run",
        "image-pipeline",
        "--catalog",
        str(fashion / "styles.csv"),
        "--images",
        str(fashion / "images"),
    ]
    args += ["--filter", 'gender == "Women"', "--op", "thumbnail:32x32", "--op", "format:png"]
    args += ["--limit", "7", "--run-id", "cli", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["selected"] == 7 and summary["processed"] == 7
    pngs = sorted((run_dir(local_settings, "cli") / "images").glob("*.png"))
    assert len(pngs) == 7 and all(max(Image.open(p).size) == 32 for p in pngs)
    bad = CliRunner().invoke(app, [*args[:6], "--op", "blur:3"])
    assert isinstance(bad.exception, InputError) and "blur:3" in str(bad.exception)


def test_entrypoint_loads_in_fresh_interpreter() -> None:
    import subprocess
    import sys

    code = (
        "from prefect.flows import load_flow_from_entrypoint as load;"
        "f = load('flows/image_pipeline.py:image_pipeline'); print(f.name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "image-pipeline"
