"""MongoDB connection block."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class MongoConnection(Block):
    """A MongoDB (or MongoDB-wire, e.g. FerretDB) server and database.

    Attributes:
        url: Connection string; may carry credentials, so it is a secret.
        database: Database name; default the one in the URL's path.
    """

    _block_type_name = "MongoDB Connection"
    _block_type_slug = "mongo-connection"
    _description = "A MongoDB-wire server and database for Headwater."

    url: SecretStr = Field(description="mongodb:// connection string (may include credentials).")
    database: str | None = Field(
        default=None, description="Database name; default: the path of the URL."
    )
    server_selection_timeout_ms: int = Field(
        default=5000, description="How long to wait for the server before failing."
    )

    def database_name(self) -> str:
        """The database to use: the field, else the URL path, else 'headwater'."""
        if self.database:
            return self.database
        from pymongo.uri_parser import parse_uri

        return parse_uri(self.url.get_secret_value()).get("database") or "headwater"

    def get_client(self) -> Any:
        """A new pymongo client (the caller closes it)."""
        from pymongo import MongoClient

        return MongoClient(
            self.url.get_secret_value(),
            serverSelectionTimeoutMS=self.server_selection_timeout_ms,
            tz_aware=True,
        )
