"""IMAP account block."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class ImapAccount(Block):
    """One mailbox on an IMAP server.

    Attributes:
        host: Server host name.
        port: Server port.
        security: ``tls`` (implicit TLS), ``starttls`` or ``plain``.
        username: Login name.
        password: Login password (secret).
    """

    _block_type_name = "IMAP Account"
    _block_type_slug = "imap-account"
    _description = "An IMAP mailbox (server, security and login) for mail migration."

    host: str = Field(description="IMAP server host name or address.")
    port: int = Field(default=993, description="IMAP server port.")
    security: Literal["tls", "starttls", "plain"] = Field(
        default="tls", description="Transport security: implicit TLS, STARTTLS or none."
    )
    username: str = Field(description="Login name of the mailbox.")
    password: SecretStr = Field(description="Login password of the mailbox.")
    max_connections: int = Field(
        default=4, description="Connections Headwater may open to this host at once."
    )
