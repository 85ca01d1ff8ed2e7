"""The container-job and tool-pipeline flows on the embedded defaults (local store, SQLite).

The Docker Engine is real (`headwater services up docker`); MinIO/PostgreSQL runs are in
tests/integration/test_container_*.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.container_jobs import (
    ContainerJobRequest,
    Pipeline,
    PipelineRequest,
    container_job,
    load_pipeline,
    plan_jobs,
    tool_pipeline,
)
from headwater.errors import InputError
from headwater.settings import Settings
from headwater.storage import get_store
from tasks.containers import collect_outputs, load_records, retry_on_transient
from tasks.tool_registry import get_tool
from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]


def test_flow_module_imports_in_a_fresh_interpreter() -> None:
    code = "import flows.container_jobs as m; print(m.container_job.name, m.tool_pipeline.name)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["container-job", "tool-pipeline"]


def test_example_pipeline_is_valid() -> None:
    pipe = load_pipeline(REPO / "examples" / "pipelines" / "dock.yaml")
    assert [s.name for s in pipe.steps] == ["split", "gen3d", "descriptors", "dock"]
    assert pipe.inputs == ["ligands", "receptor"]


def test_pipeline_rejects_unknown_sources() -> None:
    with pytest.raises(ValidationError, match="not an input or earlier step"):
        Pipeline(
            name="p",
            inputs=["a"],
            steps=[
                {"name": "one", "tool": "sleep", "inputs": {"x": "later"}},
                {"name": "later", "tool": "sleep", "inputs": {}},
            ],
        )


def test_plan_jobs_fans_out_and_labels() -> None:
    jobs = plan_jobs("obabel-convert", ["k/a.sdf", "k/b b.sdf"], {"gen3d": "yes"}, [])
    assert [j.label for j in jobs] == ["00000-a", "00001-b_b"]
    assert jobs[0].params["gen3d"] is True
    with pytest.raises(InputError, match="not allowed"):
        plan_jobs("obabel-convert", ["k/../x.sdf"], {}, [])


def test_retry_only_on_transient_errors() -> None:
    import requests
    from prefect.states import Failed

    def state(exc: Exception) -> Failed:
        return Failed(data=exc)

    assert retry_on_transient(None, None, state(requests.exceptions.ConnectionError("down")))
    assert not retry_on_transient(None, None, state(InputError("bad input")))


def test_collect_outputs_never_follows_symlinks(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("ok")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.csv").write_text("1")
    (tmp_path / "leak").symlink_to("/etc/passwd")
    (tmp_path / "leakdir").symlink_to("/etc")
    found = dict(
        collect_outputs(get_tool("sleep").model_copy(update={"outputs": ["**/*"]}), tmp_path)
    )
    assert set(found) == {"good.txt", "sub/x.csv"}


@pytest.mark.integration
def test_sleep_job_on_local_defaults(local_settings: Settings) -> None:
    require_service("docker")
    state = container_job(
        ContainerJobRequest(tool="sleep", params={"seconds": 0.2}), return_state=True
    )
    assert state.is_completed(), state.message
    [record] = load_records(local_settings, str(state.state_details.flow_run_id))
    assert record["status"] == "completed" and record["exit_code"] == 0
    assert get_store(local_settings).get_bytes(record["outputs"][0]) == b"slept 0.2\n"
    assert b"slept 0.2" in get_store(local_settings).get_bytes(record["log_key"])


@pytest.mark.integration
def test_pipeline_stops_when_a_step_has_no_outputs(
    local_settings: Settings, tmp_path: Path
) -> None:
    require_service("docker")
    store = get_store(local_settings)
    bad = store.put_bytes(
        "tests/pipe/invalid.mol",
        (local_settings.shared_data_dir / "chem" / "rdkit" / "invalid.mol").read_bytes(),
    )
    pipe = load_pipeline(REPO / "examples" / "pipelines" / "dock.yaml")
    pdb = store.put_bytes("tests/pipe/r.pdb", b"ATOM  \nEND\n")
    state = tool_pipeline(
        PipelineRequest(pipeline=pipe, inputs={"ligands": [bad], "receptor": [pdb]}),
        return_state=True,
    )
    assert state.is_failed()
    assert "step gen3d: no files for molecules" in state.message
    records = load_records(local_settings, str(state.state_details.flow_run_id))
    assert [(r["step"], r["status"]) for r in records] == [("split", "failed")]


def test_split_sdf_records() -> None:
    from tasks.containers import split_sdf_records

    data = b"A\n  x\n\nM  END\n$$$$\r\nB\n\nM  END\n$$$$\n\n"
    assert split_sdf_records(data) == [
        ("A", b"A\n  x\n\nM  END\n$$$$\n"),
        ("B", b"B\n\nM  END\n$$$$\n"),
    ]
