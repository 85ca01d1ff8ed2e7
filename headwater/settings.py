"""Headwater settings: `HEADWATER_*` environment variables and `.env`, with embedded defaults.

Every address a task, a test or the CLI needs comes from here (or from `headwater services
status --json`, which prints the same values). Nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Fixed loopback ports of the local development services (`headwater services up`).
DEV_PORTS = {
    "postgres": 55432,
    "mariadb": 33306,
    "minio": 19000,
    "minio_console": 19001,
    "mongo": 27018,
    "imap_source": 11143,
    "imap_dest": 12143,
    "prefect": 4200,
}


class Settings(BaseSettings):
    """Headwater configuration; every field is `HEADWATER_<FIELD>` in the environment or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="HEADWATER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "headwater",
        description="Root of local state: the local artifact store, service data, logs, PID files.",
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "headwater",
        description="Cached binaries built from source (MinIO, FerretDB), kept across clones.",
    )
    shared_data_dir: Path = Field(
        default=Path(__file__).resolve().parent.parent.parent / "shared" / "data",
        description="Folder with the sample data sets used by the demo and the tests.",
    )

    # --- artifact store -------------------------------------------------------------------
    storage: str = Field(
        default="local",
        description="Artifact store back end: 'local' (a folder under data_dir) or 's3'.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint, e.g. http://127.0.0.1:19000 for MinIO."
    )
    s3_bucket: str = Field(default="headwater", description="Bucket of the artifact store.")
    s3_access_key: SecretStr | None = Field(default=None, description="S3 access key id.")
    s3_secret_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    s3_region: str = Field(default="us-east-1", description="S3 region name.")

    # --- databases ------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of Headwater's own database (leak detection, calculation "
        "records). Default: SQLite under data_dir.",
    )
    postgres_url: SecretStr = Field(
        default=SecretStr(
            f"postgresql+psycopg://headwater:headwater@127.0.0.1:{DEV_PORTS['postgres']}/headwater"
        ),
        description="PostgreSQL of the local services (a source for migrations, a store).",
    )
    mariadb_url: SecretStr = Field(
        default=SecretStr(
            f"mysql+pymysql://headwater:headwater@127.0.0.1:{DEV_PORTS['mariadb']}/headwater"
        ),
        description="MariaDB of the local services (a migration source).",
    )
    mongo_url: SecretStr = Field(
        default=SecretStr(f"mongodb://127.0.0.1:{DEV_PORTS['mongo']}/headwater"),
        description="MongoDB-wire server (mongod or FerretDB), with the database in the path.",
    )

    # --- IMAP (local Dovecot pair) -----------------------------------------------------------
    imap_host: str = Field(default="127.0.0.1", description="Host of the local Dovecot pair.")
    imap_source_port: int = Field(default=DEV_PORTS["imap_source"], description="Source IMAP.")
    imap_dest_port: int = Field(default=DEV_PORTS["imap_dest"], description="Destination IMAP.")
    imap_test_password: SecretStr = Field(
        default=SecretStr("headwater-test-pw"),
        description="Password of the local Dovecot test accounts (dev only).",
    )

    # --- MinIO (local service) -------------------------------------------------------------
    minio_root_user: str = Field(default="headwater", description="MinIO root user (dev).")
    minio_root_password: SecretStr = Field(
        default=SecretStr("headwater-minio-secret"), description="MinIO root password (dev)."
    )

    # --- Prefect and Docker ------------------------------------------------------------------
    prefect_api_url: str | None = Field(
        default=None,
        description="Prefect API, e.g. http://127.0.0.1:4200/api. Default: Prefect's own "
        "setting, else the ephemeral API.",
    )
    docker_host: str | None = Field(
        default=None, description="Docker Engine address; default: the local socket."
    )
    base_image: str = Field(
        default="headwater/debian-base:bookworm",
        description="Locally built minimal Debian base image for tool and project images.",
    )

    @property
    def artifacts_dir(self) -> Path:
        """Folder of the local-folder artifact store."""
        return self.data_dir / "artifacts"

    @property
    def services_dir(self) -> Path:
        """Folder with data, logs and PID files of the local services."""
        return self.data_dir / "services"

    @property
    def bin_dir(self) -> Path:
        """Folder of cached binaries built from source."""
        return self.cache_dir / "bin"

    @property
    def minio_endpoint(self) -> str:
        """Endpoint of the local MinIO service."""
        return f"http://127.0.0.1:{DEV_PORTS['minio']}"

    def sqlalchemy_url(self) -> str:
        """Headwater's own database: `database_url`, else SQLite under data_dir."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'headwater.db'}"

    def use_local_services(self) -> Settings:
        """A copy pointing the artifact store at the local MinIO of `headwater services up`."""
        return self.model_copy(
            update={
                "storage": "s3",
                "s3_endpoint_url": self.minio_endpoint,
                "s3_access_key": SecretStr(self.minio_root_user),
                "s3_secret_key": self.minio_root_password,
            }
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once; call `get_settings.cache_clear()` after changes)."""
    return Settings()
