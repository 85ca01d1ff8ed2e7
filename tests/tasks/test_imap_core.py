"""Unit tests of the IMAP migration engine's pure parts and of the imapsync output parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tasks import imap_core
from tasks.imap_core import (
    FolderInfo,
    MessageMeta,
    SyncOptions,
    batches,
    clean_flags,
    decode_folder_name,
    diff_messages,
    encode_folder_name,
    flag_updates,
    folder_selected,
    header_hash,
    in_age_window,
    message_identity,
    pack_groups,
    parse_identity_fetch,
    parse_message_id,
    plan_folders,
    translate_separator,
)


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("INBOX", b"INBOX"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("日本語", b"&ZeVnLIqe-"),
        ("Tom & Jerry", b"Tom &- Jerry"),
        ("Archiv/Härte & Co", b"Archiv/H&AOQ-rte &- Co"),
    ],
)
def test_modified_utf7_round_trip(text: str, raw: bytes) -> None:
    assert encode_folder_name(text) == raw
    assert decode_folder_name(raw) == text
    assert decode_folder_name(raw.decode()) == text


@pytest.mark.parametrize(
    ("name", "src", "dst", "expected"),
    [
        ("a.b.c", ".", "/", "a/b/c"),
        ("a/b", "/", ".", "a.b"),
        ("x.y/z", "/", ".", "x_y.z"),  # a dest separator inside a component is not a new level
        ("same/sep", "/", "/", "same/sep"),
        ("flat", None, "/", "flat"),
    ],
)
def test_translate_separator(name: str, src: str | None, dst: str, expected: str) -> None:
    assert translate_separator(name, src, dst) == expected


def _folders(*entries: tuple[str, str, tuple[str, ...]]) -> list[FolderInfo]:
    return [FolderInfo(n, d, f) for n, d, f in entries]


def test_plan_folders_automap_mapping_rewrites_and_filters() -> None:
    source = _folders(
        ("INBOX", ".", ()),
        ("INBOX.Sent Items", ".", ()),  # no special-use flag: guessed from the name? no, path
        ("Sent Messages", ".", ("\\Sent",)),
        ("Deleted Items", ".", ()),
        ("Work.2024", ".", ()),
        ("Old.Stuff", ".", ()),
        ("Spam", ".", ()),
        ("Container", ".", ("\\Noselect",)),
        ("Mapped", ".", ()),
    )
    dest = _folders(
        ("INBOX", "/", ()),
        ("Gesendet", "/", ("\\Sent",)),
        ("Papierkorb", "/", ("\\Trash",)),
        ("Junk", "/", ("\\Junk",)),
        ("work/2024", "/", ()),
    )
    options = SyncOptions(
        exclude=[r"^Old\."],
        folder_map={"Mapped": "Elsewhere/Mapped"},
        regex_rewrites=[(r"^INBOX/", "")],
    )
    plans = {p.source: p for p in plan_folders(source, dest, options)}
    assert plans["INBOX"].dest == "INBOX" and plans["INBOX"].dest_exists
    assert plans["Sent Messages"].dest == "Gesendet"  # special-use flag on both sides
    assert plans["Deleted Items"].dest == "Papierkorb"  # name implies \Trash
    assert plans["Spam"].dest == "Junk"
    assert plans["INBOX.Sent Items"].dest == "Sent Items"  # separator + rewrite
    assert plans["Work.2024"].dest == "work/2024" and plans["Work.2024"].dest_exists  # case
    assert plans["Mapped"].dest == "Elsewhere/Mapped" and not plans["Mapped"].dest_exists
    assert "Old.Stuff" not in plans and "Container" not in plans


def test_plan_folders_without_automap_keeps_names() -> None:
    source = _folders(("Sent Messages", "/", ("\\Sent",)))
    dest = _folders(("Sent", "/", ("\\Sent",)))
    (plan,) = plan_folders(source, dest, SyncOptions(automap=False))
    assert plan.dest == "Sent Messages" and not plan.dest_exists


@pytest.mark.parametrize(
    ("name", "include", "exclude", "selected"),
    [
        ("INBOX", [], [], True),
        ("INBOX", ["^Arch"], [], False),
        ("Archive/2020", ["^Arch"], ["2020$"], False),
        ("Archive/2021", ["^Arch"], ["2020$"], True),
    ],
)
def test_folder_selected(name: str, include: list[str], exclude: list[str], selected: bool) -> None:
    assert folder_selected(name, include, exclude) is selected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Message-ID: <a@b>\r\nSubject: x\r\n\r\n", "<a@b>"),
        (b"Subject: x\r\nMessage-Id:\r\n <folded@b>\r\n\r\n", "<folded@b>"),
        (b"message-id:   <lower@b>  \n", "<lower@b>"),
        (b"Subject: none\r\n\r\n", None),
        (b"Message-ID: \r\n\r\n", None),
    ],
)
def test_parse_message_id(header: bytes, expected: str | None) -> None:
    assert parse_message_id(header) == expected


def test_identity_uses_header_hash_without_message_id() -> None:
    when = datetime(2002, 8, 13, 10, 25, 12, tzinfo=UTC)
    a = message_identity(b"From: x\r\nSubject: \xe9t\xe9\r\n\r\n", when, 100)
    b = message_identity(b"From: x\nSubject: \xe9t\xe9\n", when, 100)  # line endings ignored
    c = message_identity(b"From: y\r\nSubject: \xe9t\xe9\r\n\r\n", when, 100)
    assert a.startswith("hdr:") and a == b and a != c
    assert header_hash(b"A: 1\r\n") == header_hash(b"A: 1\n")


def test_identity_compares_internaldate_across_time_zones_and_size() -> None:
    utc = datetime(2010, 1, 2, 3, 4, 5, tzinfo=UTC)
    plus2 = utc.astimezone(timezone(timedelta(hours=2)))
    head = b"Message-ID: <m@x>\r\n"
    assert message_identity(head, utc, 10) == message_identity(head, plus2, 10)
    assert message_identity(head, utc, 10) != message_identity(head, utc, 11)
    assert message_identity(head, utc, 10) != message_identity(head, utc + timedelta(seconds=1), 10)


def _meta(uid: int, ident: str, flags: tuple[str, ...] = (), size: int = 10) -> MessageMeta:
    return MessageMeta(uid, ident, size, None, flags)


def test_diff_is_a_multiset_so_duplicate_message_ids_are_all_copied() -> None:
    source = [_meta(1, "a"), _meta(2, "a"), _meta(3, "a"), _meta(4, "b"), _meta(5, "c")]
    dest = [_meta(10, "a"), _meta(11, "b"), _meta(12, "z")]
    diff = diff_messages(source, dest)
    assert [m.uid for m in diff.missing] == [2, 3, 5]
    assert [(s.uid, d.uid) for s, d in diff.matched] == [(1, 10), (4, 11)]
    assert [m.uid for m in diff.extra] == [12]
    # after copying the missing ones, nothing is missing and nothing is extra
    after = [*dest, _meta(13, "a"), _meta(14, "a"), _meta(15, "c")]
    again = diff_messages(source, after)
    assert again.missing == [] and [m.uid for m in again.extra] == [12]


def test_flag_updates_group_destination_uids_by_wanted_flags() -> None:
    matched = [
        (_meta(1, "a", ("\\Seen",)), _meta(7, "a", ())),
        (_meta(2, "b", ("\\Seen",)), _meta(8, "b", ("\\Seen",))),
        (_meta(3, "c", ("\\Seen",)), _meta(9, "c", ("\\Flagged",))),
    ]
    assert flag_updates(matched) == {("\\Seen",): [7, 9]}


def test_clean_flags_drops_recent_and_decodes() -> None:
    assert clean_flags([b"\\Seen", b"\\Recent", "$Label1"]) == ("$Label1", "\\Seen")


def test_batches_bound_count_and_bytes() -> None:
    metas = [_meta(i, str(i), size=s) for i, s in enumerate([5, 5, 5, 20, 1, 1, 1], start=1)]
    assert batches(metas, max_messages=3, max_bytes=12) == [[1, 2], [3], [4], [5, 6, 7]]
    assert batches([], 3, 10) == []


def test_age_window() -> None:
    now = datetime(2024, 1, 31, tzinfo=UTC)
    ten_days = now - timedelta(days=10)
    assert in_age_window(ten_days, now, None, None)
    assert not in_age_window(ten_days, now, 5, None)
    assert in_age_window(ten_days, now, 15, None)
    assert not in_age_window(ten_days, now, None, 15)
    assert in_age_window(ten_days, now, None, 5)
    assert in_age_window(None, now, 1, 1)


def test_parse_identity_fetch() -> None:
    when = datetime(2002, 8, 13, 10, 25, 12, tzinfo=UTC)
    response = {
        7: {
            b"RFC822.SIZE": 321,
            b"INTERNALDATE": when,
            b"FLAGS": (b"\\Seen", b"\\Recent"),
            imap_core.IDENTITY_KEY: b"Message-ID: <x@y>\r\n\r\n",
        },
        3: {b"RFC822.SIZE": 5, b"INTERNALDATE": when, b"FLAGS": ()},
    }
    metas = parse_identity_fetch(response)
    assert [m.uid for m in metas] == [3, 7]
    assert metas[1].identity == f"mid:<x@y>|{int(when.timestamp())}|321"
    assert metas[1].flags == ("\\Seen",)
    assert metas[0].identity.startswith("hdr:")


def test_pack_groups_puts_big_folders_alone_and_packs_small_ones() -> None:
    plans = [imap_core.FolderPlan(n, n, True) for n in ("big", "s1", "s2", "s3", "s4")]
    sizes = {"big": 5000, "s1": 10, "s2": 10, "s3": 10, "s4": 10}
    packed = pack_groups([[p] for p in plans], sizes, bins=2, target=2000)
    assert sorted(len(b) for b in packed) == [1, 4]
    assert any([p.source for p in b] == ["big"] for b in packed)
    assert sorted(p.source for b in packed for p in b) == sorted(sizes)


def test_rate_limiter_spaces_out_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(imap_core.time, "sleep", slept.append)
    limiter = imap_core.RateLimiter(10.0)
    limiter.acquire(5)
    limiter.acquire(5)
    assert len(slept) == 1 and slept[0] == pytest.approx(0.5, abs=0.05)


# --- imapsync output parser (captured imapsync 2.2xx output, trimmed) --------------------

IMAPSYNC_SAMPLE = """\
Here is imapsync 2.229 on host mail1, a linux system with 3.8/7.7 free GiB of RAM
Host1: connecting and login on host1 [127.0.0.1] port [11143] with user [alice]
Host1: IMAP server [127.0.0.1] port [11143] user [alice] has 3 folders
Host2: connecting and login on host2 [127.0.0.1] port [12143] with user [alice]
Host1 folder [INBOX] has 28 messages in total (mind duplicates)
Host2 folder [INBOX] has 28 messages in total (mind duplicates)
Host1 folder [Junk] has 50 messages in total (mind duplicates)
Host2 folder [Junk] has 49 messages in total (mind duplicates)
Err 1/1: - msg Junk/17 {0} could not append ( Subject:[x], Date:["x"], Size:[0], Flags:[] ) \
to folder Junk: Error sending '...'
++++ Statistics
Transfer started on                     : Thu Jan  4 10:00:00 2024
Transfer ended on                       : Thu Jan  4 10:00:05 2024
Transfer time                           : 5.2 sec
Folders synced                          : 2/2 synced
Messages transferred                    : 77
Messages skipped                        : 0
Messages found duplicate on host1       : 0
Messages found in host1 not in host2    : 1 messages
Messages deleted on host1               : 0
Messages deleted on host2               : 2
Total bytes transferred                 : 1234567 (1.177 MiB)
Total bytes skipped                     : 0 (0.000 KiB)
Message rate                            : 14.8 messages/s
Reconnections to host1                  : 0
Biggest message                         : 160489 bytes (156.728 KiB)
Detected 1 errors
"""


def test_parse_imapsync_output() -> None:
    from tasks.imapsync_engine import parse_imapsync_output

    stats = parse_imapsync_output(IMAPSYNC_SAMPLE)
    assert stats["copied"] == 77
    assert stats["skipped"] == 0
    assert stats["bytes"] == 1234567
    assert stats["deleted"] == 2
    assert stats["errors"] == 1
    assert stats["folders"] == {
        "INBOX": {"source_count": 28, "dest_count": 28},
        "Junk": {"source_count": 50, "dest_count": 49},
    }
    assert stats["source_count"] == 78 and stats["dest_after"] == 77
    assert stats["error_lines"] and stats["error_lines"][0].startswith("Err 1/1")


def test_imapsync_argv_has_no_password() -> None:
    from pydantic import SecretStr

    from tasks.imap import ResolvedAccount
    from tasks.imapsync_engine import build_argv

    acc = ResolvedAccount(
        host="h", port=143, security="plain", username="u", password=SecretStr("s3cret-pw")
    )
    argv = build_argv("imapsync", acc, acc, "/tmp/p1", "/tmp/p2", SyncOptions(dry_run=True))
    assert "s3cret-pw" not in " ".join(argv)
    assert argv[argv.index("--passfile1") + 1] == "/tmp/p1"
    assert "--dry" in argv and "--delete2" not in argv
