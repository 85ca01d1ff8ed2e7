"""Real chemistry in containers: Open Babel conversion and descriptors, a Vina docking pipeline.

Against the Docker Engine, MinIO and PostgreSQL of `headwater services up`.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from flows.container_jobs import (
    ContainerJobRequest,
    PipelineRequest,
    container_job,
    load_pipeline,
    tool_pipeline,
)
from headwater.settings import Settings, get_settings
from headwater.storage import get_store
from tasks.containers import load_records
from tests.integration.conftest import count_containers

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leftover_containers")]

CHEM = get_settings().shared_data_dir / "chem"
CDK2 = CHEM / "rdkit" / "cdk2.sdf"
DRF = CHEM / "openbabel" / "1DRF.pdb"
REPO = Path(__file__).resolve().parents[2]
OB_IMAGE = "headwater/tool-openbabel:3.1.1-1"


def _upload(settings: Settings, path: Path, name: str | None = None) -> str:
    key = f"tests/container-jobs/inputs/{name or path.name}"
    get_store(settings).put_file(key, path)
    return key


def _records(settings: Settings, state) -> list[dict]:  # type: ignore[no-untyped-def]
    return load_records(settings, str(state.state_details.flow_run_id))


def _sdf_heavy_atoms(text_: str) -> list[int]:
    counts = []
    for block in text_.split("$$$$"):
        lines = block.strip("\n").splitlines()
        if len(lines) < 4:
            continue
        n = int(lines[3][:3])
        counts.append(sum(1 for line in lines[4 : 4 + n] if line.split()[3] != "H"))
    return counts


def _mol2_atoms(text_: str) -> list[list[tuple[str, float, float, float]]]:
    mols: list[list[tuple[str, float, float, float]]] = []
    section = None
    for line in text_.splitlines():
        if line.startswith("@<TRIPOS>"):
            section = line[9:]
            if section == "MOLECULE":
                mols.append([])
            continue
        if section == "ATOM" and line.strip():
            f = line.split()
            mols[-1].append((f[5].split(".")[0], float(f[2]), float(f[3]), float(f[4])))
    return mols


def test_convert_cdk2_to_mol2_with_3d_coordinates(cj_settings: Settings) -> None:
    key = _upload(cj_settings, CDK2)
    state = container_job(
        ContainerJobRequest(
            tool="obabel-convert", inputs=[key], params={"format": "mol2", "gen3d": True}
        ),
        return_state=True,
    )
    assert state.is_completed(), state.message
    [record] = _records(cj_settings, state)
    assert record["status"] == "completed" and record["exit_code"] == 0
    assert record["image_id"].startswith("sha256:")
    [out] = [k for k in record["outputs"] if k.endswith(".mol2")]
    assert out.startswith(f"container-jobs/{record['flow_run_id']}/obabel-convert/")
    mols = _mol2_atoms(get_store(cj_settings).get_bytes(out).decode())
    expected = _sdf_heavy_atoms(CDK2.read_text())
    assert len(expected) == 47
    assert [sum(1 for a in m if a[0] != "H") for m in mols] == expected
    for atoms in mols:
        assert any(a[0] == "H" for a in atoms)  # --gen3d adds hydrogens
        zs = [a[3] for a in atoms]
        assert max(zs) - min(zs) > 0.5  # real 3D, not a flat 2D layout
    log = get_store(cj_settings).get_bytes(record["log_key"]).decode()
    assert "47 molecule(s) written" in log


def test_descriptors_match_open_babel_run_directly(cj_settings: Settings) -> None:
    key = _upload(cj_settings, CDK2)
    state = container_job(
        ContainerJobRequest(tool="obabel-descriptors", inputs=[key]), return_state=True
    )
    assert state.is_completed(), state.message
    [record] = _records(cj_settings, state)
    [out] = record["outputs"]
    rows = list(csv.DictReader(io.StringIO(get_store(cj_settings).get_bytes(out).decode())))
    assert len(rows) == 47
    direct = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{CDK2}:/d/cdk2.sdf:ro",
            OB_IMAGE,
            "obabel",
            "/d/cdk2.sdf",
            "-otxt",
            "--append",
            "MW TPSA",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    reference = [line.split() for line in direct if line.strip()]
    assert len(reference) == 47
    for row, (title, mw, tpsa) in zip(rows, reference, strict=True):
        assert row["title"] == title
        assert abs(float(row["MW"]) - float(mw)) < 0.1
        assert abs(float(row["TPSA"]) - float(tpsa)) < 0.1
        assert 100 < float(row["MW"]) < 600 and -5 < float(row["logP"]) < 8


def test_fan_out_bad_input_fails_only_its_own_job(cj_settings: Settings) -> None:
    keys = [
        _upload(cj_settings, CHEM / "rdkit" / "chiral.mol"),
        _upload(cj_settings, CHEM / "rdkit" / "invalid.mol"),
        _upload(cj_settings, CHEM / "rdkit" / "4FTR_lig.mol"),
        _upload(cj_settings, CHEM / "openbabel" / "alanine.mol"),
    ]
    state = container_job(
        ContainerJobRequest(
            tool="obabel-convert", inputs=keys, params={"format": "sdf"}, concurrency=2
        ),
        return_state=True,
    )
    assert state.is_failed()
    assert "1 of 4 job(s) failed" in state.message and "invalid" in state.message
    records = {r["label"].split("-", 1)[1]: r for r in _records(cj_settings, state)}
    assert set(records) == {"chiral", "invalid", "4FTR_lig", "alanine"}
    bad = records.pop("invalid")
    assert bad["status"] == "failed" and bad["exit_code"] == 2
    assert "valence" in get_store(cj_settings).get_bytes(bad["log_key"]).decode()
    for rec in records.values():
        assert rec["status"] == "completed", rec
        [out] = rec["outputs"]
        assert get_store(cj_settings).get_bytes(out).count(b"$$$$") == 1
    # the records landed in PostgreSQL
    engine = create_engine(cj_settings.sqlalchemy_url())
    with engine.connect() as conn:
        statuses = conn.execute(
            text(
                "SELECT status, count(*) FROM calculations WHERE flow_run_id = :r GROUP BY status"
            ),
            {"r": str(state.state_details.flow_run_id)},
        ).all()
    engine.dispose()
    assert dict(statuses) == {"completed": 3, "failed": 1}


def test_docking_pipeline_scores_folate_in_dhfr_and_reuses_steps(
    cj_settings: Settings, tmp_path: Path
) -> None:
    ligand = tmp_path / "folate.pdb"
    ligand.write_text(
        "".join(
            line + "\n"
            for line in DRF.read_text().splitlines()
            if line.startswith("HETATM") and line[17:20] == "FOL"
        )
        + "END\n"
    )
    inputs = {"ligands": [_upload(cj_settings, ligand)], "receptor": [_upload(cj_settings, DRF)]}
    pipe = load_pipeline(REPO / "examples" / "pipelines" / "dock.yaml")
    fresh = PipelineRequest(pipeline=pipe, inputs=inputs, reuse=False)  # really compute once
    state = tool_pipeline(fresh, return_state=True)
    assert state.is_completed(), state.message
    records = _records(cj_settings, state)
    assert [r["step"] for r in records] == ["split", "gen3d", "descriptors", "dock"]
    store = get_store(cj_settings)
    [dock] = [r for r in records if r["step"] == "dock"]
    [score_key] = [k for k in dock["outputs"] if k.endswith("_score.csv")]
    [row] = list(csv.DictReader(io.StringIO(store.get_bytes(score_key).decode())))
    assert -20 < float(row["score_kcal_mol"]) < -3
    [desc] = [r for r in records if r["step"] == "descriptors"]
    [drow] = list(csv.DictReader(io.StringIO(store.get_bytes(desc["outputs"][0]).decode())))
    assert abs(float(drow["MW"]) - 441.4) < 1.5  # folic acid C19H19N7O6 (hydrogens from 3D)

    again = tool_pipeline(PipelineRequest(pipeline=pipe, inputs=inputs), return_state=True)
    assert again.is_completed(), again.message
    rerun = _records(cj_settings, again)
    assert [r["status"] for r in rerun] == ["cached"] * 4
    assert [r["status"] for r in records] == ["completed"] * 4
    assert [r["reused_from"] for r in rerun] == [r["id"] for r in records]
    [dock2] = [r for r in rerun if r["step"] == "dock"]
    assert dock2["outputs"] == dock["outputs"]


def test_cli_container_job_json(cj_settings: Settings) -> None:
    from typer.testing import CliRunner

    from headwater.cli import app

    result = CliRunner().invoke(
        app,
        [
            "run",
            "container-job",
            "--tool",
            "obabel-descriptors",
            "--input",
            str(CHEM / "openbabel" / "progesterone.sdf"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["state"] == "COMPLETED"
    [record] = out["records"]
    assert record["status"] == "completed"
    assert record["inputs"]["molecules"][0].startswith("container-jobs/uploads/")
    data = get_store(cj_settings).get_bytes(record["outputs"][0]).decode()
    assert "progesterone" in data.lower() or "C21H30O2" in data


def test_cli_tools_list_show_build(cj_settings: Settings) -> None:
    from typer.testing import CliRunner

    from headwater.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["tools", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    tools = {t["name"]: t for t in json.loads(listed.stdout)["tools"]}
    assert tools["obabel-convert"]["built"] and tools["vina-dock"]["built"]
    shown = runner.invoke(app, ["tools", "show", "vina-dock"])
    assert json.loads(shown.stdout)["params"]["exhaustiveness"]["maximum"] == 64
    built = runner.invoke(app, ["tools", "build", "openbabel", "--json"])  # layers are cached
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout.strip().splitlines()[-1])["images"][OB_IMAGE].startswith(
        "sha256:"
    )


def test_cli_rejects_unknown_tool_and_bad_param_with_one_line(cj_settings: Settings) -> None:
    before = count_containers()
    for argv, message in [
        (["--tool", "nope", "--input", str(CDK2)], "error: unknown tool 'nope'"),
        (
            ["--tool", "obabel-convert", "--input", str(CDK2), "--param", "format=exe"],
            "error: tool obabel-convert: parameter format='exe' is not one of",
        ),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "headwater", "run", "container-job", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2
        assert out.stderr.strip().splitlines()[-1].startswith(message)
    assert count_containers() == before


def test_cli_pipeline_json(cj_settings: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from headwater.cli import app

    pipe = tmp_path / "props.yaml"
    pipe.write_text(
        "name: props\ninputs: [mols]\nsteps:\n"
        "  - {name: split, tool: obabel-split, inputs: {molecules: mols}}\n"
        "  - {name: props, tool: obabel-descriptors, inputs: {molecules: split}}\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            "pipeline",
            str(pipe),
            "--input",
            f"mols={CHEM / 'rdkit' / '5ht3ligs.sdf'}",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["state"] == "COMPLETED"
    steps = [r["step"] for r in out["records"]]
    assert steps == ["split", "props"]
    [split, props] = out["records"]
    rows = list(
        csv.DictReader(io.StringIO(get_store(cj_settings).get_bytes(props["outputs"][0]).decode()))
    )
    assert len(rows) == len(split["outputs"]) > 1


def test_fan_out_every_molecule_of_an_sdf_in_batches(cj_settings: Settings) -> None:
    sdf = CHEM / "rdkit" / "5ht3ligs.sdf"
    expected = [b.strip().splitlines()[0] for b in sdf.read_text().split("$$$$") if b.strip()]
    assert len(expected) == 4
    request = ContainerJobRequest(
        tool="obabel-descriptors",
        inputs=[_upload(cj_settings, sdf)],
        split=True,
        concurrency=2,
        batch_size=3,  # two batch tasks
    )
    state = container_job(request, return_state=True)
    assert state.is_completed(), state.message
    assert state.message == "4 job(s) completed"
    records = _records(cj_settings, state)
    assert len(records) == 4 and {r["status"] for r in records} == {"completed"}
    store = get_store(cj_settings)
    titles = []
    for r in records:
        assert len(r["inputs"]["molecules"]) == 1
        [row] = list(csv.DictReader(io.StringIO(store.get_bytes(r["outputs"][0]).decode())))
        titles.append(row["title"])
    assert sorted(titles) == sorted(expected)
