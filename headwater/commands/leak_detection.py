"""CLI commands of the leak-detection capability (added to `headwater run`)."""

from headwater.commands.run import app  # noqa: F401
