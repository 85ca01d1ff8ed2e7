"""Blocks: secrets stay secret, and `headwater blocks register` is idempotent."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from blocks import ImapAccount, MongoConnection, sql_connector_from_url


def test_sql_connector_keeps_password_secret() -> None:
    connector = sql_connector_from_url("postgresql+psycopg://u:s3cret@db.example:5432/app")
    info = connector.connection_info
    assert info.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(connector)
    assert (info.host, info.port, info.database) == ("db.example", 5432, "app")


def test_mongo_database_from_url() -> None:
    block = MongoConnection(url=SecretStr("mongodb://u:pw@h:27017/shop?authSource=admin"))
    assert block.database_name() == "shop"
    assert "pw" not in repr(block)


def test_imap_password_is_secret() -> None:
    acct = ImapAccount(host="h", port=143, security="plain", username="a", password="topsecret")
    assert isinstance(acct.password, SecretStr)
    assert "topsecret" not in repr(acct)


@pytest.mark.integration
def test_register_is_idempotent(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    from blocks.registry import register_blocks
    from headwater.settings import get_settings

    first = register_blocks(get_settings(), local_services=True)
    second = register_blocks(get_settings(), local_services=True)
    assert first == second
    assert "s3-bucket/headwater-artifacts" in first and "imap-account/local-source-alice" in first
    with get_client(sync_client=True) as client:
        docs = client.read_block_documents()
    names = [f"{d.block_type.slug}/{d.name}" for d in docs if d.block_type is not None]
    for name in first:
        assert names.count(name) == 1, name
    loaded = MongoConnection.load("local-mongo")
    assert loaded.url.get_secret_value().startswith("mongodb://")
    # a saved secret is not readable from the block document without include_secrets
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(
            "local-source-alice", "imap-account", include_secrets=False
        )
    assert "headwater-test-pw" not in str(doc.data)
