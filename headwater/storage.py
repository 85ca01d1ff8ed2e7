"""The artifact store: one interface, an S3/MinIO bucket or a local folder behind it.

Keys are POSIX paths `<capability>/<flow-run-id>/...`; they are derived from the flow run and
the input, never from the clock, so a retried task overwrites instead of duplicating.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from headwater.errors import ConfigError, InputError
from headwater.settings import Settings, get_settings

CHUNK = 8 * 1024 * 1024


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InputError naming it."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InputError(f"invalid artifact key {key!r}: must be a relative POSIX path")
    if any(part in ("..", ".") for part in key.split("/")):
        raise InputError(f"invalid artifact key {key!r}: '.' and '..' are not allowed")
    return key


def run_key(capability: str, *parts: str, run_id: str | None = None) -> str:
    """Build `<capability>/<flow-run-id>/<parts...>` for the current (or given) flow run.

    Args:
        capability: Capability prefix, e.g. ``image-pipeline``.
        parts: Further path segments.
        run_id: Flow run id; default the current flow run's id, or ``local`` outside a run.
    """
    if run_id is None:
        from prefect.runtime import flow_run

        run_id = flow_run.get_id() or "local"
    return validate_key("/".join([capability, str(run_id), *[p.strip("/") for p in parts if p]]))


@runtime_checkable
class ArtifactStore(Protocol):
    """What every artifact store back end offers."""

    def put_bytes(self, key: str, data: bytes) -> str: ...
    def put_file(self, key: str, path: str | os.PathLike[str]) -> str: ...
    def put_stream(self, key: str, stream: IO[bytes]) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_file(self, key: str, path: str | os.PathLike[str]) -> Path: ...
    def open(self, key: str) -> IO[bytes]: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def url(self, key: str, expires: int = 3600) -> str: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def describe(self) -> str: ...


class LocalStore:
    """Artifact store in a local folder (the embedded default)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _atomic_write(self, key: str, writer: Any) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                writer(out)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def put_bytes(self, key: str, data: bytes) -> str:
        return self._atomic_write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: str | os.PathLike[str]) -> str:
        with open(path, "rb") as src:
            return self.put_stream(key, src)

    def put_stream(self, key: str, stream: IO[bytes]) -> str:
        return self._atomic_write(key, lambda out: shutil.copyfileobj(stream, out, CHUNK))

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def get_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), path)
        return Path(path)

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def url(self, key: str, expires: int = 3600) -> str:
        return self._path(key).as_uri()

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        return len(keys)

    def describe(self) -> str:
        return f"local folder {self.root}"


class S3Store:
    """Artifact store in an S3 bucket (MinIO or AWS), through a prefect-aws `S3Bucket` block."""

    def __init__(self, bucket: Any) -> None:
        """Args:
        bucket: a prefect-aws ``S3Bucket`` (its credentials carry the endpoint URL).
        """
        self.bucket_block = bucket
        self.bucket = bucket.bucket_name
        self.client = bucket.credentials.get_s3_client()

    def put_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=validate_key(key), Body=data)
        return key

    def put_file(self, key: str, path: str | os.PathLike[str]) -> str:
        self.client.upload_file(str(path), self.bucket, validate_key(key))
        return key

    def put_stream(self, key: str, stream: IO[bytes]) -> str:
        self.client.upload_fileobj(stream, self.bucket, validate_key(key))
        return key

    def get_bytes(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def get_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, key, str(path))
        return Path(path)

    def open(self, key: str) -> IO[bytes]:
        stream: IO[bytes] = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return stream

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Yield keys under `prefix`, page by page (a listing of millions stays streaming)."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self.iter_keys(prefix))

    def url(self, key: str, expires: int = 3600) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
        )
        return url

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
        return len(keys)

    def describe(self) -> str:
        endpoint = self.client.meta.endpoint_url
        return f"s3://{self.bucket} at {endpoint}"


def s3_bucket_block(settings: Settings) -> Any:
    """Build (unsaved) prefect-aws blocks for the configured bucket."""
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    params = (
        AwsClientParameters(endpoint_url=settings.s3_endpoint_url)
        if settings.s3_endpoint_url
        else AwsClientParameters()
    )
    creds = AwsCredentials(
        aws_access_key_id=settings.s3_access_key.get_secret_value()
        if settings.s3_access_key
        else None,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        aws_client_parameters=params,
    )
    return S3Bucket(bucket_name=settings.s3_bucket, credentials=creds)


def get_store(settings: Settings | None = None) -> ArtifactStore:
    """The artifact store the settings describe (`HEADWATER_STORAGE=local|s3`)."""
    settings = settings or get_settings()
    if settings.storage == "local":
        return LocalStore(settings.artifacts_dir)
    if settings.storage == "s3":
        return S3Store(s3_bucket_block(settings))
    raise ConfigError(
        "HEADWATER_STORAGE", f"unknown back end {settings.storage!r}; use 'local' or 's3'"
    )


def check_store(store: ArtifactStore) -> None:
    """Raise ConfigError naming the setting when the store cannot be reached or written."""
    if isinstance(store, LocalStore):
        if not os.access(store.root, os.W_OK):
            raise ConfigError("HEADWATER_DATA_DIR", f"{store.root} is not writable")
        return
    assert isinstance(store, S3Store)
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    try:
        store.client.head_bucket(Bucket=store.bucket)
    except EndpointConnectionError as exc:
        raise ConfigError(
            "HEADWATER_S3_ENDPOINT_URL", f"cannot reach {exc.kwargs.get('endpoint_url')}"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            raise ConfigError(
                "HEADWATER_S3_ACCESS_KEY/HEADWATER_S3_SECRET_KEY",
                f"rejected by the server ({code})",
            ) from None
        if code in ("404", "NoSuchBucket"):
            raise ConfigError(
                "HEADWATER_S3_BUCKET", f"bucket {store.bucket!r} does not exist"
            ) from None
        raise ConfigError("HEADWATER_S3_ENDPOINT_URL", f"S3 error {code}") from None
    except BotoCoreError as exc:
        raise ConfigError("HEADWATER_S3_ENDPOINT_URL", str(exc)) from None


RESULTS_BLOCK = "headwater-results"


def result_storage(settings: Settings | None = None) -> str | Path:
    """Prefect result storage matching the artifact store (flow results persist to it).

    Local back end: a folder under the artifact store. S3 back end: the saved prefect-aws
    `S3Bucket` block `s3-bucket/headwater-results` (`headwater blocks register` creates it),
    because Prefect needs result storage persisted server-side so workers can read it.
    """
    settings = settings or get_settings()
    if settings.storage == "s3":
        return f"s3-bucket/{RESULTS_BLOCK}"
    path = settings.artifacts_dir / "prefect-results"
    path.mkdir(parents=True, exist_ok=True)
    return path
