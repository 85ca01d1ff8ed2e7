"""The leak-detection flow end to end: PostgreSQL, artifact store, Prefect server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from headwater.db import get_engine
from headwater.models.leak import LeakEvent, LeakSensor
from headwater.settings import Settings, get_settings
from headwater.storage import get_store
from tasks.leak_io import read_nab_file
from tasks.timeseries import ingest_frame, prepare_database
from tests.conftest import require_service

NAB = Path(get_settings().shared_data_dir) / "timeseries" / "nab"
TEST_DB = "leak_flow_test"


@pytest.fixture
def leak_db(s3_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database as Headwater's own database (artifact store: MinIO)."""
    require_service("postgres")
    admin = (
        get_settings()
        .postgres_url.get_secret_value()
        .replace("postgresql+psycopg://", "postgresql://")
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEST_DB}")
    url = get_settings().postgres_url.get_secret_value().rsplit("/", 1)[0] + f"/{TEST_DB}"
    monkeypatch.setenv("HEADWATER_DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    prepare_database(url)
    yield url
    get_engine(url).dispose()
    get_engine.cache_clear()


@pytest.mark.integration
def test_flow_scores_groups_and_publishes_report(leak_db: str, prefect_api: str) -> None:
    from flows.leak_detection import LeakDetectionParams, leak_detection

    df = read_nab_file(NAB / "data" / "artificialWithAnomaly" / "art_daily_jumpsup.csv")
    ingest_frame(leak_db, df, "art")
    short = df.iloc[:50].assign(sensor="short")
    ingest_frame(leak_db, short, "other")
    now = df.ts.iloc[-1].to_pydatetime()
    state = leak_detection(
        LeakDetectionParams(open_threshold=0.7, close_threshold=0.3, now=now), return_state=True
    )
    assert state.is_completed(), state.message
    out = state.result()
    assert out["groups"] == 2 and out["sensors"] == 2 and out["new_points"] == len(df) + 50
    assert out["opened"] >= 1 and out["errors"] == []
    assert out["offline"] == ["short"]
    with Session(get_engine(leak_db)) as s:
        events = s.scalars(select(LeakEvent)).all()
        statuses = dict(s.execute(select(LeakSensor.name, LeakSensor.status)).all())
    assert events and statuses == {"art_daily_jumpsup": "online", "short": "offline"}
    store = get_store()
    run_id = str(state.state_details.flow_run_id)
    keys = store.list(f"leak-detection/{run_id}/")
    assert f"leak-detection/{run_id}/summary.md" in keys
    assert b"# Leak detection run" in store.get_bytes(f"leak-detection/{run_id}/summary.md")
    # the alerting sensor got a plot (series + score + event spans)
    assert any(k.endswith("plots/art_daily_jumpsup.png") for k in keys)
    assert store.get_bytes(out["plots"][0])[:4] == b"\x89PNG"
    # a second run finds nothing new
    again = leak_detection(LeakDetectionParams(open_threshold=0.7, now=now, plots=False))
    assert again["new_points"] == 0


def test_flow_entrypoint_loads_in_fresh_interpreter() -> None:
    code = (
        "from prefect.flows import load_flow_from_entrypoint as l;"
        "print(l('flows/leak_detection.py:leak_detection').name);"
        "print(l('flows/leak_detection.py:leak_baseline_augment').name)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["leak-detection", "leak-baseline-augment"]
