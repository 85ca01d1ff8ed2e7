"""A real browser (Debian's chromium, headless, Playwright) on the Prefect UI of a finished run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.settings import get_settings
from tests.conftest import in_ci
from tests.integration.orchestration_fixtures import *  # noqa: F403 - fixtures
from tests.integration.orchestration_fixtures import artifacts_by_type

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
FASHION = SHARED / "images" / "fashion"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium (never a downloaded browser)."""
    if not CHROMIUM.exists():
        msg = "chromium is missing; apt-get install chromium"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return CHROMIUM


@pytest.fixture(scope="module")
def image_run(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A completed image-pipeline run (in-process, reported to the server); its summary."""
    pytest.importorskip("flows.image_pipeline", reason="image-pipeline capability not landed")
    from prefect.runtime import flow_run  # noqa: F401

    from flows.image_pipeline import ImagePipelineParams, image_pipeline

    tmp = tmp_path_factory.mktemp("ui-run")
    old = os.environ.get("HEADWATER_DATA_DIR")
    os.environ["HEADWATER_DATA_DIR"] = str(tmp / "data")
    get_settings.cache_clear()
    try:
        state = image_pipeline(
            ImagePipelineParams(
                catalog=str(FASHION / "styles.csv"),
                images=str(FASHION / "images"),
                limit=8,
                chunk_size=4,
                operations=["resize:32x32", "format:png"],
                out=str(tmp / "out"),
                workers=1,
            ),
            return_state=True,
        )
    finally:
        if old is None:
            os.environ.pop("HEADWATER_DATA_DIR", None)
        else:
            os.environ["HEADWATER_DATA_DIR"] = old
        get_settings.cache_clear()
    assert state.is_completed(), state
    return {"flow_run_id": str(state.state_details.flow_run_id), **state.result()}


def test_ui_shows_progress_and_report_of_completed_run(
    api: httpx.Client, chromium: Path, image_run: dict[str, Any], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    run_id = image_run["flow_run_id"]
    arts = artifacts_by_type(api, run_id)
    progress_key = arts["progress"][0]["key"]
    table_key = arts["table"][0]["key"]
    ui = api.base_url.join("/").__str__().rstrip("/")
    shot = tmp_path / "flow-run-artifacts.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="domcontentloaded")
            expect(page.get_by_text("Completed").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "flow-run.png"), full_page=True)
            page.get_by_text("Artifacts", exact=True).first.click()
            expect(page.get_by_text(progress_key).first).to_be_visible(timeout=60_000)
            expect(page.get_by_text(table_key).first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
