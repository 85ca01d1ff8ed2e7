"""docker-compose.yml structure: pinned images, health checks, healthy dependencies, no secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ONE_SHOT = {"minio-init", "deploy"}
SECRET_KEYS = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY)", re.I)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svc: dict[str, dict[str, Any]] = compose["services"]
    return svc


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    expected = {"postgres", "prefect-server", "mongo", "minio", "minio-init"}
    assert expected <= services.keys()
    workers = {name for name, s in services.items() if "worker" in " ".join(s.get("command", []))}
    pools = {
        s["command"][s["command"].index("--pool") + 1] for n, s in services.items() if n in workers
    }
    assert pools == {"headwater-process", "headwater-docker"}
    for name in workers:
        assert services[name]["build"]["dockerfile"] == "Dockerfile"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image} uses :latest"


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", f"{name} is one-shot and must not restart"
            continue
        check = svc.get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} disables its health check"


def test_depends_on_uses_conditions(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must be a mapping with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec.get("condition") == want, f"{name} -> {dep}: condition {spec}"


def test_named_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes", {}))
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if source.startswith("/"):
                assert source == "/var/run/docker.sock", f"{name}: bind mount {source}"
                continue
            assert source in declared, f"{name}: volume {source} is not a named volume"
    for data_service in ("postgres", "mongo", "minio"):
        assert services[data_service].get("volumes"), f"{data_service} keeps no data"


def _values(node: Any) -> list[tuple[str, str]]:
    """Every (key, scalar value) pair of environment mappings in the tree."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                out += _values(v)
            else:
                out.append((str(k), str(v)))
    elif isinstance(node, list):
        for item in node:
            out += _values(item)
    return out


def test_no_inline_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        for key, value in env.items():
            if SECRET_KEYS.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", str(value)), f"{name}: {key} is inline"
            if "://" in str(value) and "@" in str(value):
                userinfo = str(value).split("://", 1)[1].split("@", 1)[0]
                assert re.fullmatch(r"\$\{\w+\}:\$\{\w+\}", userinfo), f"{name}: {key} credentials"


def test_env_example_lists_every_variable() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?-[^}]*)?\}", text))
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    }
    assert used, "compose reads nothing from .env"
    assert used <= example, f"missing in .env.example: {sorted(used - example)}"
