"""The `headwater` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import typer

from headwater.commands import (
    container_jobs,  # noqa: F401  (adds `run container-job`, `run pipeline`)
    db_migration,  # noqa: F401  (adds `run db-migration`)
    image_pipeline,  # noqa: F401  (adds `run image-pipeline`)
    leak_detection,  # noqa: F401  (adds `run leak-*`)
    mail_migration,  # noqa: F401  (adds `run mail-migration*`)
    orchestration,
    run,
    services,
)
from headwater.errors import HeadwaterError
from headwater.settings import get_settings

app = typer.Typer(
    help="Headwater: a workflow-orchestrated data platform on Prefect 3.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(services.app, name="services")
app.add_typer(run.app, name="run")

blocks_app = typer.Typer(help="Prefect blocks (credentials, connections).", no_args_is_help=True)
app.add_typer(blocks_app, name="blocks")

try:  # the container capability adds `headwater tools ...`
    from headwater.commands import tools

    app.add_typer(tools.app, name="tools")
except ImportError:  # pragma: no cover - until the capability lands
    pass
orchestration.register(app)


@blocks_app.command("register")
def blocks_register(
    local_services: bool = typer.Option(
        True, help="Also save blocks for the local dev services of `headwater services up`."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the saved block names as JSON."),
) -> None:
    """Register block types and save Headwater's blocks (idempotent: overwrites)."""
    from blocks.registry import register_blocks

    saved = register_blocks(get_settings(), local_services=local_services)
    if as_json:
        typer.echo(json.dumps({"blocks": saved}))
    else:
        for name in saved:
            typer.echo(name)


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(4200, help="Port of the API and UI."),
) -> None:
    """Run the Prefect server and UI in the foreground (Ctrl-C stops it)."""
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    typer.echo(f"Prefect UI: http://{host}:{port}  API: http://{host}:{port}/api")
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    raise typer.Exit(subprocess.call(cmd, env=env))


@app.command()
def check(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Check the configuration: artifact store, Headwater database, Prefect API."""
    from headwater.checks import check_configuration

    results = check_configuration(get_settings())
    if as_json:
        typer.echo(json.dumps({"checks": results}))
    else:
        for item in results:
            typer.echo(f"ok: {item['name']}: {item['detail']}")


def _settings_error_line(exc: Exception) -> str:
    """One line naming the HEADWATER_* setting a pydantic validation error is about."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
    parts = []
    for err in errors:
        field = str(err.get("loc", ["?"])[0])
        parts.append(f"HEADWATER_{field.upper()}: {err.get('msg')}")
    return "; ".join(parts) or str(exc).splitlines()[0]


def main() -> None:
    """Entry point: run the CLI, turning configuration and input errors into one clear line."""
    from pydantic import ValidationError

    try:
        get_settings()
    except ValidationError as exc:
        typer.echo(f"error: {_settings_error_line(exc)}", err=True)
        sys.exit(2)
    try:
        app()
    except HeadwaterError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
