"""`headwater run <capability> ...`: each capability module adds its command to this app."""

import typer

app = typer.Typer(
    help="Run a capability flow now, in this process, and print its summary.", no_args_is_help=True
)
