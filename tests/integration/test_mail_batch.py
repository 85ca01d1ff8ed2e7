"""Batch mail migration: a wrong password fails only its mailbox; re-run only the failed ones;
no password anywhere in Prefect logs, artifacts, parameters or the artifact store."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime
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

GOOD, WRONG = "hw-test-mail-batch-good", "hw-test-mail-batch-wrong"
WRONG_PASSWORD = "hw-wrong-pw-3f9c1e"


@pytest.fixture(scope="module")
def started() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def password(imap_source_service: Any, imap_dest_service: Any, prefect_api: str) -> str:
    from prefect.blocks.system import Secret

    from headwater.settings import get_settings

    value = get_settings().imap_test_password.get_secret_value()
    Secret(value=value).save(GOOD, overwrite=True)
    Secret(value=WRONG_PASSWORD).save(WRONG, overwrite=True)
    return value


@pytest.fixture(scope="module")
def small_corpus() -> list[Any]:
    from headwater.settings import get_settings

    msgs = corpus.corpus_messages(get_settings().shared_data_dir / "email", with_mbox=False)
    return [m for m in msgs if not m.folder.startswith("Listen/")]  # ~260 messages, all kinds


def _reset(user: str, password: str, messages: list[Any]) -> tuple[Any, Any]:
    src = corpus.connect(11143, user, password)
    dst = corpus.connect(12143, user, password)
    corpus.reset_account(src)
    corpus.reset_account(dst)
    corpus.load_messages(src, messages)
    return src, dst


def test_wrong_password_fails_only_that_mailbox_and_only_failed_rerun(
    password: str, small_corpus: list[Any], started: datetime, tmp_path: Path
) -> None:
    from flows.mail_migration import MailMigrationBatchParams, mail_migration_batch
    from headwater.commands.mail_migration import failed_names, load_batch_file

    carol_src, carol_dst = _reset("carol", password, small_corpus)
    bob_src, bob_dst = _reset("bob", password, small_corpus[:30])
    batch = tmp_path / "batch.csv"
    batch.write_text(
        "name,source,source_password_secret,dest,dest_password_secret,security\n"
        f"carol,imap://carol@127.0.0.1:11143,{GOOD},imap://carol@127.0.0.1:12143,{GOOD},plain\n"
        f"bob,imap://bob@127.0.0.1:11143,{GOOD},imap://bob@127.0.0.1:12143,{WRONG},plain\n"
    )
    jobs = load_batch_file(batch)
    report = mail_migration_batch(
        MailMigrationBatchParams(jobs=jobs, retries=2, retry_delay_seconds=1)
    )
    rows = {r["mailbox"]: r for r in report["mailboxes"]}
    assert report["failed"] == ["bob"]
    assert rows["bob"]["attempts"] == 1  # a refused login is not retried
    assert "login refused" in rows["bob"]["reason"]
    assert rows["carol"]["status"] == "ok" and rows["carol"]["copied"] == len(small_corpus)
    assert corpus.snapshot(carol_dst) == corpus.snapshot(carol_src)
    assert sum(len(v) for v in corpus.snapshot(bob_dst).values()) == 0

    # fix bob's secret, re-run only the failed mailbox from the saved report
    previous = tmp_path / "report.json"
    previous.write_text(json.dumps(report))
    from prefect.blocks.system import Secret

    Secret(value=password).save(WRONG, overwrite=True)
    try:
        rerun = mail_migration_batch(
            MailMigrationBatchParams(jobs=jobs, only=failed_names(previous))
        )
    finally:
        Secret(value=WRONG_PASSWORD).save(WRONG, overwrite=True)
    assert [r["mailbox"] for r in rerun["mailboxes"]] == ["bob"]
    assert rerun["failed"] == [] and rerun["mailboxes"][0]["copied"] == 30
    assert corpus.snapshot(bob_dst) == corpus.snapshot(bob_src)


def test_no_password_in_logs_artifacts_parameters_or_store(
    password: str, started: datetime
) -> None:
    """Runs after the batch test: every mail-migration run of this session is inspected."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )

    from headwater.settings import get_settings
    from headwater.storage import get_store

    secrets = [password, WRONG_PASSWORD]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(
                name=FlowFilterName(any_=["mail-migration", "mail-migration-batch"])
            ),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=started)),
            limit=200,
        )
        assert runs, "no mail-migration flow runs to inspect"
        ids = [r.id for r in runs]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        )
    assert logs and artifacts
    haystack = [json.dumps(r.parameters, default=str) for r in runs]
    haystack += [log.message for log in logs]
    haystack += [json.dumps(a.data, default=str) + str(a.description) for a in artifacts]
    store = get_store(get_settings())
    for key in store.list("mail-migration/"):
        haystack.append(store.get_bytes(key).decode("utf-8", "replace"))
    for secret in secrets:
        leaks = [h[:200] for h in haystack if secret in h]
        assert not leaks, f"password found in {len(leaks)} places: {leaks[:2]}"
