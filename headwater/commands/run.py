"""`headwater run <capability> ...`: each capability module adds its command to this app."""

import typer

from headwater.runtime import foreground_flow_settings

app = typer.Typer(
    help="Run a capability flow now, in this process, and print its summary.", no_args_is_help=True
)


@app.callback()
def _foreground(ctx: typer.Context) -> None:
    """Flows of `headwater run` execute in this process, with foreground settings."""
    ctx.with_resource(foreground_flow_settings())
