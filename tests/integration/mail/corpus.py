"""Load the shared e-mail corpus into a Dovecot account; reset accounts between tests."""

from __future__ import annotations

import email.utils
import mailbox
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

#: Folders that Dovecot auto-creates (special use); emptied, not deleted, on reset.
KEEP_FOLDERS = {"INBOX", "Sent", "Drafts", "Trash", "Junk"}

#: corpus sub-folder -> IMAP folder on the source (nested, non-ASCII, special-use).
FOLDER_NAMES = {
    "spamassassin/spam-2": "Junk",
    "spamassassin/easy-ham-2": "Posteingang/Geschäftlich/日本語",
    "spamassassin/hard-ham-1": "Archiv/Härte & Co",
    "notmuch_corpora/lkml": "Listen/linux-kernel",
    "notmuch_corpora/default": "INBOX",
    "mbox": "Import/mbox «sample»",
}
MAILDIR_FLAGS = {"F": "\\Flagged", "S": "\\Seen", "R": "\\Answered", "D": "\\Draft"}
FALLBACK_DATE = datetime(1999, 12, 31, 23, 59, 58, tzinfo=UTC)
SKIP_NAMES = {"COPYING", "LICENSE", "README"}


@dataclass
class CorpusMessage:
    """One message to APPEND: folder, exact bytes, flags and INTERNALDATE."""

    folder: str
    raw: bytes
    flags: tuple[str, ...]
    date: datetime


def _folder_for(rel_dir: str) -> str:
    for prefix, name in FOLDER_NAMES.items():
        if rel_dir == prefix or rel_dir.startswith(prefix + "/"):
            rest = rel_dir[len(prefix) :].strip("/")
            if not rest:
                return name
            return f"Notmuch/default/{rest}" if name == "INBOX" else f"{name}/{rest}"
    return "Notmuch/" + rel_dir.split("/", 1)[-1] if "/" in rel_dir else "Notmuch"


def _date_of(raw: bytes) -> datetime:
    match = re.search(rb"^Date:[ \t]*(.+)$", raw[:20000], re.MULTILINE | re.IGNORECASE)
    if match:
        try:
            value = email.utils.parsedate_to_datetime(match.group(1).decode("latin-1").strip())
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            if 1971 < value.year < 2037:
                return value
        except (TypeError, ValueError, IndexError):
            pass
    return FALLBACK_DATE


def strip_mbox_from(raw: bytes) -> bytes:
    """Remove a leading mbox `From ` separator line (not part of the message)."""
    if raw.startswith(b"From "):
        return raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw


def corpus_messages(email_dir: Path, with_mbox: bool = True) -> list[CorpusMessage]:
    """Every message of the shared corpus with its target folder, flags and date."""
    out: list[CorpusMessage] = []
    files = sorted(p for p in email_dir.rglob("*") if p.is_file() and p.parent != email_dir)
    for i, path in enumerate(files):
        if path.name.split(".")[0].upper() in SKIP_NAMES or path.name.startswith("LICENSE"):
            continue
        rel = path.parent.relative_to(email_dir).as_posix()
        rel = re.sub(r"/(cur|new|tmp)$", "", rel)
        raw = strip_mbox_from(path.read_bytes())
        if not raw.strip():
            continue
        flags = set()
        if ":2," in path.name:
            flags |= {MAILDIR_FLAGS[c] for c in path.name.split(":2,", 1)[1] if c in MAILDIR_FLAGS}
        if i % 3 == 0:
            flags.add("\\Seen")
        if i % 7 == 0:
            flags.add("$Label1")
        out.append(CorpusMessage(_folder_for(rel), raw, tuple(sorted(flags)), _date_of(raw)))
    if with_mbox and (email_dir / "spamassassin_sample.mbox").exists():
        box = mailbox.mbox(str(email_dir / "spamassassin_sample.mbox"), create=False)
        for j, key in enumerate(box.keys()):
            raw = box.get_bytes(key)
            flags = ("\\Answered",) if j % 4 == 0 else ()
            out.append(CorpusMessage(FOLDER_NAMES["mbox"], raw, flags, _date_of(raw)))
    return out


def connect(port: int, user: str, password: str, host: str = "127.0.0.1") -> IMAPClient:
    """A plain-auth connection to one of the local Dovecots."""
    client = IMAPClient(host, port=port, ssl=False, timeout=60)
    client.normalise_times = False
    client.login(user, password)
    return client


def reset_account(client: IMAPClient) -> None:
    """Empty every folder and delete the ones Dovecot does not auto-create."""
    listing = client.list_folders()
    folders = [name for _flags, _d, name in listing]
    for name in sorted(folders, key=lambda n: -n.count("/")):
        if not client.folder_exists(name):  # a \NonExistent parent of a nested folder
            continue
        if name in KEEP_FOLDERS:
            client.select_folder(name)
            uids = client.search("ALL")
            if uids:
                client.delete_messages(uids)
                client.expunge()
            client.unselect_folder()
        else:
            client.delete_folder(name)


def load_messages(client: IMAPClient, messages: list[CorpusMessage], chunk: int = 50) -> int:
    """Create folders and APPEND messages with flags and dates; return the count appended."""
    existing = {name for _f, _d, name in client.list_folders()}
    by_folder: dict[str, list[CorpusMessage]] = {}
    for m in messages:
        by_folder.setdefault(m.folder, []).append(m)
    count = 0
    for folder, items in by_folder.items():
        if folder not in existing:
            client.create_folder(folder)
            existing.add(folder)
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            client.multiappend(
                folder, [{"msg": m.raw, "flags": m.flags, "date": m.date} for m in part]
            )
            count += len(part)
    return count


def snapshot(client: IMAPClient) -> dict[str, list[tuple[bytes, tuple[str, ...], int]]]:
    """Folder -> sorted (bytes, flags, INTERNALDATE epoch) of every message (for comparisons)."""
    out: dict[str, list[Any]] = {}
    for flags, _d, name in client.list_folders():
        if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
            continue
        client.select_folder(name, readonly=True)
        uids = client.search("ALL")
        rows = []
        for start in range(0, len(uids), 200):
            data = client.fetch(uids[start : start + 200], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
            for item in data.values():
                fl = tuple(sorted(f.decode() for f in item[b"FLAGS"] if f.lower() != b"\\recent"))
                rows.append((item[b"BODY[]"], fl, int(item[b"INTERNALDATE"].timestamp())))
        out[name] = sorted(rows)
    return out


def replicate(messages: list[CorpusMessage], total: int, folders: int = 8) -> list[CorpusMessage]:
    """`total` messages made from the corpus with fresh Message-IDs, spread over folders."""
    out = []
    for i in range(total):
        base = messages[i % len(messages)]
        raw = re.sub(
            rb"^Message-ID:[^\n]*\n([ \t][^\n]*\n)*",
            b"",
            base.raw,
            count=1,
            flags=re.IGNORECASE | re.MULTILINE,
        )
        raw = b"Message-ID: <bench-%d@headwater.test>\r\n" % i + raw
        out.append(CorpusMessage(f"Bench/part-{i % folders:02d}", raw, base.flags, base.date))
    return out


def account_ref(port: int, user: str, secret: str) -> Any:
    """An AccountRef for a local Dovecot test user whose password is in Secret `secret`."""
    from tasks.imap import AccountRef

    return AccountRef(
        host="127.0.0.1", port=port, security="plain", username=user, password_secret=secret
    )
