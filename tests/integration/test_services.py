"""The local services of `headwater services up`, each proven with a real round trip."""

from __future__ import annotations

import email.utils
import imaplib
import json
import re
import socket
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from headwater import services
from headwater.commands.services import app
from headwater.services import ServiceStatus
from headwater.settings import DEV_PORTS, Settings

integration = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- unit: probes and failures never raise ----------------------------------------------------


@pytest.mark.parametrize("name", ["postgres", "mariadb", "mongo", "imap_source"])
def test_check_on_a_closed_port_is_unhealthy_with_a_reason(name: str, tmp_path: Path) -> None:
    port = _free_port()
    settings = Settings(
        data_dir=tmp_path,
        postgres_url=SecretStr(f"postgresql+psycopg://u:p@127.0.0.1:{port}/db"),
        mariadb_url=SecretStr(f"mysql+pymysql://u:p@127.0.0.1:{port}/db"),
        mongo_url=SecretStr(f"mongodb://127.0.0.1:{port}/db"),
        imap_source_port=port,
    )
    started = time.monotonic()
    status = services.check(name, settings)
    assert time.monotonic() - started < 3
    reason = f"nothing listening on 127.0.0.1:{port}"
    assert status == ServiceStatus(name, status.url, False, reason)
    assert "p@" not in status.url  # passwords are never shown


def test_up_without_a_binary_reports_the_fix_instead_of_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_find_binary", lambda name, settings: None)  # not installed
    settings = Settings(data_dir=tmp_path, imap_source_port=_free_port())
    [status] = services.up(["imap_source"], settings)
    assert status == ServiceStatus(
        "imap_source",
        f"imap://127.0.0.1:{settings.imap_source_port}",
        False,
        "dovecot-imapd missing: run scripts/bootstrap.sh",
    )


def test_a_stale_pid_file_is_ignored_and_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "minio.pid"
    pid_file.write_text("999999999\n")
    assert services._running_pid(pid_file, "minio") is None
    assert not pid_file.exists()


def test_unknown_service_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown service 'redis'"):
        services.check("redis")
    result = CliRunner().invoke(app, ["up", "redis"])
    assert result.exit_code == 2
    assert "unknown service redis" in result.output


# --- integration: each service for real -------------------------------------------------------


@integration
def test_minio_object_round_trip(minio_service: ServiceStatus, settings: Settings) -> None:
    s3 = services._s3_client(settings)
    key = f"tests/services/{uuid.uuid4()}.txt"
    s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"headwater")
    try:
        body = s3.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()
    finally:
        s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    assert body == b"headwater"


@integration
def test_mongo_document_round_trip(mongo_service: ServiceStatus, settings: Settings) -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=5000
    )
    collection = client.get_default_database()[f"test_services_{uuid.uuid4().hex}"]
    try:
        collection.insert_one({"_id": "pump-7", "readings": [1.5, 2.5], "meta": {"site": "A"}})
        found = collection.find_one({"meta.site": "A"})
    finally:
        collection.drop()
        client.close()
    assert found == {"_id": "pump-7", "readings": [1.5, 2.5], "meta": {"site": "A"}}


@integration
@pytest.mark.parametrize("name", ["postgres", "mariadb"])
def test_sql_row_round_trip(name: str, settings: Settings) -> None:
    import sqlalchemy as sa

    from tests.conftest import require_service

    require_service(name)
    url = (settings.postgres_url if name == "postgres" else settings.mariadb_url).get_secret_value()
    engine = sa.create_engine(url)
    table = f"test_services_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)"))
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'wellhead')"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT id, name FROM {table}")).all()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "wellhead")]


@integration
@pytest.mark.parametrize("name", ["imap_source", "imap_dest"])
def test_imap_login_append_and_special_use(name: str, settings: Settings) -> None:
    from tests.conftest import require_service

    require_service(name)
    port = settings.imap_source_port if name == "imap_source" else settings.imap_dest_port
    message_id = f"<{uuid.uuid4()}@headwater.test>"
    raw = (
        f"From: alice@headwater.test\r\nTo: bob@headwater.test\r\nSubject: hello\r\n"
        f"Message-ID: {message_id}\r\n\r\nbody\r\n"
    ).encode()
    when = imaplib.Time2Internaldate(email.utils.parsedate_to_datetime("1 Mar 2021 10:20:30 +0000"))
    with imaplib.IMAP4(settings.imap_host, port, timeout=10) as imap:
        imap.login("bob", settings.imap_test_password.get_secret_value())
        typ, caps = imap.capability()  # after login: the full list
        capabilities = set(caps[0].decode().upper().split())
        typ, listing = imap.list()
        assert typ == "OK"
        typ, appended = imap.append("INBOX", r"(\Seen \Flagged)", when, raw)
        assert typ == "OK"
        uid = re.search(rb"APPENDUID \d+ (\d+)", appended[0])  # UIDPLUS
        assert uid is not None
        imap.select("INBOX")
        typ, fetched = imap.uid("FETCH", uid.group(1).decode(), "(FLAGS INTERNALDATE)")
        assert typ == "OK"
        imap.uid("STORE", uid.group(1).decode(), "+FLAGS.SILENT", r"(\Deleted)")
        imap.expunge()
    summary = fetched[0].decode() if isinstance(fetched[0], bytes) else str(fetched[0])
    assert {"UIDPLUS", "MOVE", "IMAP4REV1"} <= capabilities
    assert r"\Seen" in summary and r"\Flagged" in summary
    assert '"01-Mar-2021 10:20:30 +0000"' in summary
    special = b" ".join(line for line in listing if isinstance(line, bytes))
    for flag in (rb"\Sent", rb"\Drafts", rb"\Trash", rb"\Junk"):
        assert flag in special


@integration
def test_container_from_base_image_has_no_network(
    docker_service: ServiceStatus, minio_service: ServiceStatus, settings: Settings
) -> None:
    client = services._docker_client(settings, timeout=60)
    port = DEV_PORTS["minio"]
    script = (
        "ls /sys/class/net; "
        f"if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; "
        "then echo CONNECTED; else echo UNREACHABLE; fi"
    )
    try:
        output = client.containers.run(
            settings.base_image, ["bash", "-c", script], network_mode="none", remove=True
        )
    finally:
        client.close()
    assert output.decode().split() == ["lo", "UNREACHABLE"]
    assert services._port_open("127.0.0.1", port)  # the host itself does reach MinIO


@integration
def test_up_is_idempotent_and_leaves_healthy_services_alone(settings: Settings) -> None:
    from tests.conftest import require_service

    names = ["minio", "imap_source"]
    for name in names:
        require_service(name)
    pids = [services._pid_path(settings, n).read_text() for n in names]
    statuses = services.up(names)
    assert [s.healthy for s in statuses] == [True, True]
    assert [services._pid_path(settings, n).read_text() for n in names] == pids


@integration
def test_status_json_lists_every_service_healthy() -> None:
    from tests.conftest import require_service

    for name in services.SERVICES:
        require_service(name)
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [s["name"] for s in payload["services"]] == list(services.SERVICES)
    assert payload["healthy"] is True
    assert all(s["healthy"] and s["reason"] == "" for s in payload["services"])
