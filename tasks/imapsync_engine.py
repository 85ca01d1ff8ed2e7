"""Optional engine: run imapsync (when on PATH) for a mailbox pair and parse its statistics.

Passwords go through `--passfile1/--passfile2` (0600 temporary files), never through argv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from headwater.errors import ConfigError
from tasks.imap import AccountRef, ResolvedAccount, resolve_account
from tasks.imap_core import SyncOptions

_STAT = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9 /()-]*?)\s*:\s*(?P<value>-?\d+)")
_FOLDER = re.compile(
    r"^(?P<host>Host[12]):? folder \[(?P<folder>.*)\] has (?P<count>\d+) messages in total"
)
_STATS_KEYS = {
    "Messages transferred": "copied",
    "Messages skipped": "skipped",
    "Total bytes transferred": "bytes",
    "Messages deleted on host2": "deleted",
    "Detected": "errors",
}


def parse_imapsync_output(text: str) -> dict[str, Any]:
    """Totals and per-folder source/destination counts from imapsync's output.

    Returns:
        {"copied", "skipped", "bytes", "deleted", "errors", "source_count", "dest_after",
        "folders": {name: {"source_count", "dest_count"}}, "error_lines": [...]}.
    """
    out: dict[str, Any] = {"folders": {}, "error_lines": []}
    in_stats = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("++++ Statistics"):
            in_stats = True
            continue
        folder = _FOLDER.match(stripped)
        if folder:
            row = out["folders"].setdefault(folder["folder"], {"source_count": 0, "dest_count": 0})
            key = "source_count" if folder["host"] == "Host1" else "dest_count"
            row[key] = int(folder["count"])
            continue
        if stripped.startswith("Detected ") and stripped.endswith("errors"):
            out["errors"] = int(stripped.split()[1])
            continue
        if stripped.startswith("Err ") or stripped.startswith("ERR"):
            out["error_lines"].append(stripped[:300])
        if not in_stats:
            continue
        stat = _STAT.match(stripped)
        if stat and stat["key"].strip() in _STATS_KEYS:
            out[_STATS_KEYS[stat["key"].strip()]] = int(stat["value"])
    for key in ("copied", "skipped", "bytes", "deleted", "errors"):
        out.setdefault(key, 0)
    out["source_count"] = sum(f["source_count"] for f in out["folders"].values())
    out["dest_after"] = sum(f["dest_count"] for f in out["folders"].values())
    return out


def build_argv(
    binary: str,
    source: ResolvedAccount,
    dest: ResolvedAccount,
    passfile1: str,
    passfile2: str,
    options: SyncOptions,
) -> list[str]:
    """The imapsync command line (no secrets: passwords are in the pass files)."""
    argv = [binary, "--nolog", "--no-modulesversion", "--syncinternaldates", "--automap"]
    for n, account, passfile in ((1, source, passfile1), (2, dest, passfile2)):
        argv += [f"--host{n}", account.host, f"--port{n}", str(account.port)]
        argv += [f"--user{n}", account.username, f"--passfile{n}", passfile]
        if account.security == "tls":
            argv.append(f"--ssl{n}")
        elif account.security == "starttls":
            argv.append(f"--tls{n}")
        else:
            argv.append(f"--notls{n}")
    if options.dry_run:
        argv.append("--dry")
    if options.just_folders:
        argv.append("--justfolders")
    for pattern in options.include:
        argv += ["--include", pattern]
    for pattern in options.exclude:
        argv += ["--exclude", pattern]
    for src, dst in options.folder_map.items():
        argv += ["--f1f2", f"{src}={dst}"]
    for pattern, repl in options.regex_rewrites:
        argv += ["--regextrans2", f"s/{pattern}/{repl}/"]
    if options.max_age_days is not None:
        argv += ["--maxage", str(options.max_age_days)]
    if options.min_age_days is not None:
        argv += ["--minage", str(options.min_age_days)]
    if options.delete2 and options.confirm_delete2:
        argv.append("--delete2")
    if not options.resync_flags:
        argv.append("--noresyncflags")
    return argv


@task(name="run_imapsync")
def run_imapsync(
    source: AccountRef, dest: AccountRef, options: SyncOptions
) -> list[dict[str, Any]]:
    """Run imapsync for one mailbox pair; return report rows like the built-in engine's."""
    binary = shutil.which("imapsync")
    if not binary:
        raise ConfigError("engine=imapsync", "imapsync is not on PATH; use engine=python")
    src, dst = resolve_account(source), resolve_account(dest)
    with tempfile.TemporaryDirectory(prefix="hw-imapsync-") as tmp:
        files = []
        for n, account in ((1, src), (2, dst)):
            path = Path(tmp) / f"pass{n}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(account.password.get_secret_value())
            files.append(str(path))
        argv = build_argv(binary, src, dst, files[0], files[1], options)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=tmp)
    stats = parse_imapsync_output(proc.stdout)
    get_run_logger().info(
        "imapsync exit %d: copied %d, skipped %d, errors %d",
        proc.returncode,
        stats["copied"],
        stats["skipped"],
        stats["errors"],
    )
    failed = proc.returncode != 0 or stats["errors"] > 0
    return [
        {
            "source_folder": "(all, imapsync)",
            "dest_folder": "(all, imapsync)",
            "source_count": stats["source_count"],
            "selected": stats["source_count"],
            "dest_before": 0,
            "dest_after": stats["dest_after"],
            "copied": stats["copied"],
            "skipped": stats["skipped"],
            "failed": stats["errors"],
            "flags_updated": 0,
            "deleted": stats["deleted"],
            "bytes": stats["bytes"],
            "status": "failed" if failed else ("dry-run" if options.dry_run else "ok"),
            "reason": "; ".join(stats["error_lines"][:3])
            or (f"imapsync exit code {proc.returncode}" if failed else ""),
        }
    ]
