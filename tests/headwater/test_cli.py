"""The CLI: help everywhere, and bad configuration as one line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from headwater.cli import app


def _headwater(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize("args", [[], ["services"], ["blocks"], ["run"], ["check"], ["server"]])
def test_help_everywhere(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        (
            {
                "HEADWATER_STORAGE": "s3",
                "HEADWATER_S3_ENDPOINT_URL": "http://127.0.0.1:1",
                "HEADWATER_S3_ACCESS_KEY": "a",
                "HEADWATER_S3_SECRET_KEY": "b",
            },
            "HEADWATER_S3_ENDPOINT_URL",
        ),
        ({"HEADWATER_IMAP_SOURCE_PORT": "not-a-port"}, "HEADWATER_IMAP_SOURCE_PORT"),
        ({"HEADWATER_DATABASE_URL": "nosuchdb://x"}, "HEADWATER_DATABASE_URL"),
        ({"HEADWATER_STORAGE": "ftp"}, "HEADWATER_STORAGE"),
        ({"PREFECT_API_URL": "http://127.0.0.1:1/api"}, "PREFECT_API_URL"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_setting(
    env: dict[str, str], setting: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    result = _headwater("check", HEADWATER_DATA_DIR=str(tmp_path), **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {setting}")
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_wrong_database_password_names_setting(postgres_service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = "postgresql+psycopg://headwater:wrong@127.0.0.1:55432/headwater"
    result = _headwater("check", HEADWATER_DATA_DIR=str(tmp_path), HEADWATER_DATABASE_URL=url)
    assert result.returncode == 2
    assert result.stderr.startswith("error: HEADWATER_DATABASE_URL")
    assert "password authentication failed" in result.stderr
    assert "wrong" not in result.stderr


def test_check_passes_on_embedded_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _headwater("check", "--json", HEADWATER_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "local folder" in result.stdout
