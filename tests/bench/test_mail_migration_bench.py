"""Smoke run of bench/mail_migration.py on a tiny mailbox (numbers are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_mail_bench_smoke(
    imap_source_service: Any, imap_dest_service: Any, prefect_api: str, tmp_path: Path
) -> None:
    out = tmp_path / "mail.json"
    cmd = [sys.executable, "bench/mail_migration.py", "--messages", "40", "--user", "carol"]
    proc = subprocess.run(
        [*cmd, "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["messages"] == 40
    assert result["baseline_sequential"]["messages_per_s"] > 0
    assert result["headwater"]["messages_per_s"] > 0
