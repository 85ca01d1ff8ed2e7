"""The artifact store: local folder and MinIO behind one interface."""

from __future__ import annotations

import io

import pytest

from headwater.errors import ConfigError, InputError
from headwater.settings import Settings
from headwater.storage import LocalStore, S3Store, check_store, get_store, run_key, validate_key


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "./a", "a\\b", "a\x00b"])
def test_validate_key_refuses_unsafe_keys(key: str) -> None:
    with pytest.raises(InputError, match="invalid artifact key"):
        validate_key(key)


def test_run_key_is_deterministic() -> None:
    assert (
        run_key("image-pipeline", "images", "1.jpg", run_id="r1")
        == "image-pipeline/r1/images/1.jpg"
    )
    assert run_key("x", "a", run_id="r") == run_key("x", "a", run_id="r")


def _roundtrip(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    prefix = "tests/roundtrip/"
    store.delete_prefix(prefix)
    store.put_bytes(prefix + "a.txt", b"alpha")
    store.put_bytes(prefix + "a.txt", b"alpha2")  # overwrite, never duplicate
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40_000)  # ~10 MB, goes through multipart/streaming
    store.put_file(prefix + "sub/big.bin", big)
    store.put_stream(prefix + "s.bin", io.BytesIO(b"streamed"))
    assert store.get_bytes(prefix + "a.txt") == b"alpha2"
    assert store.exists(prefix + "sub/big.bin")
    assert not store.exists(prefix + "nope")
    assert store.list(prefix) == [prefix + "a.txt", prefix + "s.bin", prefix + "sub/big.bin"]
    out = store.get_file(prefix + "sub/big.bin", tmp_path / "down.bin")
    assert out.read_bytes() == big.read_bytes()
    with store.open(prefix + "s.bin") as fh:
        assert fh.read() == b"streamed"
    assert store.url(prefix + "a.txt")
    assert store.delete_prefix(prefix) == 3
    assert store.list(prefix) == []


def test_local_store_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    _roundtrip(store, tmp_path)
    store.put_bytes("k/v", b"1")
    assert store.url("k/v").startswith("file://")


def test_default_store_is_local_folder(local_settings: Settings) -> None:
    store = get_store()
    assert isinstance(store, LocalStore)
    assert store.root == local_settings.artifacts_dir.resolve()


@pytest.mark.integration
def test_minio_store_roundtrip(s3_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = get_store()
    assert isinstance(store, S3Store)
    check_store(store)
    _roundtrip(store, tmp_path)
    # the object really is in MinIO: read it back with a separate boto3 client
    import boto3

    store.put_bytes("tests/direct.txt", b"via store")
    client = boto3.client(
        "s3",
        endpoint_url=s3_settings.s3_endpoint_url,
        aws_access_key_id=s3_settings.s3_access_key.get_secret_value(),  # type: ignore[union-attr]
        aws_secret_access_key=s3_settings.s3_secret_key.get_secret_value(),  # type: ignore[union-attr]
        region_name="us-east-1",
    )
    assert (
        client.get_object(Bucket="headwater", Key="tests/direct.txt")["Body"].read() == b"via store"
    )
    import httpx

    assert httpx.get(store.url("tests/direct.txt")).content == b"via store"


@pytest.mark.integration
def test_check_store_names_the_setting(s3_settings: Settings) -> None:
    wrong = s3_settings.model_copy(
        update={"s3_secret_key": __import__("pydantic").SecretStr("nope")}
    )
    with pytest.raises(ConfigError, match="HEADWATER_S3_ACCESS_KEY/HEADWATER_S3_SECRET_KEY"):
        check_store(get_store(wrong))
    missing = s3_settings.model_copy(update={"s3_bucket": "no-such-bucket-hw"})
    with pytest.raises(ConfigError, match="HEADWATER_S3_BUCKET"):
        check_store(get_store(missing))


def test_check_store_unreachable_endpoint(local_settings: Settings) -> None:
    from pydantic import SecretStr

    s = local_settings.model_copy(
        update={
            "storage": "s3",
            "s3_endpoint_url": "http://127.0.0.1:1",
            "s3_access_key": SecretStr("a"),
            "s3_secret_key": SecretStr("b"),
        }
    )
    with pytest.raises(ConfigError, match="HEADWATER_S3_ENDPOINT_URL"):
        check_store(get_store(s))


def test_unknown_backend(local_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="HEADWATER_STORAGE"):
        get_store(local_settings.model_copy(update={"storage": "ftp"}))
