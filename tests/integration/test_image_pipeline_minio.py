"""The image pipeline against the real local MinIO: catalogue, images and outputs all in S3."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from flows.image_pipeline import ImagePipelineParams, image_pipeline
from headwater.storage import get_store

FASHION = Path("/work/shared/data/images/fashion")

pytestmark = pytest.mark.integration


def test_run_through_minio(s3_settings) -> None:  # type: ignore[no-untyped-def]
    store = get_store(s3_settings)
    prefix = f"test-inputs/{uuid.uuid4().hex[:10]}"
    run_id = f"minio-{uuid.uuid4().hex[:8]}"
    try:
        store.put_file(f"{prefix}/styles.csv", FASHION / "styles.csv")
        for path in sorted((FASHION / "images").glob("*.jpg")):
            store.put_file(f"{prefix}/photos/{path.name}", path)
        expr = (
            'masterCategory == "Apparel" and baseColour in ["Black", "Blue", "White"]'
            " or year == 2017"
        )
        summary = image_pipeline(
            ImagePipelineParams(
                catalog=f"{prefix}/styles.csv",  # a key of the S3 artifact store
                images=f"s3://{s3_settings.s3_bucket}/{prefix}",
                path_template="photos/{id}.jpg",
                filter=expr,
                operations=["thumbnail:40x40", "pad", "format:jpeg:85"],
                chunk_size=40,
                run_id=run_id,
            )
        )
        ref = pd.read_csv(FASHION / "styles.csv", on_bad_lines="skip")
        want = ref[
            (ref.masterCategory == "Apparel") & ref.baseColour.isin(["Black", "Blue", "White"])
            | (ref.year == 2017)
        ]
        assert summary["selected"] == len(want)
        base = f"image-pipeline/{run_id}"
        meta = pd.read_csv(io.BytesIO(store.get_bytes(f"{base}/metadata.csv")))
        pmeta = pd.read_parquet(io.BytesIO(store.get_bytes(f"{base}/metadata.parquet")))
        assert sorted(meta["id"]) == sorted(pmeta["id"]) == sorted(want["id"])
        missing = set(want["id"]) & {39403, 39410}
        ok = meta[meta["status"] == "ok"]
        assert len(ok) == len(want) - len(missing) == summary["processed"]
        for row in ok.head(25).itertuples():
            data = store.get_bytes(row.output_key)
            assert hashlib.sha256(data).hexdigest() == row.sha256
            img = Image.open(io.BytesIO(data))
            assert img.format == "JPEG" and img.size == (40, 40) == (row.width, row.height)
        errors = pd.read_csv(io.BytesIO(store.get_bytes(f"{base}/errors.csv")), dtype=str)
        assert {"44065", "3413", "23101", "23108", "4854", "23109"} <= set(errors["id"])
        for ident in missing:
            assert "missing image" in errors.set_index("id").loc[str(ident), "reason"]
        # resume: the same run id does no chunk again
        again = image_pipeline(
            ImagePipelineParams(
                catalog=f"{prefix}/styles.csv",
                images=f"s3://{s3_settings.s3_bucket}/{prefix}",
                path_template="photos/{id}.jpg",
                filter=expr,
                operations=["thumbnail:40x40", "pad", "format:jpeg:85"],
                chunk_size=40,
                run_id=run_id,
            )
        )
        assert again["chunks_processed"] == 0 and again["chunks_skipped"] == summary["chunks"]
        assert again["processed"] == summary["processed"]
    finally:
        store.delete_prefix(prefix + "/")
        store.delete_prefix(f"image-pipeline/{run_id}/")
