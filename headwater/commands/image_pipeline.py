"""CLI commands of the image-pipeline capability (added to `headwater run`)."""

from headwater.commands.run import app  # noqa: F401
