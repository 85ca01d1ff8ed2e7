"""Benchmark: Headwater mail migration vs a sequential FETCH-one/APPEND-one copy (same run).

    uv run python bench/mail_migration.py [--quick] [--messages N] [--user alice]

Needs the local Dovecot pair (`headwater services up`). Resets `--user` on both servers, loads
N messages made from the shared corpus (fresh Message-IDs) into the source, then measures:
the baseline (one connection, FETCH one, APPEND one), Headwater's flow with its default
parallelism, and Headwater's incremental re-run of the unchanged mailbox. imapsync is measured
too when it is on PATH. Writes bench/results/mail_migration.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECRET = "bench-mail-password"

_spec = importlib.util.spec_from_file_location(
    "hw_mail_corpus", ROOT / "tests" / "integration" / "mail" / "corpus.py"
)
assert _spec and _spec.loader
corpus = importlib.util.module_from_spec(_spec)
sys.modules["hw_mail_corpus"] = corpus
_spec.loader.exec_module(corpus)


def baseline_copy(user: str, password: str) -> tuple[int, int]:
    """One connection pair, strictly sequential: FETCH one message, APPEND it, repeat."""
    src = corpus.connect(11143, user, password)
    dst = corpus.connect(12143, user, password)
    count = nbytes = 0
    for flags, _d, name in src.list_folders():
        if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
            continue
        src.select_folder(name, readonly=True)
        if not dst.folder_exists(name):
            dst.create_folder(name)
        for uid in src.search("ALL"):
            item = src.fetch([uid], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])[uid]
            body = item[b"BODY[]"]
            fl = [f for f in item[b"FLAGS"] if f.lower() != b"\\recent"]
            dst.append(name, body, flags=fl, msg_time=item[b"INTERNALDATE"])
            count += 1
            nbytes += len(body)
    src.logout()
    dst.logout()
    return count, nbytes


def reset_dest(user: str, password: str) -> None:
    """Empty the destination account."""
    dst = corpus.connect(12143, user, password)
    corpus.reset_account(dst)
    dst.logout()


def dest_count(user: str, password: str) -> int:
    """Messages on the destination."""
    dst = corpus.connect(12143, user, password)
    total = 0
    for flags, _d, name in dst.list_folders():
        if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
            continue
        total += dst.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
    dst.logout()
    return total


def run_headwater(user: str) -> dict[str, Any]:
    """Headwater's mail-migration flow with default options; returns its report."""
    from flows.mail_migration import MailMigrationParams, mail_migration

    params = MailMigrationParams(
        source=corpus.account_ref(11143, user, SECRET),
        dest=corpus.account_ref(12143, user, SECRET),
        mailbox=f"bench-{user}",
    )
    return mail_migration(params)


def main() -> None:
    """Run the benchmark and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~1,000 messages (< 2 minutes)")
    parser.add_argument("--messages", type=int, default=None, help="messages in the mailbox")
    parser.add_argument("--user", default="alice", help="Dovecot test user to (re)use")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results" / "mail_migration.json",
        help="where to write the JSON result",
    )
    args = parser.parse_args()
    total = args.messages or (1000 if args.quick else 5000)

    from prefect.blocks.system import Secret

    from headwater.settings import get_settings

    settings = get_settings()
    password = settings.imap_test_password.get_secret_value()
    Secret(value=password).save(SECRET, overwrite=True)

    base = corpus.corpus_messages(settings.shared_data_dir / "email", with_mbox=False)
    messages = corpus.replicate(base, total, folders=8)
    src = corpus.connect(11143, args.user, password)
    corpus.reset_account(src)
    t0 = time.perf_counter()
    corpus.load_messages(src, messages, chunk=100)
    load_s = time.perf_counter() - t0
    src.logout()
    mb = sum(len(m.raw) for m in messages) / 1e6
    print(f"loaded {total} messages ({mb:.1f} MB) into the source in {load_s:.1f}s")

    reset_dest(args.user, password)
    t0 = time.perf_counter()
    n_base, bytes_base = baseline_copy(args.user, password)
    base_s = time.perf_counter() - t0
    assert dest_count(args.user, password) == total
    print(f"baseline sequential: {n_base} msgs in {base_s:.1f}s = {n_base / base_s:.1f} msg/s")

    reset_dest(args.user, password)
    t0 = time.perf_counter()
    report = run_headwater(args.user)
    hw_s = time.perf_counter() - t0
    assert report["totals"]["copied"] == total, report["totals"]
    assert dest_count(args.user, password) == total
    hw_bytes = report["totals"]["bytes"]
    print(f"headwater: {total} msgs in {hw_s:.1f}s = {total / hw_s:.1f} msg/s")

    t0 = time.perf_counter()
    again = run_headwater(args.user)
    inc_s = time.perf_counter() - t0
    assert again["totals"]["copied"] == 0
    print(f"headwater incremental re-run (unchanged): {inc_s:.1f}s")

    imapsync = None
    if shutil.which("imapsync"):  # pragma: no cover - not installable on the dev machine
        reset_dest(args.user, password)
        from tasks.imap_core import SyncOptions
        from tasks.imapsync_engine import run_imapsync

        t0 = time.perf_counter()
        run_imapsync.fn(
            corpus.account_ref(11143, args.user, SECRET),
            corpus.account_ref(12143, args.user, SECRET),
            SyncOptions(),
        )
        s = time.perf_counter() - t0
        imapsync = {"seconds": s, "messages_per_s": total / s}

    result = {
        "benchmark": "mail_migration",
        "quick": args.quick,
        "messages": total,
        "megabytes": round(bytes_base / 1e6, 2),
        "folders": 8,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "baseline_sequential": {
            "seconds": round(base_s, 2),
            "messages_per_s": round(n_base / base_s, 1),
            "mb_per_s": round(bytes_base / 1e6 / base_s, 2),
        },
        "headwater": {
            "seconds": round(hw_s, 2),
            "messages_per_s": round(total / hw_s, 1),
            "mb_per_s": round(hw_bytes / 1e6 / hw_s, 2),
            "includes": "whole flow run: Prefect task runs, folder listing, diff, copy, verify",
        },
        "speedup_vs_baseline": round(base_s / hw_s, 2),
        "incremental_rerun_seconds": round(inc_s, 2),
        "targets": {"speedup": 3.0, "incremental_rerun_seconds": 5.0},
        "imapsync": imapsync or "not installed (not on PATH)",
        "load_seconds": round(load_s, 2),
    }
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
