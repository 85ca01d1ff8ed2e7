"""The mail-migration flows end to end on the real Dovecots: options, guards, CLI and inputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from headwater.errors import InputError

_spec = importlib.util.spec_from_file_location(
    "hw_mail_corpus", Path(__file__).parents[1] / "integration" / "mail" / "corpus.py"
)
assert _spec and _spec.loader
corpus = sys.modules.setdefault("hw_mail_corpus", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(corpus)

SECRET = "hw-test-mail-flow-password"


# --- inputs (no services) ---------------------------------------------------------------------


def test_batch_csv_with_urls_and_blocks(tmp_path: Path) -> None:
    from headwater.commands.mail_migration import load_batch_file

    path = tmp_path / "batch.csv"
    path.write_text(
        "# a comment line\n"
        "name,source,source_password_secret,dest,dest_password_secret,source_block,dest_block\n"
        "a,imaps://a@old.example:993,pw-a,imap://a@new.example,pw-a2,,\n"
        "b,,,,,blk-src,blk-dst\n"
    )
    a, b = load_batch_file(path)
    assert a.name == "a" and a.source.security == "tls" and a.source.port == 993
    assert a.dest.security == "starttls" and a.dest.password_secret == "pw-a2"
    assert b.source.block == "blk-src" and b.dest.block == "blk-dst"


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (
            "name,source,source_password,dest,dest_password_secret",
            "x,imap://u@h,pw,imap://u@h,s",
            "inline password",
        ),
        (
            "name,source,dest,dest_password_secret",
            "x,imap://u@h,imap://u@h,s",
            "--source-password-secret",
        ),
        (
            "name,source,source_password_secret,dest,dest_password_secret",
            "x,imap://u:pw@h,s,imap://u@h,s",
            "do not put a password in the URL",
        ),
    ],
)
def test_batch_csv_refuses_passwords_and_incomplete_rows(
    tmp_path: Path, header: str, row: str, message: str
) -> None:
    from headwater.commands.mail_migration import load_batch_file

    path = tmp_path / "batch.csv"
    path.write_text(f"{header}\n{row}\n")
    with pytest.raises(InputError, match=message):
        load_batch_file(path)


def test_failed_names_reads_a_batch_report(tmp_path: Path) -> None:
    from headwater.commands.mail_migration import failed_names

    path = tmp_path / "r.json"
    path.write_text(json.dumps({"failed": ["bob"], "mailboxes": []}))
    assert failed_names(path) == ["bob"]
    path.write_text("{}")
    with pytest.raises(InputError, match="only-failed"):
        failed_names(path)


# --- flows against the Dovecots ------------------------------------------------------------------


@pytest.fixture(scope="module")
def password(imap_source_service: Any, imap_dest_service: Any, prefect_api: str) -> str:
    from prefect.blocks.system import Secret

    from headwater.settings import get_settings

    value = get_settings().imap_test_password.get_secret_value()
    Secret(value=value).save(SECRET, overwrite=True)
    return value


@pytest.fixture
def carol(password: str) -> tuple[Any, Any, list[Any]]:
    """carol reset on both sides, 37 small messages (with duplicate Message-IDs) on the source."""
    from headwater.settings import get_settings

    msgs = corpus.corpus_messages(get_settings().shared_data_dir / "email", with_mbox=False)
    subset = [m for m in msgs if m.folder in ("INBOX", "Notmuch/duplicate")]
    src = corpus.connect(11143, "carol", password)
    dst = corpus.connect(12143, "carol", password)
    corpus.reset_account(src)
    corpus.reset_account(dst)
    corpus.load_messages(src, subset)
    return src, dst, subset


def _params(**options: Any) -> Any:
    from flows.mail_migration import MailMigrationParams
    from tasks.imap_core import SyncOptions

    return MailMigrationParams(
        source=corpus.account_ref(11143, "carol", SECRET),
        dest=corpus.account_ref(12143, "carol", SECRET),
        options=SyncOptions(**options),
        mailbox="flow-test-carol",
    )


def _count(snapshot: dict[str, list[Any]]) -> int:
    return sum(len(v) for v in snapshot.values())


@pytest.mark.integration
def test_dry_run_with_imap_account_blocks_writes_nothing(
    carol: tuple[Any, Any, list[Any]], password: str
) -> None:
    from blocks.imap import ImapAccount
    from flows.mail_migration import mail_migration
    from tasks.imap import AccountRef

    for side, port in (("src", 11143), ("dst", 12143)):
        ImapAccount(
            host="127.0.0.1", port=port, security="plain", username="carol", password=password
        ).save(f"hw-test-mail-carol-{side}", overwrite=True)
    _src, dst, _subset = carol
    params = _params(dry_run=True)
    params.source = AccountRef(block="hw-test-mail-carol-src")
    params.dest = AccountRef(block="hw-test-mail-carol-dst")
    report = mail_migration(params)
    assert report["status"] == "dry-run"
    assert report["totals"]["copied"] == 0
    assert _count(corpus.snapshot(dst)) == 0
    assert "Notmuch/duplicate" not in corpus.snapshot(dst)  # not even folders
    wanted = {r["source_folder"]: r["reason"] for r in report["folders"]}
    assert wanted["Notmuch/duplicate"] == "would copy 9"


@pytest.mark.integration
def test_age_window_flag_resync_and_guarded_delete2(carol: tuple[Any, Any, list[Any]]) -> None:
    from flows.mail_migration import mail_migration

    src, dst, subset = carol
    now = datetime.now(UTC)
    old = [m for m in subset if (now - m.date) > timedelta(days=365 * 12)]
    new = [m for m in subset if (now - m.date) <= timedelta(days=365 * 12)]
    assert old and new
    report = mail_migration(_params(max_age_days=365 * 12))
    assert report["totals"]["copied"] == len(new)
    report = mail_migration(_params())
    assert report["totals"]["copied"] == len(old)
    assert corpus.snapshot(dst) == corpus.snapshot(src)

    # change flags on the source; a plain run ignores them, resync_flags applies them
    src.select_folder("INBOX")
    uids = src.search("ALL")[:5]
    src.add_flags(uids, [b"\\Flagged", b"$Resynced"])
    assert mail_migration(_params())["totals"]["copied"] == 0
    assert corpus.snapshot(dst) != corpus.snapshot(src)
    mail_migration(_params(resync_flags=True))
    assert corpus.snapshot(dst) == corpus.snapshot(src)

    # delete2 needs its confirmation; with it, messages gone from the source go on dest too
    with pytest.raises(InputError, match="confirm_delete2"):
        mail_migration(_params(delete2=True))
    src.select_folder("INBOX")  # snapshot() left another folder selected read-only
    src.delete_messages(uids[:2])
    src.expunge()
    report = mail_migration(_params(delete2=True, confirm_delete2=True))
    assert report["totals"]["copied"] == 0
    assert sum(r["deleted"] for r in report["folders"]) == 2
    assert corpus.snapshot(dst) == corpus.snapshot(src)


@pytest.mark.integration
def test_cli_json_single_mailbox(carol: tuple[Any, Any, list[Any]]) -> None:
    from typer.testing import CliRunner

    from headwater.cli import app

    src, dst, subset = carol
    args = [
        "run",
        "mail-migration",
        "--source",
        "imap://carol@127.0.0.1:11143",
        "--source-password-secret",
        SECRET,
        "--dest",
        "imap://carol@127.0.0.1:12143",
        "--dest-password-secret",
        SECRET,
        "--security",
        "plain",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == "ok" and report["totals"]["copied"] == len(subset)
    assert corpus.snapshot(dst) == corpus.snapshot(src)


@pytest.mark.integration
def test_batch_chains_the_next_deployment(password: str) -> None:
    """When a batch finishes it starts the next deployment (run_deployment, no waiting)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from deployments.definitions import get_deployment
    from deployments.register import ensure_work_pools, register_deployment
    from flows.mail_migration import MailMigrationBatchParams, mail_migration_batch

    spec = get_deployment("mail-migration/mail-migration-on-demand")
    ensure_work_pools([spec.pool])
    deployment_id = register_deployment(spec)
    next_params = _params(dry_run=True).model_dump(mode="json")
    report = mail_migration_batch(
        MailMigrationBatchParams(
            jobs=[],
            next_deployment=spec.full_name,
            next_parameters={"params": next_params},
        )
    )
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(report["chained_flow_run"])
        client.set_flow_run_state(run.id, Cancelled(), force=True)  # do not leave work behind
    assert run.deployment_id == deployment_id
    assert run.parameters["params"]["source"]["password_secret"] == SECRET
    assert run.parameters["params"]["options"]["dry_run"] is True
