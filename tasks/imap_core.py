"""IMAP migration engine: folder mapping, message identities, diffing and the folder copy loop.

Everything here works on plain values or on already-open `IMAPClient` objects; opening
connections, loading blocks and Prefect live in `tasks/imap.py`.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from imapclient import imap_utf7
from pydantic import BaseModel, Field

#: RFC 6154 special-use attributes that automap pairs across servers.
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")

#: Folder names that imply a special use when the server does not announce it (lower case).
SPECIAL_USE_NAMES: dict[str, str] = {
    "sent": "\\Sent",
    "sent items": "\\Sent",
    "sent messages": "\\Sent",
    "sent mail": "\\Sent",
    "[gmail]/sent mail": "\\Sent",
    "gesendet": "\\Sent",
    "drafts": "\\Drafts",
    "draft": "\\Drafts",
    "[gmail]/drafts": "\\Drafts",
    "entwürfe": "\\Drafts",
    "trash": "\\Trash",
    "deleted items": "\\Trash",
    "deleted messages": "\\Trash",
    "[gmail]/trash": "\\Trash",
    "[gmail]/bin": "\\Trash",
    "papierkorb": "\\Trash",
    "junk": "\\Junk",
    "junk e-mail": "\\Junk",
    "junk email": "\\Junk",
    "spam": "\\Junk",
    "[gmail]/spam": "\\Junk",
    "archive": "\\Archive",
    "archives": "\\Archive",
    "[gmail]/all mail": "\\All",
    "[gmail]/starred": "\\Flagged",
}

#: Header fields fetched to identify a message (Message-ID, plus what the fallback hash uses).
IDENTITY_FIELDS = "MESSAGE-ID DATE FROM TO CC SUBJECT"
IDENTITY_FETCH = f"BODY.PEEK[HEADER.FIELDS ({IDENTITY_FIELDS})]"
IDENTITY_KEY = f"BODY[HEADER.FIELDS ({IDENTITY_FIELDS})]".encode()

#: Test hook: called as FAULT_HOOK(folder, appended_so_far, dest_client) after each APPEND.
FAULT_HOOK: Callable[[str, int, Any], None] | None = None


# --- options ------------------------------------------------------------------------------------


class SyncOptions(BaseModel):
    """What to copy and how: folder selection, mapping, age window, flags, deletions, batching."""

    dry_run: bool = Field(default=False, description="Report what would be copied; write nothing.")
    just_folders: bool = Field(default=False, description="Create folders only, copy no message.")
    include: list[str] = Field(
        default_factory=list, description="Regexes; only source folders matching one are synced."
    )
    exclude: list[str] = Field(
        default_factory=list, description="Regexes; source folders matching one are skipped."
    )
    folder_map: dict[str, str] = Field(
        default_factory=dict, description="Explicit source folder -> destination folder names."
    )
    regex_rewrites: list[tuple[str, str]] = Field(
        default_factory=list,
        description="(pattern, replacement) applied in order to translated destination names.",
    )
    automap: bool = Field(
        default=True, description="Map RFC 6154 special-use folders (Sent, Trash...) by role."
    )
    max_age_days: float | None = Field(
        default=None, description="Only messages whose INTERNALDATE is newer than this."
    )
    min_age_days: float | None = Field(
        default=None, description="Only messages whose INTERNALDATE is older than this."
    )
    resync_flags: bool = Field(
        default=False, description="Also update flags of messages already on the destination."
    )
    delete2: bool = Field(
        default=False,
        description="Mirror deletions: expunge destination messages absent from the source.",
    )
    confirm_delete2: bool = Field(
        default=False, description="Must also be true for delete2 to act (a guard)."
    )
    connections: int = Field(
        default=4, ge=1, le=32, description="Connection pairs per folder copy (within host limits)."
    )
    batch_messages: int = Field(default=100, ge=1, description="Messages per FETCH/APPEND batch.")
    batch_bytes: int = Field(
        default=8_000_000, ge=1, description="Upper bound of bytes per FETCH/APPEND batch."
    )
    fetch_chunk: int = Field(default=2000, ge=1, description="UIDs per identity FETCH command.")
    rate_limit: float | None = Field(
        default=None, gt=0, description="Max messages/s copied per host pair in this process."
    )


# --- folder names ---------------------------------------------------------------------------------


def encode_folder_name(name: str) -> bytes:
    """Encode a folder name to IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    return imap_utf7.encode(name)


def decode_folder_name(raw: bytes | str) -> str:
    """Decode a modified UTF-7 folder name (bytes or str) to text."""
    return imap_utf7.decode(raw.encode("ascii") if isinstance(raw, str) else raw)


def translate_separator(name: str, source_sep: str | None, dest_sep: str | None) -> str:
    """Rewrite a folder path from the source hierarchy separator to the destination one.

    A destination separator occurring inside a source path component is replaced by `_`,
    so the component does not silently become a new hierarchy level.
    """
    if not source_sep or not dest_sep or source_sep == dest_sep:
        return name
    parts = name.split(source_sep)
    return dest_sep.join(part.replace(dest_sep, "_") for part in parts)


@dataclass(frozen=True)
class FolderInfo:
    """One LIST entry: name (decoded), hierarchy delimiter and attribute flags."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...] = ()
    messages: int = 0

    @property
    def selectable(self) -> bool:
        """False for \\Noselect / \\NonExistent containers."""
        lowered = {f.lower() for f in self.flags}
        return "\\noselect" not in lowered and "\\nonexistent" not in lowered

    @property
    def special_use(self) -> str | None:
        """The RFC 6154 role announced by the server, else guessed from the name."""
        for flag in self.flags:
            for role in SPECIAL_USE:
                if flag.lower() == role.lower():
                    return role
        return SPECIAL_USE_NAMES.get(self.name.lower())

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for task results)."""
        return {
            "name": self.name,
            "delimiter": self.delimiter,
            "flags": list(self.flags),
            "messages": self.messages,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FolderInfo:
        """Inverse of `to_dict`."""
        return cls(
            data["name"],
            data.get("delimiter"),
            tuple(data.get("flags", ())),
            int(data.get("messages", 0)),
        )


def folder_infos(listing: Iterable[tuple[Sequence[Any], Any, Any]]) -> list[FolderInfo]:
    """Turn an `IMAPClient.list_folders()` result into FolderInfo objects."""
    out = []
    for flags, delim, name in listing:
        text = name if isinstance(name, str) else decode_folder_name(name)
        sep = delim.decode() if isinstance(delim, bytes) else delim
        out.append(
            FolderInfo(text, sep, tuple(f.decode() if isinstance(f, bytes) else f for f in flags))
        )
    return out


@dataclass(frozen=True)
class FolderPlan:
    """One source folder, the destination folder it goes to, and whether that exists yet."""

    source: str
    dest: str
    dest_exists: bool
    reason: str = "translated"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for task parameters)."""
        return {
            "source": self.source,
            "dest": self.dest,
            "dest_exists": self.dest_exists,
            "reason": self.reason,
        }


def folder_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Include/exclude filtering by regular expressions (imapsync semantics: search, not match)."""
    if include and not any(re.search(p, name) for p in include):
        return False
    return not any(re.search(p, name) for p in exclude)


def plan_folders(
    source: Sequence[FolderInfo], dest: Sequence[FolderInfo], options: SyncOptions
) -> list[FolderPlan]:
    """Map every selected source folder to its destination folder.

    Order of precedence: explicit `folder_map`, INBOX, special-use automap, then separator
    translation followed by the regex rewrites.
    """
    dest_names = {f.name for f in dest}
    dest_lower = {f.name.lower(): f.name for f in dest}
    dest_sep = next((f.delimiter for f in dest if f.delimiter), "/")
    by_role: dict[str, str] = {}
    for folder in dest:
        role = folder.special_use
        if role and folder.selectable:
            by_role.setdefault(role, folder.name)
    plans: list[FolderPlan] = []
    for folder in source:
        if not folder.selectable or not folder_selected(
            folder.name, options.include, options.exclude
        ):
            continue
        reason = "translated"
        if folder.name in options.folder_map:
            target, reason = options.folder_map[folder.name], "mapped"
        elif folder.name.upper() == "INBOX":
            target, reason = "INBOX", "inbox"
        elif options.automap and folder.special_use and folder.special_use in by_role:
            target, reason = by_role[folder.special_use], f"automap {folder.special_use}"
        else:
            target = translate_separator(folder.name, folder.delimiter, dest_sep)
            for pattern, repl in options.regex_rewrites:
                rewritten = re.sub(pattern, repl, target)
                if rewritten != target:
                    target, reason = rewritten, "rewritten"
            # a case-only difference on the destination is the same folder (no twin folders)
            target = target if target in dest_names else dest_lower.get(target.lower(), target)
        plans.append(
            FolderPlan(folder.name, target, target in dest_names or target == "INBOX", reason)
        )
    return plans


def pack_groups(
    groups: Sequence[list[FolderPlan]],
    sizes: dict[str, int],
    bins: int,
    target: int = 2000,
) -> list[list[FolderPlan]]:
    """Pack folder groups into task batches: big folders alone, small ones together.

    Longest-processing-time greedy: at least `bins` batches (when there are enough groups),
    more when the total exceeds `target` messages per batch.
    """
    weight = {id(g): sum(sizes.get(p.source, 0) for p in g) + 1 for g in groups}
    big = [w for w in weight.values() if w >= target]
    small = sum(w for w in weight.values() if w < target)
    count = min(len(groups), max(bins, len(big) + -(-small // target)))
    if count <= 0:
        return []
    packed: list[list[FolderPlan]] = [[] for _ in range(count)]
    load = [0] * count
    for group in sorted(groups, key=lambda g: -weight[id(g)]):
        i = load.index(min(load))
        packed[i].extend(group)
        load[i] += weight[id(group)]
    return [b for b in packed if b]


def group_by_dest(plans: Sequence[FolderPlan]) -> list[list[FolderPlan]]:
    """Group plans whose destination is the same folder: one task syncs them in order."""
    groups: dict[str, list[FolderPlan]] = defaultdict(list)
    for plan in plans:
        groups[plan.dest].append(plan)
    return list(groups.values())


# --- message identity -----------------------------------------------------------------------------


def parse_message_id(header_block: bytes) -> str | None:
    """The Message-ID of a header block (folded lines allowed), or None when absent or empty."""
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header_block)
    for line in unfolded.splitlines():
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"message-id":
            text = value.strip().decode("latin-1")
            return text or None
    return None


def header_hash(header_block: bytes) -> str:
    """A stable hash of the identity header fields (line endings and edge whitespace ignored)."""
    normalised = b"\n".join(line.rstrip() for line in header_block.strip().splitlines())
    return hashlib.sha1(normalised, usedforsecurity=False).hexdigest()


def to_epoch(value: datetime | None) -> int:
    """INTERNALDATE as integer UTC seconds (naive datetimes are taken as UTC)."""
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def message_identity(header_block: bytes, internaldate: datetime | None, size: int) -> str:
    """Identity of one message: Message-ID (else header hash) + INTERNALDATE + size."""
    mid = parse_message_id(header_block)
    head = f"mid:{mid}" if mid else f"hdr:{header_hash(header_block)}"
    return f"{head}|{to_epoch(internaldate)}|{size}"


@dataclass
class MessageMeta:
    """What the identity FETCH returns for one UID."""

    uid: int
    identity: str
    size: int
    internaldate: datetime | None
    flags: tuple[str, ...]


def clean_flags(flags: Iterable[Any]) -> tuple[str, ...]:
    """Flags to copy: text, without \\Recent (which only the server may set)."""
    out = []
    for flag in flags:
        text = flag.decode() if isinstance(flag, bytes) else str(flag)
        if text.lower() != "\\recent":
            out.append(text)
    return tuple(sorted(out))


def parse_identity_fetch(response: dict[int, dict[bytes, Any]]) -> list[MessageMeta]:
    """Turn an identity FETCH response (UID -> data items) into MessageMeta rows."""
    metas = []
    for uid, data in response.items():
        header = data.get(IDENTITY_KEY)
        if header is None:  # the Message-ID-only pass, or another spacing/case of the item
            header = next((v for k, v in data.items() if k.upper().startswith(b"BODY[HEADER")), b"")
        size = int(data.get(b"RFC822.SIZE", 0))
        when = data.get(b"INTERNALDATE")
        metas.append(
            MessageMeta(
                uid=int(uid),
                identity=message_identity(header or b"", when, size),
                size=size,
                internaldate=when,
                flags=clean_flags(data.get(b"FLAGS", ())),
            )
        )
    metas.sort(key=lambda m: m.uid)
    return metas


def in_age_window(
    when: datetime | None, now: datetime, max_age_days: float | None, min_age_days: float | None
) -> bool:
    """imapsync --maxage/--minage on INTERNALDATE."""
    if when is None:
        return True
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    age = now - when
    if max_age_days is not None and age > timedelta(days=max_age_days):
        return False
    return not (min_age_days is not None and age < timedelta(days=min_age_days))


@dataclass
class FolderDiff:
    """Result of comparing identities: what to copy, what matches, what is extra on dest."""

    missing: list[MessageMeta] = field(default_factory=list)
    matched: list[tuple[MessageMeta, MessageMeta]] = field(default_factory=list)
    extra: list[MessageMeta] = field(default_factory=list)


def diff_messages(source: Sequence[MessageMeta], dest: Sequence[MessageMeta]) -> FolderDiff:
    """Multiset diff by identity: n source copies of an identity need n destination copies."""
    pool: dict[str, list[MessageMeta]] = defaultdict(list)
    for meta in sorted(dest, key=lambda m: m.uid):
        pool[meta.identity].append(meta)
    diff = FolderDiff()
    for meta in sorted(source, key=lambda m: m.uid):
        bucket = pool.get(meta.identity)
        if bucket:
            diff.matched.append((meta, bucket.pop(0)))
        else:
            diff.missing.append(meta)
    diff.extra = sorted((m for bucket in pool.values() for m in bucket), key=lambda m: m.uid)
    return diff


def identity_counts(metas: Iterable[MessageMeta]) -> Counter[str]:
    """Multiset of identities (for verification)."""
    return Counter(m.identity for m in metas)


def batches(metas: Sequence[MessageMeta], max_messages: int, max_bytes: int) -> list[list[int]]:
    """Split messages into UID batches bounded by count and by total size."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for meta in metas:
        if current and (len(current) >= max_messages or size + meta.size > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(meta.uid)
        size += meta.size
    if current:
        out.append(current)
    return out


def flag_updates(
    matched: Iterable[tuple[MessageMeta, MessageMeta]],
) -> dict[tuple[str, ...], list[int]]:
    """Destination UIDs whose flags differ from the source, grouped by the wanted flag set."""
    updates: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for src, dst in matched:
        if set(src.flags) != set(dst.flags):
            updates[src.flags].append(dst.uid)
    return dict(updates)


# --- rate limiting --------------------------------------------------------------------------------


class RateLimiter:
    """Token bucket shared by the threads of one process (messages per second)."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def acquire(self, n: int = 1) -> None:
        """Block until `n` more messages may be sent."""
        if not self.per_second:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.per_second
        delay = start - now
        if delay > 0:
            time.sleep(delay)


_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def rate_limiter(key: str, per_second: float | None) -> RateLimiter:
    """The process-wide limiter of one host pair."""
    if not per_second:
        return RateLimiter(None)
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((key, per_second), RateLimiter(per_second))


# --- the folder engine ----------------------------------------------------------------------------


@dataclass
class FolderReport:
    """Per-folder outcome, one row of the migration report."""

    source_folder: str
    dest_folder: str
    source_count: int = 0
    selected: int = 0
    dest_before: int = 0
    dest_after: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    flags_updated: int = 0
    deleted: int = 0
    bytes: int = 0
    status: Literal["ok", "dry-run", "failed"] = "ok"
    reason: str = ""
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for results and artifacts."""
        return {k: v for k, v in self.__dict__.items()}


def uid_set(uids: Sequence[int]) -> str:
    """Compress UIDs into an IMAP sequence set (1:5,7,9:12)."""
    parts: list[str] = []
    ordered = sorted(uids)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_LITERAL_ITEM = re.compile(rb"(BODY(?:\.PEEK)?\[[^\]]*\](?:<\d+>)?) \{\d+\}$", re.IGNORECASE)
_START = re.compile(rb"\d+ \(")
_DATE_CACHE: dict[bytes, datetime] = {}


def parse_internaldate(raw: bytes) -> datetime:
    """An IMAP INTERNALDATE (" 2-Jan-2010 03:04:05 +0100") as an aware datetime."""
    cached = _DATE_CACHE.get(raw)
    if cached is None:
        cached = datetime.strptime(raw.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
        if len(_DATE_CACHE) < 100_000:
            _DATE_CACHE[raw] = cached
    return cached


def parse_raw_fetch(data: Sequence[Any]) -> dict[int, dict[bytes, Any]]:
    """Parse imaplib's UID FETCH data (bytes lines and (prefix, literal) tuples).

    Returns the shape of `IMAPClient.fetch`: UID -> {b"FLAGS", b"INTERNALDATE",
    b"RFC822.SIZE", b"BODY[...]"}; literals are the exact bytes received.
    """
    out: dict[int, dict[bytes, Any]] = {}
    texts: list[bytes] = []
    literals: dict[bytes, bytes] = {}

    def flush() -> None:
        text = b" ".join(texts)
        uid = _UID.search(text)
        if uid is not None:
            item: dict[bytes, Any] = dict(literals)
            if (m := _SIZE.search(text)) is not None:
                item[b"RFC822.SIZE"] = int(m.group(1))
            if (m := _DATE.search(text)) is not None:
                item[b"INTERNALDATE"] = parse_internaldate(m.group(1))
            if (m := _FLAGS.search(text)) is not None:
                item[b"FLAGS"] = tuple(m.group(1).split())
            out[int(uid.group(1))] = item
        texts.clear()
        literals.clear()

    for part in data:
        if part is None:
            continue
        head = part[0] if isinstance(part, tuple) else part
        if _START.match(head) and texts:  # a new message starts: finish the previous one
            flush()
        texts.append(head)
        if isinstance(part, tuple):
            name = _LITERAL_ITEM.search(head)
            if name is not None:
                key = name.group(1).upper().replace(b".PEEK", b"")
                literals[key] = part[1]
    if texts:
        flush()
    return out


def raw_fetch(client: Any, uids: Sequence[int], items: str) -> dict[int, dict[bytes, Any]]:
    """UID FETCH through imaplib and a regex parser (imapclient's parser is slow at 10^4)."""
    if not uids:
        return {}
    typ, data = client._imap.uid("FETCH", uid_set(uids), f"({items})")
    if typ != "OK":
        import imaplib

        raise imaplib.IMAP4.error(f"UID FETCH failed: {data!r:.200}")
    return parse_raw_fetch(data)


IDENTITY_ITEMS = f"UID RFC822.SIZE INTERNALDATE FLAGS {IDENTITY_FETCH}"
#: First pass: only the Message-ID header (small); the wider fields only where it is missing.
MID_ITEMS = "UID RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
BODY_ITEMS = "UID FLAGS INTERNALDATE BODY.PEEK[]"


def fetch_identities(client: Any, chunk: int) -> list[MessageMeta]:
    """Identities of every message in the selected folder, fetched in UID chunks."""
    uids = sorted(client.search("ALL"))
    metas: list[MessageMeta] = []
    for start in range(0, len(uids), chunk):
        part = parse_identity_fetch(raw_fetch(client, uids[start : start + chunk], MID_ITEMS))
        no_mid = [m.uid for m in part if m.identity.startswith("hdr:")]
        if no_mid:
            wide = parse_identity_fetch(raw_fetch(client, no_mid, IDENTITY_ITEMS))
            by_uid = {m.uid: m for m in wide}
            part = [by_uid.get(m.uid, m) for m in part]
        metas.extend(part)
    return metas


class PairPool(Protocol):
    """Opens and closes (source, dest) connection pairs within the per-host limits."""

    def open(self, blocking: bool) -> tuple[Any, Any] | None:
        """Connected, logged-in clients; None when not blocking and no slot is free."""

    def close(self, pair: tuple[Any, Any]) -> None:
        """Log out both clients and release their slots."""


def copy_batch(
    src: Any, dst: Any, dest_folder: str, uids: list[int], report_failure: Callable[[str], None]
) -> tuple[int, int]:
    """FETCH BODY.PEEK[] for `uids` and APPEND them (flags, INTERNALDATE, exact bytes).

    Uses one MULTIAPPEND (atomic) when the server has it, falling back to one APPEND per
    message so that a message the server rejects is reported and the rest still land.

    Returns:
        (messages appended, bytes appended).
    """
    data = raw_fetch(src, uids, BODY_ITEMS)
    msgs = []
    for uid in uids:
        item = data.get(uid)
        if item is None:  # expunged on the source since the identity fetch
            continue
        body = item.get(b"BODY[]")
        if body is None:
            report_failure(f"uid {uid}: no body returned")
            continue
        msgs.append(
            {
                "msg": body,
                "flags": clean_flags(item.get(b"FLAGS", ())),
                "date": item.get(b"INTERNALDATE"),
                "uid": uid,
            }
        )
    if not msgs:
        return 0, 0
    if len(msgs) > 1 and dst.has_capability("MULTIAPPEND"):
        try:
            dst.multiappend(dest_folder, [_append_item(m) for m in msgs])
            return len(msgs), sum(len(m["msg"]) for m in msgs)
        except Exception as exc:
            if not _is_server_refusal(exc):
                raise
    done = nbytes = 0
    for m in msgs:
        try:
            dst.append(dest_folder, m["msg"], flags=m["flags"], msg_time=m["date"])
        except Exception as exc:
            if not _is_server_refusal(exc):
                raise
            report_failure(f"uid {m['uid']}: {str(exc)[:200]}")
            continue
        done += 1
        nbytes += len(m["msg"])
    return done, nbytes


def _append_item(m: dict[str, Any]) -> dict[str, Any]:
    item = {"msg": m["msg"], "flags": m["flags"]}
    if m["date"] is not None:
        item["date"] = m["date"]
    return item


def _is_server_refusal(exc: BaseException) -> bool:
    """A tagged NO/BAD for one command (the connection is still fine)."""
    import imaplib

    return isinstance(exc, imaplib.IMAP4.error) and not isinstance(exc, imaplib.IMAP4.abort)


def sync_folder_group(
    plans: Sequence[FolderPlan],
    pool: PairPool,
    options: SyncOptions,
    limiter: RateLimiter | None = None,
    now: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[FolderReport]:
    """Sync source folders that share one destination folder, in order.

    Args:
        plans: Source -> destination plans with the same `dest`.
        pool: Opens connection pairs (blocking for the first, opportunistic for extras).
        options: Sync options.
        limiter: Rate limiter (messages/s) or None.
        now: Reference time for the age window (default: now).
        on_progress: Called with the number of messages handled after each batch.
    """
    now = now or datetime.now(UTC)
    reports: list[FolderReport] = []
    pair = pool.open(True)
    if pair is None:
        raise RuntimeError("no IMAP connection pair could be opened")
    src, dst = pair
    try:
        for plan in plans:
            reports.append(_sync_one(plan, src, dst, pool, options, limiter, now, on_progress))
    finally:
        pool.close(pair)
    return reports


def _sync_one(
    plan: FolderPlan,
    src: Any,
    dst: Any,
    pool: PairPool,
    options: SyncOptions,
    limiter: RateLimiter | None,
    now: datetime,
    on_progress: Callable[[int], None] | None,
) -> FolderReport:
    report = FolderReport(plan.source, plan.dest)
    src.select_folder(plan.source, readonly=True)
    source_all = fetch_identities(src, options.fetch_chunk)
    report.source_count = len(source_all)
    source = [
        m
        for m in source_all
        if in_age_window(m.internaldate, now, options.max_age_days, options.min_age_days)
    ]
    report.selected = len(source)
    # the plan may be stale (folder deleted meanwhile): the destination is the ground truth
    dest_exists = dst.folder_exists(plan.dest)
    if not dest_exists and not options.dry_run:
        dst.create_folder(plan.dest)
        dest_exists = True
    if dest_exists:
        dst.select_folder(plan.dest)
        dest_msgs = fetch_identities(dst, options.fetch_chunk)
    else:
        dest_msgs = []
    report.dest_before = report.dest_after = len(dest_msgs)
    diff = diff_messages(source, dest_msgs)
    report.skipped = len(diff.matched)
    if options.dry_run or options.just_folders:
        report.status = "dry-run" if options.dry_run else "ok"
        report.reason = f"would copy {len(diff.missing)}" if options.dry_run else "just folders"
        report.bytes = sum(m.size for m in diff.missing) if options.dry_run else 0
        return report

    failures: list[str] = []
    lock = threading.Lock()

    def fail(text: str) -> None:
        with lock:
            failures.append(text)

    work = batches(diff.missing, options.batch_messages, options.batch_bytes)
    if work:
        copied, nbytes = _copy_parallel(
            work, src, dst, plan, pool, options, limiter, fail, on_progress
        )
        report.copied, report.bytes = copied, nbytes

    if options.resync_flags and diff.matched:
        for flags, uids in flag_updates(diff.matched).items():
            dst.set_flags(uids, list(flags), silent=True)
            report.flags_updated += len(uids)

    if options.delete2 and options.confirm_delete2 and diff.extra:
        extra = [
            m
            for m in diff.extra
            if in_age_window(m.internaldate, now, options.max_age_days, options.min_age_days)
        ]
        if extra:
            uids = [m.uid for m in extra]
            dst.delete_messages(uids)
            if dst.has_capability("UIDPLUS"):
                dst.uid_expunge(uids)
            else:
                dst.expunge()
            report.deleted = len(extra)

    # verification: the destination is the ground truth, so re-read it when it changed
    if report.copied or report.deleted or not dest_exists:
        if not dest_exists and not dst.folder_exists(plan.dest):
            after: list[MessageMeta] = []
        else:
            dst.select_folder(plan.dest)
            after = fetch_identities(dst, options.fetch_chunk)
        report.dest_after = len(after)
        left = diff_messages(source, after).missing
    else:
        left = diff.missing
    report.failed = len(left)
    report.failures = failures[:20]
    if left:
        report.status = "failed"
        report.reason = (
            "; ".join(failures[:3]) or f"{len(left)} messages missing on the destination"
        )
    return report


def _copy_parallel(
    work: list[list[int]],
    src: Any,
    dst: Any,
    plan: FolderPlan,
    pool: PairPool,
    options: SyncOptions,
    limiter: RateLimiter | None,
    fail: Callable[[str], None],
    on_progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """Copy batches with the planning connection plus extra pairs when slots are free."""
    queue = list(reversed(work))
    qlock = threading.Lock()
    totals = [0, 0]
    errors: list[BaseException] = []

    def next_batch() -> list[int] | None:
        with qlock:
            return queue.pop() if queue and not errors else None

    def worker(s: Any, d: Any) -> None:
        while (uids := next_batch()) is not None:
            if limiter:
                limiter.acquire(len(uids))
            n, b = copy_batch(s, d, plan.dest, uids, fail)
            with qlock:
                totals[0] += n
                totals[1] += b
                appended = totals[0]
            if FAULT_HOOK is not None:
                FAULT_HOOK(plan.dest, appended, d)
            if on_progress:
                on_progress(len(uids))

    def extra_worker() -> None:
        try:
            pair = pool.open(False)
            if pair is None:  # per-host limit reached: the planning pair does the work
                return
        except BaseException:
            return
        try:
            pair[0].select_folder(plan.source, readonly=True)
            worker(*pair)
        except BaseException as exc:
            with qlock:
                errors.append(exc)
        finally:
            pool.close(pair)

    threads = []
    for _ in range(max(min(options.connections, len(work)) - 1, 0)):
        t = threading.Thread(target=extra_worker, daemon=True)
        t.start()
        threads.append(t)
    try:
        worker(src, dst)
    except BaseException as exc:
        with qlock:
            errors.append(exc)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return totals[0], totals[1]


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
