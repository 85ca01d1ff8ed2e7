"""CLI commands of the db-migration capability (added to `headwater run`)."""

from headwater.commands.run import app  # noqa: F401
