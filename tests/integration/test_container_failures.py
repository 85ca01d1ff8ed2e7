"""Failures and the sandbox: exit codes, timeouts, OOM, missing images, bad inputs, isolation.

Against the Docker Engine, MinIO and PostgreSQL of `headwater services up`. Each failure is
asserted by the flow state, its message, the record and what was uploaded; no container stays.
"""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from flows.container_jobs import ContainerJobRequest, container_job
from headwater.settings import Settings
from headwater.storage import get_store
from tasks.containers import load_records
from tests.integration.conftest import count_containers

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leftover_containers")]

BASE = "headwater/debian-base:bookworm"


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    """Test-only tools on the bare base image (shell one-liners)."""
    specs = {
        "fail-partial": """
            command: [sh, -c, "echo partial > /out/partial.txt; echo 'error: boom' >&2; exit 3"]
            """,
        "slow": """
            command: [sh, -c, "echo started; sleep 60"]
            timeout: 2
            """,
        "memhog": """
            command: [sh, -c, "head -c 300m /dev/zero | tail > /dev/null"]
            limits: {memory: 32m, cpus: 1, pids: 16}
            """,
        "probe": """
            command:
              - bash
              - -c
              - |
                exec > /out/report.txt 2>&1
                echo "uid=$(id -u)"
                ls -1 /in
                if touch /in/new 2>/dev/null; then echo in=writable; else echo in=readonly; fi
                if touch /etc/x 2>/dev/null; then echo root=writable; else echo root=readonly; fi
                if timeout 3 bash -c 'echo > /dev/tcp/1.1.1.1/53' 2>/dev/null; then echo net=open
                else echo net=blocked; fi
                if timeout 3 bash -c 'echo > /dev/tcp/127.0.0.1/19000' 2>/dev/null; then
                echo minio=reachable; else echo minio=unreachable; fi
                echo "ifaces=$(ls /sys/class/net | tr '\\n' ' ')"
            inputs: [{name: files, multiple: true}]
            """,
        "ghost": """
            image: headwater/no-such-tool:1
            command: ["true"]
            """,
    }
    for name, body in specs.items():
        spec = f"name: {name}\nversion: '1'\nimage: {BASE}\n" + textwrap.dedent(body)
        if name == "ghost":
            spec = spec.replace(f"image: {BASE}\n", "", 1)
        (tmp_path / f"{name}.yaml").write_text(spec)
    return tmp_path


def _run(tool: str, tool_dir: Path, **kw):  # type: ignore[no-untyped-def]
    request = ContainerJobRequest(tool=tool, tool_dirs=[str(tool_dir)], **kw)
    return container_job(request, return_state=True)


def _records(settings: Settings, state) -> list[dict]:  # type: ignore[no-untyped-def]
    return load_records(settings, str(state.state_details.flow_run_id))


def test_non_zero_exit_fails_and_keeps_log_and_partial_outputs(
    cj_settings: Settings, tool_dir: Path
) -> None:
    state = _run("fail-partial", tool_dir)
    assert state.is_failed()
    assert "exit code 3" in state.message and "boom" in state.message
    [record] = _records(cj_settings, state)
    assert record["status"] == "failed" and record["exit_code"] == 3
    store = get_store(cj_settings)
    [partial] = record["outputs"]
    assert partial.endswith("/out/partial.txt")
    assert store.get_bytes(partial) == b"partial\n"
    assert b"error: boom" in store.get_bytes(record["log_key"])


def test_timeout_kills_the_container(cj_settings: Settings, tool_dir: Path) -> None:
    state = _run("slow", tool_dir)
    assert state.is_failed()
    assert "timed out after 2 s" in state.message
    [record] = _records(cj_settings, state)
    assert record["status"] == "failed"
    assert b"started" in get_store(cj_settings).get_bytes(record["log_key"])


def test_out_of_memory(cj_settings: Settings, tool_dir: Path) -> None:
    state = _run("memhog", tool_dir)
    assert state.is_failed()
    assert "out of memory (limit 32m)" in state.message
    [record] = _records(cj_settings, state)
    assert record["status"] == "failed" and record["exit_code"] == 137


def test_missing_image_says_how_to_build_it(cj_settings: Settings, tool_dir: Path) -> None:
    state = _run("ghost", tool_dir)
    assert state.is_failed()
    assert "headwater/no-such-tool:1" in state.message
    assert "headwater tools build ghost" in state.message
    assert _records(cj_settings, state) == []


@pytest.mark.parametrize(
    ("tool", "params", "message"),
    [
        ("no-such-tool", {}, "unknown tool 'no-such-tool'"),
        ("sleep", {"seconds": "-1"}, "below the minimum"),
        ("sleep", {"seconds": "soon"}, "parameter seconds"),
        ("sleep", {"bogus": 1}, "unknown parameter"),
    ],
)
def test_invalid_tool_or_params_rejected_before_anything_runs(
    cj_settings: Settings, tool_dir: Path, tool: str, params: dict, message: str
) -> None:
    before = count_containers()
    state = _run(tool, tool_dir, params=params)
    assert state.is_failed()
    assert message in state.message
    assert _records(cj_settings, state) == []
    assert count_containers() == before


def test_sandbox_no_network_readonly_inputs_not_root(cj_settings: Settings, tool_dir: Path) -> None:
    store = get_store(cj_settings)
    prefix = f"tests/container-jobs/{uuid.uuid4().hex[:8]}"
    evil = store.put_bytes(f"{prefix}/-..evil\x07name;rm.txt", b"x")
    plain = store.put_bytes(f"{prefix}/plain.txt", b"y")
    state = _run("probe", tool_dir, inputs=[evil, plain])
    assert state.is_completed(), state.message
    [record] = _records(cj_settings, state)
    report = store.get_bytes(record["outputs"][0]).decode()
    assert "uid=65534" in report
    assert "in=readonly" in report and "root=readonly" in report
    assert "net=blocked" in report and "minio=unreachable" in report
    assert "ifaces=lo " in report
    names = [line for line in report.splitlines() if line.endswith(".txt")]
    assert sorted(names) == ["evil_name_rm.txt", "plain.txt"]


def test_input_key_with_dot_dot_is_rejected(cj_settings: Settings, tool_dir: Path) -> None:
    state = _run("probe", tool_dir, inputs=["tests/../etc/passwd"])
    assert state.is_failed()
    assert "'..' are not allowed" in state.message
    assert _records(cj_settings, state) == []
