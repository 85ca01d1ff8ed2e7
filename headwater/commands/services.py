"""`headwater services up|down|status`: the real local services, native and on loopback."""

from __future__ import annotations

import json

import typer

from headwater import services as svc

app = typer.Typer(
    help="Local development services (PostgreSQL, MariaDB, MinIO, MongoDB wire, two Dovecot IMAP "
    "servers, Docker Engine, Prefect server) on loopback; data under the data dir.",
    no_args_is_help=True,
)

NAMES_HELP = f"Services (default: all): {', '.join(svc.SERVICES)}."


def _validate(names: list[str] | None) -> list[str] | None:
    unknown = [name for name in names or [] if name not in svc.SERVICES]
    if unknown:
        raise typer.BadParameter(
            f"unknown service {', '.join(unknown)}; choose from: {', '.join(svc.SERVICES)}",
            param_hint="NAMES",
        )
    return names or None


def _payload(statuses: list[svc.ServiceStatus]) -> str:
    return json.dumps(
        {
            "services": [st.to_dict() for st in statuses],
            "healthy": all(st.healthy for st in statuses),
        },
        indent=2,
    )


def _table(statuses: list[svc.ServiceStatus]) -> None:
    width = max(len(st.name) for st in statuses)
    for st in statuses:
        mark = "ok  " if st.healthy else "DOWN"
        line = f"{st.name:<{width}}  {mark}  {st.url}"
        typer.echo(line + (f"  -- {st.reason}" if st.reason else ""))


@app.command()
def up(
    names: list[str] | None = typer.Argument(None, help=NAMES_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the statuses as JSON."),
) -> None:
    """Start the services (idempotent) and wait until they are healthy; exit 1 if any is not."""
    statuses = svc.up(_validate(names))
    if as_json:
        typer.echo(_payload(statuses))
    else:
        _table(statuses)
    unhealthy = [st for st in statuses if not st.healthy]
    if unhealthy:
        for st in unhealthy:
            typer.echo(f"{st.name} is unhealthy: {st.reason}", err=True)
        raise typer.Exit(1)


@app.command()
def down(
    names: list[str] | None = typer.Argument(None, help=NAMES_HELP, show_default=False),
) -> None:
    """Stop the services that `up` started; their data is kept."""
    svc.down(_validate(names))
    typer.echo(f"stopped: {', '.join(names or svc.SERVICES)}")


@app.command()
def status(
    as_json: bool = typer.Option(
        False, "--json", help='Print {"services": [...], "healthy": bool} as JSON.'
    ),
) -> None:
    """Probe every service without starting anything (always exits 0; see `healthy`)."""
    statuses = svc.status()
    if as_json:
        typer.echo(_payload(statuses))
    else:
        _table(statuses)
