"""Every deployment entrypoint loads in a fresh interpreter, as a worker would load it.

Prefect substitutes a placeholder flow when an entrypoint fails to import, so a broken module
would otherwise be deployed silently; here the real flow must load and carry the expected name.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deployments.definitions import DEPLOYMENTS, PROJECT_ROOT
from deployments.register import available, project_env
from tests.conftest import in_ci

LOADER = """
import json, sys
from prefect.flows import Flow, load_flow_from_entrypoint
flow = load_flow_from_entrypoint(sys.argv[1], use_placeholder_flow=False)
assert isinstance(flow, Flow), type(flow)
print(json.dumps({"name": flow.name, "module": flow.fn.__module__, "fn": flow.fn.__qualname__}))
"""

ENTRYPOINTS = sorted({(d.entrypoint, d.flow_name) for d in DEPLOYMENTS})


def test_deployment_names_are_unique_and_kebab_case() -> None:
    names = [d.full_name for d in DEPLOYMENTS]
    assert len(names) == len(set(names))
    for d in DEPLOYMENTS:
        assert d.name == d.name.lower() and "_" not in d.name, d.name
        assert d.name.startswith(d.flow_name), f"{d.name} is not <flow>-<cadence>"


@pytest.mark.parametrize(("entrypoint", "flow_name"), ENTRYPOINTS, ids=[e for e, _ in ENTRYPOINTS])
def test_entrypoint_loads_in_fresh_interpreter(entrypoint: str, flow_name: str) -> None:
    spec = next(d for d in DEPLOYMENTS if d.entrypoint == entrypoint)
    missing = available(spec)
    if missing:
        if in_ci():
            pytest.fail(f"{spec.full_name} is declared but {missing}")
        pytest.skip(f"capability not landed: {missing}")
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, entrypoint],
        cwd=PROJECT_ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["name"] == flow_name
    assert loaded["fn"] == entrypoint.rsplit(":", 1)[1].split(".")[-1] or loaded["fn"]
