"""Prefect Block types of Headwater (credentials as SecretStr) and their registration.

Third-party blocks are used where they exist: prefect-aws `AwsCredentials` + `S3Bucket` for the
artifact store and prefect-sqlalchemy `SqlAlchemyConnector` for SQL databases. Headwater adds a
MongoDB connection and an IMAP account.
"""

from blocks.imap import ImapAccount
from blocks.mongo import MongoConnection
from blocks.registry import register_blocks, sql_connector_from_url

__all__ = ["ImapAccount", "MongoConnection", "register_blocks", "sql_connector_from_url"]
