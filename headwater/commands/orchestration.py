"""Orchestration commands: `deploy`, `worker`, `trigger`, `image build`, `demo`.

`trigger` talks to the Prefect REST API with httpx (the same calls as the README's curl
examples); the helpers below are reused by the tests and `bench/orchestration.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import typer

from headwater.errors import ConfigError, HeadwaterError, InputError
from headwater.runtime import foreground_flow_settings
from headwater.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# --- REST helpers -----------------------------------------------------------------------------


def api_url() -> str:
    """The Prefect API URL: `HEADWATER_PREFECT_API_URL`, else Prefect's `PREFECT_API_URL`."""
    url = get_settings().prefect_api_url
    if not url:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            "PREFECT_API_URL",
            "not set; point it at a Prefect server, e.g. http://127.0.0.1:4200/api "
            "(`headwater services up` starts one)",
        )
    return url.rstrip("/")


def api_client(url: str | None = None, timeout: float = 30.0) -> httpx.Client:
    """An httpx client for the Prefect REST API."""
    return httpx.Client(base_url=(url or api_url()) + "/", timeout=timeout)


#: HTTP statuses of a busy server (SQLite lock, overload): the request is safe to repeat.
RETRY_STATUSES = {429, 502, 503, 504}


def request(
    client: httpx.Client, method: str, url: str, attempts: int = 6, **kwargs: Any
) -> httpx.Response:
    """Send a request, repeating it with backoff while the server answers busy (429/50x)."""
    delay = 0.5
    for attempt in range(attempts):
        resp = client.request(method, url, **kwargs)
        if resp.status_code not in RETRY_STATUSES or attempt == attempts - 1:
            return resp
        time.sleep(delay)
        delay = min(delay * 2, 8.0)
    return resp


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code == 404:
        raise InputError(f"{what}: not found on the Prefect server")
    if resp.status_code >= 400:
        detail = resp.text[:300].replace("\n", " ")
        raise HeadwaterError(f"{what}: the Prefect API answered HTTP {resp.status_code}: {detail}")
    return resp.json()


def resolve_deployment(client: httpx.Client, name: str) -> dict[str, Any]:
    """Read a deployment by `flow/deployment` (or a bare name declared in deployments/)."""
    if "/" not in name:
        from deployments.definitions import get_deployment

        try:
            name = get_deployment(name).full_name
        except KeyError:
            raise InputError(
                f"deployment {name!r}: unknown; use FLOW/DEPLOYMENT, e.g. smoke/smoke-on-demand"
            ) from None
    flow_name, deployment_name = name.split("/", 1)
    try:
        resp = request(client, "GET", f"deployments/name/{flow_name}/{deployment_name}")
    except httpx.HTTPError as exc:
        raise ConfigError("PREFECT_API_URL", f"cannot reach {client.base_url}: {exc}") from None
    result: dict[str, Any] = _check(resp, f"deployment {name!r}")
    return result


def create_flow_run(
    client: httpx.Client,
    deployment_id: str,
    parameters: dict[str, Any] | None = None,
    job_variables: dict[str, Any] | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """POST /deployments/{id}/create_flow_run; return the new flow run."""
    # the idempotency key makes a repeated POST (after a busy answer) create one run, not two
    body: dict[str, Any] = {"parameters": parameters or {}, "idempotency_key": str(uuid.uuid4())}
    if job_variables:
        body["job_variables"] = job_variables
    if name:
        body["name"] = name
    if tags:
        body["tags"] = tags
    resp = request(client, "POST", f"deployments/{deployment_id}/create_flow_run", json=body)
    result: dict[str, Any] = _check(resp, f"create_flow_run on deployment {deployment_id}")
    return result


def read_flow_run(client: httpx.Client, flow_run_id: str) -> dict[str, Any]:
    """GET /flow_runs/{id}."""
    result: dict[str, Any] = _check(
        request(client, "GET", f"flow_runs/{flow_run_id}"), f"flow run {flow_run_id}"
    )
    return result


def wait_for_run(
    client: httpx.Client, flow_run_id: str, timeout: float = 600.0, poll: float = 0.5
) -> dict[str, Any]:
    """Poll the flow run until it reaches a terminal state (or `timeout` seconds pass)."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_flow_run(client, flow_run_id)
        if run["state_type"] in TERMINAL_STATES or time.monotonic() > deadline:
            return run
        time.sleep(poll)


def read_artifacts(client: httpx.Client, flow_run_id: str) -> list[dict[str, Any]]:
    """The artifacts (progress, tables, markdown) a flow run created (latest versions)."""
    resp = request(
        client,
        "POST",
        "artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "CREATED_DESC"},
    )
    result: list[dict[str, Any]] = _check(resp, f"artifacts of flow run {flow_run_id}")
    return result


def parse_params(items: list[str]) -> dict[str, Any]:
    """Turn `k=v` pairs into parameters: values are JSON when they parse, else strings.

    Dotted keys nest: `params.limit=5` gives `{"params": {"limit": 5}}`.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--param {item!r}: {part!r} is already a value, not an object")
            target = node
        target[leaf] = value
    return out


def ui_url(api: str) -> str:
    """The UI address that belongs to an API URL (the UI is served next to /api)."""
    return api[: -len("/api")] if api.endswith("/api") else api


# --- commands ---------------------------------------------------------------------------------


def deploy(
    only: list[str] = typer.Option(
        [], "--only", help="Register only these deployments (FLOW/DEPLOYMENT or DEPLOYMENT)."
    ),
    strict: bool = typer.Option(False, help="Fail when a flow module exists but does not load."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Register the work pools and every deployment in deployments/ (idempotent)."""
    from deployments.register import register_all

    url = api_url()
    os.environ["PREFECT_API_URL"] = url
    results = register_all(names=only or None, strict=strict)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "api": url,
                    "deployments": [
                        {
                            "name": r.full_name,
                            "id": str(r.id) if r.id else None,
                            "skipped": r.skipped,
                        }
                        for r in results
                    ],
                }
            )
        )
        return
    for r in results:
        if r.id:
            typer.echo(f"registered {r.full_name}  {r.id}")
        else:
            typer.echo(f"skipped    {r.full_name}  ({r.skipped})")
    typer.echo(f"UI: {ui_url(url)}/deployments")


def worker(
    pool: str = typer.Option("headwater-process", "--pool", help="Work pool to take runs from."),
    poll_seconds: float = typer.Option(
        5.0, help="How often the worker asks for scheduled runs (PREFECT_WORKER_QUERY_SECONDS)."
    ),
    limit: int | None = typer.Option(None, help="Maximum concurrent flow runs."),
    healthcheck: bool = typer.Option(
        False, "--healthcheck", help="Serve /health on port 8080 (for container health checks)."
    ),
) -> None:
    """Start a Prefect worker for a Headwater work pool (foreground; Ctrl-C stops it)."""
    from deployments.definitions import WORK_POOLS
    from deployments.register import ensure_work_pools

    if pool not in {p.name for p in WORK_POOLS}:
        raise InputError(f"--pool {pool!r}: unknown; choose one of {[p.name for p in WORK_POOLS]}")
    url = api_url()
    os.environ["PREFECT_API_URL"] = url
    ensure_work_pools([pool])
    env = {
        **os.environ,
        "PREFECT_API_URL": url,
        "PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
    if limit:
        cmd += ["--limit", str(limit)]
    if healthcheck:
        cmd += ["--with-healthcheck"]
    typer.echo(f"worker on {pool} against {url}", err=True)
    raise typer.Exit(subprocess.call(cmd, env=env, cwd=PROJECT_ROOT))


def trigger(
    deployment: str = typer.Argument(..., help="FLOW/DEPLOYMENT, e.g. smoke/smoke-on-demand."),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Parameter KEY=VALUE (JSON value; dotted keys nest). Repeatable."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for a terminal state; exit 1 unless COMPLETED."
    ),
    timeout: float = typer.Option(600.0, help="Seconds to wait with --wait."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Create a flow run of a deployment through the Prefect REST API."""
    parameters = parse_params(param)
    url = api_url()
    with api_client(url) as client:
        dep = resolve_deployment(client, deployment)
        run = create_flow_run(client, dep["id"], parameters)
        if wait:
            run = wait_for_run(client, run["id"], timeout=timeout)
    out = {
        "deployment": deployment,
        "deployment_id": dep["id"],
        "flow_run_id": run["id"],
        "flow_run_name": run["name"],
        "state": run["state_type"],
        "parameters": parameters,
        "ui": f"{ui_url(url)}/runs/flow-run/{run['id']}",
    }
    if as_json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(f"{out['flow_run_name']} ({out['flow_run_id']}): {out['state']}")
        typer.echo(f"UI: {out['ui']}")
    if wait and run["state_type"] != "COMPLETED":
        raise typer.Exit(1)


def extra_ca_certs(folder: Path = Path("/usr/local/share/ca-certificates")) -> str:
    """The host's locally added CA certificates (PEM), to trust inside the image build."""
    if not folder.is_dir():
        return ""
    return "\n".join(p.read_text().strip() for p in sorted(folder.glob("*.crt")))


image_app = typer.Typer(help="The project image (Dockerfile).", no_args_is_help=True)


@image_app.command("build")
def image_build(
    tag: str = typer.Option("headwater:dev", help="Image reference to build."),
) -> None:
    """Build the project image from the Dockerfile (FROM the local base image; no registry)."""
    from headwater import services

    if not shutil.which("docker"):
        raise ConfigError("PATH", "the docker CLI is not installed (apt-get install docker.io)")
    base = services.ensure_base_image(get_settings())
    typer.echo(f"base image {base} is present; building {tag}", err=True)
    cmd = ["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}"]
    extra_ca = extra_ca_certs()
    if extra_ca:
        # certificates are public; passing them lets pip/uv verify an intercepting proxy
        cmd += ["--build-arg", f"EXTRA_CA_CERTS={extra_ca}"]
    cmd += ["-t", tag, "."]
    code = subprocess.call(cmd, cwd=PROJECT_ROOT)
    if code:
        raise HeadwaterError(f"docker build of {tag} failed (exit {code}); see the output above")
    typer.echo(tag)


# --- demo -------------------------------------------------------------------------------------


class Skip(Exception):
    """A demo step cannot run here (capability or service missing); the message says why."""


def _service_up(name: str) -> None:
    from headwater import services

    st = services.check(name)
    if not st.healthy:
        raise Skip(f"{name} is not running ({st.reason}); `headwater services up` starts it")


def _demo_smoke(work: Path, data: Path) -> Any:
    from flows.smoke import smoke

    return smoke("hello from the headwater demo", return_state=True)


def _demo_db(work: Path, data: Path) -> Any:
    _service_up("mongo")
    from blocks.mongo import MongoConnection
    from blocks.registry import sql_connector_from_url
    from flows.db_migration import DbMigrationParams, db_migration

    db = work / "chinook.sqlite"
    shutil.copy(data / "sql" / "chinook.sqlite", db)
    mongo = get_settings().mongo_url.get_secret_value().rsplit("/", 1)[0]
    sql_connector_from_url(f"sqlite:///{db}").save("demo-chinook", overwrite=True)
    MongoConnection(url=f"{mongo}/headwater_demo").save("demo-mongo", overwrite=True)  # type: ignore[arg-type]
    params = DbMigrationParams(source_block="demo-chinook", target_block="demo-mongo", restart=True)
    return db_migration(params, return_state=True)


def _demo_leak(work: Path, data: Path) -> Any:
    from flows.leak_detection import LeakDetectionParams, leak_detection
    from tasks.leak_io import read_readings
    from tasks.timeseries import ingest_frame, prepare_database

    nab = data / "timeseries" / "nab"
    files = sorted(nab.rglob("*.csv"))[:3]
    if not files:
        raise Skip(f"no NAB series under {nab}")
    url = prepare_database()
    for f in files:
        ingest_frame(url, read_readings("nab", f), "demo", None)
    return leak_detection(LeakDetectionParams(groups=["demo"], plots=True), return_state=True)


def _demo_container(work: Path, data: Path) -> Any:
    _service_up("docker")
    import hashlib

    from flows.container_jobs import ContainerJobRequest, container_job
    from headwater.storage import get_store

    src = data / "chem" / "openbabel" / "alanine.mol"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    key = f"uploads/{digest}/{src.name}"
    store = get_store(get_settings())
    if not store.exists(key):
        store.put_file(key, src)
    request = ContainerJobRequest(tool="obabel-convert", inputs=[key], params={"format": "sdf"})
    return container_job(request, return_state=True)


def _demo_images(work: Path, data: Path) -> Any:
    from flows.image_pipeline import ImagePipelineParams, image_pipeline

    fashion = data / "images" / "fashion"
    params = ImagePipelineParams(
        catalog=str(fashion / "styles.csv"),
        images=str(fashion / "images"),
        filter='masterCategory == "Apparel"',
        operations=["resize:128x128", "format:webp"],
        features=True,
        chunk_size=50,
        out=str(work / "images"),
    )
    return image_pipeline(params, return_state=True)


def _demo_mail(work: Path, data: Path) -> Any:
    _service_up("imap_source")
    _service_up("imap_dest")
    from flows.mail_migration import MailMigrationParams, mail_migration
    from tasks.imap import AccountRef

    params = MailMigrationParams(
        source=AccountRef(block="local-source-carol"),
        dest=AccountRef(block="local-dest-carol"),
        mailbox="demo carol",
    )
    return mail_migration(params, return_state=True)


DEMO_STEPS = [
    ("smoke", _demo_smoke),
    ("db-migration", _demo_db),
    ("leak-detection", _demo_leak),
    ("container-job", _demo_container),
    ("image-pipeline", _demo_images),
    ("mail-migration", _demo_mail),
]


def demo(
    only: list[str] = typer.Option([], "--only", help="Run only these capabilities."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run all five capabilities end to end on the sample data and print where to look."""
    import tempfile

    from prefect.client.orchestration import get_client

    settings = get_settings()
    data = settings.shared_data_dir
    if not data.is_dir():
        raise ConfigError("HEADWATER_SHARED_DATA_DIR", f"{data} does not exist")
    try:
        url: str | None = api_url()
        os.environ["PREFECT_API_URL"] = url or ""
    except ConfigError:
        url = None  # Prefect's ephemeral API: runs work, but there is no UI to look at
    try:
        from blocks.registry import register_blocks

        register_blocks(settings, local_services=True)
    except Exception as exc:
        typer.echo(f"note: blocks not registered ({type(exc).__name__}: {exc})", err=True)
    work = Path(tempfile.mkdtemp(prefix="headwater-demo-"))
    rows: list[dict[str, Any]] = []
    for name, step in DEMO_STEPS:
        if only and name not in only:
            continue
        typer.echo(f"==> {name}", err=True)
        started = time.monotonic()
        row: dict[str, Any] = {"capability": name}
        try:
            with foreground_flow_settings():
                state = step(work, data)
        except Skip as exc:
            row.update(status="skipped", reason=str(exc))
        except ImportError as exc:
            row.update(status="skipped", reason=f"capability not available ({exc})")
        except Exception as exc:
            row.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        else:
            run_id = state.state_details.flow_run_id
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run_id)
            row.update(
                status=state.type.value,
                flow_run_id=str(run_id),
                flow_run_name=run.name,
                ui=f"{ui_url(url)}/runs/flow-run/{run_id}" if url else None,
            )
            if not state.is_completed():
                row["reason"] = (state.message or "")[:300]
        row["seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        typer.echo(
            f"    {row['status']}: {row.get('flow_run_name', '')} {row.get('flow_run_id', '')}"
            f" {row.get('reason', '')}".rstrip(),
            err=True,
        )
    if as_json:
        typer.echo(json.dumps({"api": url, "work_dir": str(work), "runs": rows}))
    else:
        typer.echo("\nHeadwater demo runs:")
        for r in rows:
            ident = f"{r.get('flow_run_name', '-')} ({r.get('flow_run_id', '-')})"
            typer.echo(f"  {r['capability']:<15} {r['status']:<10} {ident}  {r['seconds']}s")
            if r.get("reason"):
                typer.echo(f"  {'':<15} {r['reason']}")
        if url:
            typer.echo(f"\nWatch them in the Prefect UI: {ui_url(url)}/runs")
            typer.echo("Each run's Artifacts tab shows its progress bar and report table.")
        else:
            typer.echo("\nNo Prefect server configured: set PREFECT_API_URL to see runs in a UI.")
        typer.echo(f"Local outputs: {work}")
    failed = [r for r in rows if r["status"] not in ("COMPLETED", "skipped")]
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the orchestration commands to the main app."""
    app.command("deploy")(deploy)
    app.command("worker")(worker)
    app.command("trigger")(trigger)
    app.command("demo")(demo)
    app.add_typer(image_app, name="image")
