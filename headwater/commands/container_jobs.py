"""CLI commands of the container-jobs capability (added to `headwater run`)."""

from headwater.commands.run import app  # noqa: F401
