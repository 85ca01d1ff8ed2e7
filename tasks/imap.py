"""Prefect tasks that talk to IMAP servers: list and create folders, sync one folder group."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from prefect import get_run_logger, task
from prefect.context import TaskRunContext
from pydantic import BaseModel, Field, SecretStr, model_validator

from headwater.errors import ConfigError, HeadwaterError, InputError
from tasks import imap_core
from tasks.imap_core import FolderInfo, FolderPlan, SyncOptions

Security = Literal["tls", "starttls", "plain"]


class ImapAuthError(HeadwaterError):
    """Login refused: a permanent error (retrying would only lock the account)."""


class AccountRef(BaseModel):
    """Where a mailbox is and how to find its password: an ImapAccount block, or an address
    plus the name of a Prefect Secret block. Never the password itself."""

    block: str | None = Field(default=None, description="Name of an ImapAccount block.")
    host: str | None = Field(default=None, description="IMAP host (when no block is given).")
    port: int | None = Field(default=None, description="IMAP port (default 993, 143 for plain).")
    security: Security = Field(default="tls", description="tls, starttls or plain.")
    username: str | None = Field(default=None, description="Login name.")
    password_secret: str | None = Field(
        default=None, description="Name of the Prefect Secret block holding the password."
    )
    max_connections: int = Field(
        default=4, ge=1, description="Connections allowed to this host at once."
    )

    @model_validator(mode="after")
    def _complete(self) -> AccountRef:
        if self.block:
            return self
        missing = [n for n in ("host", "username", "password_secret") if not getattr(self, n)]
        if missing:
            raise ValueError(
                "an account needs either `block` or host, username and password_secret; "
                f"missing {', '.join(missing)}"
            )
        return self

    @property
    def label(self) -> str:
        """user@host:port or the block name (safe for logs)."""
        if self.block and not self.host:
            return f"block:{self.block}"
        return f"{self.username}@{self.host}:{self.port or default_port(self.security)}"

    @classmethod
    def from_url(
        cls, url: str, password_secret: str, security: Security | None = None
    ) -> AccountRef:
        """Parse imap://user@host:port (imaps:// means TLS); the URL must not carry a password."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps"):
            raise InputError(f"{url!r}: expected imap://user@host[:port] or imaps://...")
        if parts.password is not None:
            raise InputError(
                "account URL: do not put a password in the URL; use --*-password-secret"
            )
        if not parts.hostname or not parts.username:
            raise InputError(f"{url!r}: needs a user and a host (imap://user@host:port)")
        sec: Security = security or ("tls" if parts.scheme == "imaps" else "starttls")
        return cls(
            host=parts.hostname,
            port=parts.port,
            security=sec,
            username=unquote(parts.username),
            password_secret=password_secret,
        )


def default_port(security: str) -> int:
    """993 for implicit TLS, 143 otherwise."""
    return 993 if security == "tls" else 143


class ResolvedAccount(BaseModel):
    """An account with its password loaded (lives only inside a task)."""

    host: str
    port: int
    security: Security
    username: str
    password: SecretStr
    max_connections: int = 4

    @property
    def label(self) -> str:
        """user@host:port (safe for logs)."""
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def host_key(self) -> str:
        """Name of the per-host concurrency limit."""
        return imap_core_limit_name(self.host, self.port)


def imap_core_limit_name(host: str, port: int) -> str:
    """Global concurrency limit name of one IMAP server."""
    safe = "".join(c if c.isalnum() else "-" for c in host.lower())
    return f"imap-{safe}-{port}"


def resolve_account(ref: AccountRef) -> ResolvedAccount:
    """Load the ImapAccount block or the Secret block named in `ref`."""
    if ref.block:
        from blocks.imap import ImapAccount

        try:
            block: Any = ImapAccount.load(ref.block)
        except ValueError as exc:
            raise ConfigError(f"ImapAccount block {ref.block!r}", "not found") from exc
        return ResolvedAccount(
            host=block.host,
            port=block.port,
            security=block.security,
            username=block.username,
            password=block.password,
            max_connections=block.max_connections,
        )
    from prefect.blocks.system import Secret

    try:
        secret: Any = Secret.load(ref.password_secret or "")
    except ValueError as exc:
        raise ConfigError(f"Secret block {ref.password_secret!r}", "not found") from exc
    value = secret.get()
    return ResolvedAccount(
        host=ref.host or "",
        port=ref.port or default_port(ref.security),
        security=ref.security,
        username=ref.username or "",
        password=SecretStr(str(value)),
        max_connections=ref.max_connections,
    )


def connect(account: ResolvedAccount, timeout: float = 60.0) -> IMAPClient:
    """Open and log in one connection; a refused login raises ImapAuthError."""
    client = IMAPClient(
        account.host,
        port=account.port,
        ssl=account.security == "tls",
        ssl_context=ssl.create_default_context() if account.security == "tls" else None,
        timeout=timeout,
    )
    client.normalise_times = False  # keep INTERNALDATE time zones (exact round trip)
    try:
        if account.security == "starttls":
            client.starttls(ssl.create_default_context())
        client.login(account.username, account.password.get_secret_value())
    except LoginError as exc:
        with contextlib.suppress(Exception):
            client.shutdown()
        reason = str(exc)[:200]
        if reason.startswith(("b'", 'b"')):  # imapclient passes the server's bytes through str()
            reason = reason[2:-1]
        raise ImapAuthError(
            f"{account.label}: login refused by the server ({reason}); "
            "check the password secret or ImapAccount block"
        ) from None
    return client


def is_transient(exc: BaseException) -> bool:
    """Connection drops and timeouts are worth a retry; a refused login or a bad input is not."""
    if isinstance(exc, ImapAuthError | LoginError | HeadwaterError):
        return False
    return isinstance(
        exc, imaplib.IMAP4.abort | ConnectionError | TimeoutError | socket.timeout | OSError
    )


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """retry_condition_fn: retry only transient I/O errors."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


# --- per-host connection limits ------------------------------------------------------------

_LOCAL_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_LOCAL_LOCK = threading.Lock()


def _local_semaphore(name: str, limit: int) -> threading.BoundedSemaphore:
    with _LOCAL_LOCK:
        return _LOCAL_SLOTS.setdefault(name, threading.BoundedSemaphore(limit))


def prefect_server_configured() -> bool:
    """True when a Prefect API server is configured (global concurrency limits are shared)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


@contextlib.contextmanager
def host_slots(accounts: list[ResolvedAccount], blocking: bool, use_global: bool) -> Iterator[bool]:
    """Hold one connection slot on each account's host; yields False if not acquired.

    With a Prefect server, the slots are Prefect global concurrency limits (shared by every
    worker); otherwise a process-local semaphore per host.
    """
    names = sorted({a.host_key for a in accounts})
    if use_global and blocking:
        from prefect.concurrency.sync import concurrency

        with concurrency(names, occupy=1):
            yield True
        return
    if use_global:
        lease_id = _try_lease(names)
        try:
            yield lease_id is not None
        finally:
            if lease_id is not None:
                _release_lease(lease_id)
        return
    limits = {a.host_key: a.max_connections for a in accounts}
    sems = [_local_semaphore(n, limits[n]) for n in names]
    taken = []
    try:
        for sem in sems:
            if not sem.acquire(blocking=blocking, timeout=None if blocking else 0.5):
                break
            taken.append(sem)
        ok = len(taken) == len(sems)
        if not ok:
            for sem in taken:
                sem.release()
            taken = []
        yield ok
    finally:
        for sem in taken:
            sem.release()


#: Lease of an opportunistic extra connection; expires by itself if the process dies.
EXTRA_LEASE_SECONDS = 3600


def _try_lease(names: list[str]) -> Any:
    """One slot on every limit in `names` now, or None when a limit is full (no waiting)."""
    import httpx
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names, 1, "concurrency", EXTRA_LEASE_SECONDS
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 423:  # Locked: no free slot
                return None
            raise
    return response.json()["lease_id"]


def _release_lease(lease_id: Any) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.release_concurrency_slots_with_lease(UUID(str(lease_id)))


class _Pool:
    """PairPool over two resolved accounts with per-host slots."""

    def __init__(self, source: ResolvedAccount, dest: ResolvedAccount, use_global: bool) -> None:
        self.source, self.dest, self.use_global = source, dest, use_global
        self._stacks: dict[int, contextlib.ExitStack] = {}
        self._lock = threading.Lock()

    def open(self, blocking: bool) -> tuple[Any, Any] | None:
        stack = contextlib.ExitStack()
        try:
            if not stack.enter_context(
                host_slots([self.source, self.dest], blocking, self.use_global)
            ):
                stack.close()
                return None
            src = connect(self.source)
            stack.callback(_logout, src)
            dst = connect(self.dest)
            stack.callback(_logout, dst)
        except BaseException:
            stack.close()
            raise
        with self._lock:
            self._stacks[id(dst)] = stack
        return src, dst

    def close(self, pair: tuple[Any, Any]) -> None:
        with self._lock:
            stack = self._stacks.pop(id(pair[1]), None)
        if stack is not None:
            stack.close()


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        with contextlib.suppress(Exception):
            client.shutdown()


# --- tasks --------------------------------------------------------------------------------


@task(name="ensure_host_limits", retries=2, retry_delay_seconds=[1, 5])
def ensure_host_limits(source: AccountRef, dest: AccountRef) -> dict[str, int]:
    """Create or update the per-host global concurrency limits (idempotent upsert)."""
    from prefect.client.orchestration import get_client

    limits: dict[str, int] = {}
    for ref in (source, dest):
        account = resolve_account(ref)
        limits[account.host_key] = max(limits.get(account.host_key, 0), account.max_connections)
    if not prefect_server_configured():
        return limits
    with get_client(sync_client=True) as client:
        for name, limit in limits.items():
            client.upsert_global_concurrency_limit_by_name(name, limit)
    return limits


@task(
    name="list_folders",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
def list_folders(account: AccountRef) -> list[dict[str, Any]]:
    """List the folders of one mailbox (decoded names, delimiter, attributes)."""
    resolved = resolve_account(account)
    client = connect(resolved)
    try:
        folders = [
            FolderInfo(f.name, f.delimiter, f.flags, _message_count(client, f))
            for f in imap_core.folder_infos(client.list_folders())
        ]
    finally:
        _logout(client)
    get_run_logger().info("%s: %d folders", resolved.label, len(folders))
    return [f.to_dict() for f in folders]


def _message_count(client: IMAPClient, folder: FolderInfo) -> int:
    if not folder.selectable:
        return 0
    return int(client.folder_status(folder.name, [b"MESSAGES"]).get(b"MESSAGES", 0))


@task(
    name="create_folders",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
def create_folders(account: AccountRef, names: list[str], dry_run: bool = False) -> list[str]:
    """Create the missing destination folders (idempotent: existing ones are left alone)."""
    if dry_run or not names:
        return []
    resolved = resolve_account(account)
    client = connect(resolved)
    created = []
    try:
        for name in names:
            if client.folder_exists(name):
                continue
            client.create_folder(name)
            with contextlib.suppress(imaplib.IMAP4.error):
                client.subscribe_folder(name)
            created.append(name)
    finally:
        _logout(client)
    if created:
        get_run_logger().info("%s: created %d folders", resolved.label, len(created))
    return created


@task(
    name="sync_folders",
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_condition_fn=retry_transient,
    task_run_name="sync_folders-{plans[0][dest]}",
)
def sync_folders(
    source: AccountRef,
    dest: AccountRef,
    plans: list[dict[str, Any]],
    options: SyncOptions,
    use_global_limits: bool = True,
) -> list[dict[str, Any]]:
    """Copy what is missing from a batch of source folders to their destinations; return rows."""
    logger = get_run_logger()
    src_account, dst_account = resolve_account(source), resolve_account(dest)
    use_global = use_global_limits and prefect_server_configured()
    pool = _Pool(src_account, dst_account, use_global)
    limiter = imap_core.rate_limiter(
        f"{src_account.host_key}>{dst_account.host_key}", options.rate_limit
    )
    attempt = 0
    ctx = TaskRunContext.get()
    if ctx is not None:
        attempt = ctx.task_run.run_count
    reports = imap_core.sync_folder_group(
        [FolderPlan(**p) for p in plans], pool, options, limiter=limiter
    )
    for r in reports:
        logger.info(
            "%s -> %s: source %d, dest %d -> %d, copied %d (%d bytes), skipped %d, failed %d%s",
            r.source_folder,
            r.dest_folder,
            r.source_count,
            r.dest_before,
            r.dest_after,
            r.copied,
            r.bytes,
            r.skipped,
            r.failed,
            f" (attempt {attempt})" if attempt > 1 else "",
        )
    return [r.to_dict() for r in reports]


def plan_mailbox(
    source_folders: list[dict[str, Any]],
    dest_folders: list[dict[str, Any]],
    options: SyncOptions,
) -> list[FolderPlan]:
    """Pure planning step between the two listings."""
    return imap_core.plan_folders(
        [FolderInfo.from_dict(f) for f in source_folders],
        [FolderInfo.from_dict(f) for f in dest_folders],
        options,
    )
