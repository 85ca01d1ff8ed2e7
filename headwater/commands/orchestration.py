"""Orchestration commands: deploy, worker, trigger, image build, demo (filled by the orchestration work)."""

import typer


def register(app: typer.Typer) -> None:
    """Add the orchestration commands to the main app."""
