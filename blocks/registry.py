"""`headwater blocks register`: create Headwater's blocks from settings, idempotently."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url

from headwater.settings import Settings, get_settings


def sql_connector_from_url(url: str) -> Any:
    """A prefect-sqlalchemy `SqlAlchemyConnector` with the URL split into components.

    Args:
        url: SQLAlchemy URL; its password becomes a SecretStr field.
    """
    from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector

    parsed = make_url(url)
    return SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver=parsed.drivername,
            username=parsed.username,
            password=parsed.password,
            host=parsed.host,
            port=parsed.port,
            database=parsed.database or "",
        )
    )


def register_blocks(settings: Settings | None = None, local_services: bool = True) -> list[str]:
    """Register block types and save Headwater's blocks (overwriting: idempotent).

    Args:
        settings: Settings to read; default the process settings.
        local_services: Also save blocks for the local dev services (MinIO, PostgreSQL,
            MariaDB, MongoDB-wire, the two Dovecot test accounts).

    Returns:
        The `type-slug/name` of every saved block.
    """
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_sqlalchemy import SqlAlchemyConnector

    from blocks.imap import ImapAccount
    from blocks.mongo import MongoConnection
    from headwater.storage import RESULTS_BLOCK, s3_bucket_block

    settings = settings or get_settings()
    for block_type in (AwsCredentials, S3Bucket, SqlAlchemyConnector, MongoConnection, ImapAccount):
        block_type.register_type_and_schema()

    saved: list[str] = []

    def save(block: Any, name: str) -> None:
        block.save(name, overwrite=True)
        saved.append(f"{block.get_block_type_slug()}/{name}")

    store_settings = settings if settings.storage == "s3" else settings.use_local_services()
    if settings.storage == "s3" or local_services:
        bucket = s3_bucket_block(store_settings)
        save(bucket.credentials, "headwater-s3")
        save(bucket, "headwater-artifacts")
        results = bucket.model_copy(update={"bucket_folder": "prefect-results"})
        save(results, RESULTS_BLOCK)
    if settings.database_url:
        save(sql_connector_from_url(settings.database_url), "headwater-db")
    if local_services:
        save(sql_connector_from_url(settings.postgres_url.get_secret_value()), "local-postgres")
        save(sql_connector_from_url(settings.mariadb_url.get_secret_value()), "local-mariadb")
        save(MongoConnection(url=settings.mongo_url), "local-mongo")
        for side, port in (
            ("source", settings.imap_source_port),
            ("dest", settings.imap_dest_port),
        ):
            for user in ("alice", "bob", "carol"):
                save(
                    ImapAccount(
                        host=settings.imap_host,
                        port=port,
                        security="plain",
                        username=user,
                        password=settings.imap_test_password,
                    ),
                    f"local-{side}-{user}",
                )
    return saved
