"""Mail migration on the two real Dovecots: byte-for-byte copy, re-runs, dropped connections."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "hw_mail_corpus", Path(__file__).parent / "mail" / "corpus.py"
)
assert _spec and _spec.loader
corpus = sys.modules.setdefault("hw_mail_corpus", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(corpus)

pytestmark = pytest.mark.integration

SECRET = "hw-test-mail-password"


@pytest.fixture(scope="module")
def password(imap_source_service: Any, imap_dest_service: Any, prefect_api: str) -> str:
    """The Dovecot test password, also saved as the Prefect Secret block SECRET."""
    from prefect.blocks.system import Secret

    from headwater.settings import get_settings

    value = get_settings().imap_test_password.get_secret_value()
    Secret(value=value).save(SECRET, overwrite=True)
    return value


@pytest.fixture(scope="module")
def messages() -> list[Any]:
    """The whole shared corpus (notmuch + SpamAssassin + mbox) with folders, flags, dates."""
    from headwater.settings import get_settings

    return corpus.corpus_messages(get_settings().shared_data_dir / "email")


def fresh_pair(user: str, password: str, messages: list[Any]) -> tuple[Any, Any]:
    """Reset `user` on both servers and load `messages` into the source account."""
    src = corpus.connect(11143, user, password)
    dst = corpus.connect(12143, user, password)
    corpus.reset_account(src)
    corpus.reset_account(dst)
    corpus.load_messages(src, messages)
    return src, dst


def params(user: str, **options: Any) -> Any:
    from flows.mail_migration import MailMigrationParams
    from tasks.imap_core import SyncOptions

    return MailMigrationParams(
        source=corpus.account_ref(11143, user, SECRET),
        dest=corpus.account_ref(12143, user, SECRET),
        options=SyncOptions(**options),
        mailbox=f"test-{user}",
    )


def test_corpus_migrates_byte_for_byte_and_rerun_copies_nothing(
    password: str, messages: list[Any]
) -> None:
    from flows.mail_migration import mail_migration

    src, dst = fresh_pair("alice", password, messages)
    before = corpus.snapshot(src)
    assert sum(len(v) for v in before.values()) == len(messages)
    assert "Posteingang/Geschäftlich/日本語" in before and "Archiv/Härte & Co" in before

    report = mail_migration(params("alice"))
    assert report["status"] == "ok"
    assert report["totals"]["copied"] == len(messages)
    assert report["totals"]["failed"] == 0
    # every source message is on the destination: same bytes, flags and INTERNALDATE
    assert corpus.snapshot(dst) == before

    again = mail_migration(params("alice"))
    assert again["totals"]["copied"] == 0
    assert again["totals"]["skipped"] == len(messages)
    assert corpus.snapshot(dst) == before  # nothing duplicated


def test_connection_killed_mid_folder_is_retried_without_duplicates(
    password: str, messages: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.mail_migration import mail_migration
    from tasks import imap_core

    subset = [m for m in messages if m.folder in ("Listen/linux-kernel", "Notmuch/duplicate")]
    src, dst = fresh_pair("bob", password, subset)
    before = corpus.snapshot(src)
    kills: list[int] = []

    def kill_once(folder: str, appended: int, client: Any) -> None:
        if folder == "Listen/linux-kernel" and appended >= 60 and not kills:
            kills.append(appended)
            client._imap.sock.shutdown(socket.SHUT_RDWR)  # the network drops

    monkeypatch.setattr(imap_core, "FAULT_HOOK", kill_once)
    report = mail_migration(params("bob", batch_messages=20, connections=1))
    assert kills, "the fault was not injected"
    assert report["status"] == "ok"
    after = corpus.snapshot(dst)
    assert after == before  # nothing missing, nothing duplicated
    monkeypatch.setattr(imap_core, "FAULT_HOOK", None)
    rerun = mail_migration(params("bob"))
    assert rerun["totals"]["copied"] == 0
    assert corpus.snapshot(dst) == before


def test_killed_run_then_rerun_completes(
    password: str, messages: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole first run fails (every attempt is cut); a plain re-run finishes the job."""
    from flows.mail_migration import MailMigrationFailed, mail_migration
    from tasks import imap, imap_core

    subset = [m for m in messages if m.folder == "Listen/linux-kernel"]
    src, dst = fresh_pair("bob", password, subset)
    before = corpus.snapshot(src)

    def always_kill(folder: str, appended: int, client: Any) -> None:
        if appended >= 40:
            client._imap.sock.shutdown(socket.SHUT_RDWR)

    monkeypatch.setattr(imap_core, "FAULT_HOOK", always_kill)
    no_retry = imap.sync_folders.with_options(retries=0)
    monkeypatch.setattr("flows.mail_migration.sync_folders", no_retry)
    with pytest.raises(MailMigrationFailed) as failed:
        mail_migration(params("bob", batch_messages=20, connections=1))
    assert failed.value.transient
    partial = corpus.snapshot(dst)
    assert 0 < sum(len(v) for v in partial.values()) < len(subset)

    monkeypatch.setattr(imap_core, "FAULT_HOOK", None)
    report = mail_migration(params("bob"))
    assert report["totals"]["copied"] == len(subset) - sum(len(v) for v in partial.values())
    assert corpus.snapshot(dst) == before
