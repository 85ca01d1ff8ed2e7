"""Local development services: started natively on loopback by `headwater services up`.

Every service keeps its data, log and PID file under `settings.services_dir / <name>`. `up` is
idempotent (a healthy service is left alone, a stale PID file is replaced) and never raises for a
service that cannot start: the service comes back unhealthy with a one-line reason instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

import psutil

from headwater.errors import HeadwaterError
from headwater.settings import DEV_PORTS, Settings, get_settings

SERVICES: tuple[str, ...] = (
    "postgres",
    "mariadb",
    "minio",
    "mongo",
    "imap_source",
    "imap_dest",
    "docker",
    "prefect",
)

#: Services that must be healthy before a service starts. Prefect and FerretDB keep their state in
#: PostgreSQL: on SQLite a busy Prefect server stalls on "database is locked", and FerretDB's
#: SQLite back end died of SIGBUS in its WAL under concurrent use.
DEPENDS: dict[str, tuple[str, ...]] = {name: () for name in SERVICES} | {
    "mongo": ("postgres",),
    "prefect": ("postgres",),
}

#: Databases of the Prefect server and of FerretDB in the local PostgreSQL.
PREFECT_DATABASE = "prefect"
FERRETDB_DATABASE = "ferretdb"

#: Seconds `up` waits for a service to become healthy after starting it.
START_TIMEOUT: dict[str, float] = {
    "postgres": 120,
    "mariadb": 120,
    "minio": 60,
    "mongo": 60,
    "imap_source": 30,
    "imap_dest": 30,
    "docker": 60,  # the engine only; building the base image has its own (long) limit
    "prefect": 300,  # a fresh database runs all migrations: slow on a busy machine
}

#: Seconds a health probe may take (each `check` stays within about 3 s).
PROBE_TIMEOUT = 2.0

#: Test accounts of the local Dovecot pair.
IMAP_USERS: tuple[str, ...] = ("alice", "bob", "carol")

BOOTSTRAP_HINT = "run scripts/bootstrap.sh"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ServiceStatus:
    """Health of one local service."""

    name: str
    url: str
    healthy: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The status as a JSON-ready dict."""
        return asdict(self)


class ServiceError(HeadwaterError):
    """A service is unhealthy or cannot start; the message is one line a user can act on."""


# --- small helpers --------------------------------------------------------------------------


def _one_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(text).__name__


def _dir(settings: Settings, name: str) -> Path:
    path = settings.services_dir / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log_path(settings: Settings, name: str) -> Path:
    return _dir(settings, name) / f"{name}.log"


def _pid_path(settings: Settings, name: str) -> Path:
    return _dir(settings, name) / f"{name}.pid"


def _last_log_line(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require_port(host: str, port: int) -> None:
    if not _port_open(host, port):
        raise ServiceError(f"nothing listening on {host}:{port}")


def _is_local(host: str | None) -> bool:
    return (host or "127.0.0.1") in LOOPBACK


def _find_binary(name: str, settings: Settings) -> str | None:
    cached = settings.bin_dir / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.is_file()), None
    )


def _running_pid(pid_file: Path, *expect: str) -> int | None:
    """The PID in `pid_file` if that process is alive and its command line names one of `expect`."""
    try:
        pid = int(pid_file.read_text().strip())
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        if proc.status() != psutil.STATUS_ZOMBIE and any(word in cmdline for word in expect):
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    pid_file.unlink(missing_ok=True)  # stale: the process is gone or the PID was reused
    return None


def _spawn(
    settings: Settings,
    name: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached, output appended to the service log; records and returns its PID."""
    log = _log_path(settings, name)
    with log.open("ab") as out:
        out.write(f"\n--- headwater: starting {Path(argv[0]).name} at {time.ctime()}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or _dir(settings, name),
            env={**os.environ, **(env or {})},
            start_new_session=True,
            close_fds=True,
        )
    _pid_path(settings, name).write_text(f"{proc.pid}\n")
    return proc.pid


def _exited(settings: Settings, name: str) -> bool:
    """Whether the process `up` just spawned for `name` is gone already."""
    try:
        pid = int(_pid_path(settings, name).read_text().strip())
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (OSError, ValueError):
        return False
    except psutil.NoSuchProcess:
        return True


def _terminate(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM `pid` and let it shut its children down; SIGKILL whatever is left after `timeout`."""
    try:
        main = psutil.Process(pid)
        children = main.children(recursive=True)
        main.terminate()
    except psutil.Error:
        return
    _gone, alive = psutil.wait_procs([main], timeout=timeout)
    leftovers = [p for p in [*alive, *children] if p.is_running()]
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=5)


def _stop_pid_file(settings: Settings, name: str, *expect: str) -> None:
    pid_file = _pid_path(settings, name)
    pid = _running_pid(pid_file, *expect)
    if pid is not None:
        _terminate(pid)
    pid_file.unlink(missing_ok=True)


def _run(argv: list[str], log: Path, timeout: float, **kwargs: Any) -> None:
    """Run a setup command to completion, output to `log`; raise ServiceError when it fails."""
    with log.open("ab") as out:
        out.write(f"\n--- headwater: {' '.join(argv[:3])} ... at {time.ctime()}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **kwargs,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{Path(argv[0]).name} timed out after {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise ServiceError(
            f"{Path(argv[0]).name} failed (exit {result.returncode}): {_last_log_line(log)}"
        )


@contextlib.contextmanager
def _lock(settings: Settings) -> Iterator[None]:
    """Serialise `up` and `down` across processes (two test sessions starting services at once)."""
    settings.services_dir.mkdir(parents=True, exist_ok=True)
    with (settings.services_dir / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _as_root() -> bool:
    return os.geteuid() == 0


def _grant_traverse(path: Path) -> None:
    """Let other users (postgres) traverse the ancestors of `path`: adds o+x, never o+r."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        except OSError:
            continue


# --- postgres ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DbUrl:
    """The parts of a SQLAlchemy-style database URL (`dialect+driver://user:pw@host:port/db`)."""

    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None

    @classmethod
    def parse(cls, url: str) -> _DbUrl:
        parts: SplitResult = urlsplit(url)
        return cls(
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=parts.hostname,
            port=parts.port,
            database=unquote(parts.path.lstrip("/")) or None,
        )


def _pg_url(settings: Settings) -> _DbUrl:
    return _DbUrl.parse(settings.postgres_url.get_secret_value())


def _pg_bindir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _pg_user() -> str | None:
    """The OS user PostgreSQL runs as: `postgres` when we are root, else ourselves (None)."""
    return "postgres" if _as_root() else None


def _as_user(argv: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _check_postgres(settings: Settings) -> None:
    import psycopg

    url = _pg_url(settings)
    host, port = url.host or "127.0.0.1", url.port or 5432
    _require_port(host, port)
    with psycopg.connect(
        host=host,
        port=port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        connect_timeout=int(PROBE_TIMEOUT),
        # like the other probes: a server that accepts but never answers reads as down
        options=f"-c statement_timeout={int(PROBE_TIMEOUT * 1000)}",
    ) as conn:
        conn.execute("SELECT 1")


def _start_postgres(settings: Settings) -> None:
    import psycopg
    from psycopg import sql

    url = _pg_url(settings)
    port = url.port or DEV_PORTS["postgres"]
    bindir = _pg_bindir()
    if bindir is None:
        raise ServiceError(f"postgresql binaries missing: {BOOTSTRAP_HINT}")
    base = _dir(settings, "postgres")
    data, run, log = base / "data", base / "run", _log_path(settings, "postgres")
    user = _pg_user()
    run.mkdir(exist_ok=True)
    run.chmod(0o700)  # the socket in here admits the superuser without a password
    log.touch()
    if user:
        _grant_traverse(base)
        for path in (base, run, log):
            shutil.chown(path, user, user)

    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)  # a half-done initdb
        data.mkdir(mode=0o700)
        if user:
            shutil.chown(data, user, user)
        initdb = [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ]
        _run(_as_user(initdb, user), log, timeout=120, cwd=base)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'headwater.conf'\n")
    (data / "headwater.conf").write_text(
        "# written by headwater services up\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{run}'\n"
        "synchronous_commit = off\n"
    )
    if user:
        shutil.chown(data / "headwater.conf", user, user)

    pg_ctl = str(bindir / "pg_ctl")
    status = subprocess.run(
        _as_user([pg_ctl, "status", "-D", str(data)], user),
        capture_output=True,
        check=False,
        cwd=base,
    )
    if status.returncode != 0:  # 3: not running (a stale postmaster.pid is handled by postgres)
        _run(
            _as_user([pg_ctl, "start", "-D", str(data), "-l", str(log), "-w", "-t", "60"], user),
            log,
            timeout=90,
            cwd=base,
        )

    # the bootstrap superuser `postgres` may connect over the private socket only (trust)
    with psycopg.connect(
        host=str(run), port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        role, password, database = url.username or "headwater", url.password, url.database
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(role), sql.Literal(password)
            )
        )
        if (
            database
            and not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
        ):
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )


def _ensure_pg_database(settings: Settings, database: str) -> tuple[str, str]:
    """Create `database` in the PostgreSQL of `postgres_url` if missing.

    Returns:
        `user:password@host:port` (URL-quoted) and the database name, to build a driver's URL.
    """
    import psycopg
    from psycopg import sql

    url = _pg_url(settings)
    host, port = url.host or "127.0.0.1", url.port or DEV_PORTS["postgres"]
    with psycopg.connect(
        host=host,
        port=port,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    userinfo = quote(url.username or "", safe="") + ":" + quote(url.password or "", safe="")
    return f"{userinfo}@{host}:{port}", database


def _stop_postgres(settings: Settings) -> None:
    bindir = _pg_bindir()
    base = settings.services_dir / "postgres"
    data = base / "data"
    if bindir is None or not (data / "postmaster.pid").exists():
        return
    _run(
        _as_user([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"], _pg_user()),
        _log_path(settings, "postgres"),
        timeout=60,
        cwd=base,
    )


# --- mariadb ----------------------------------------------------------------------------------


def _maria_url(settings: Settings) -> _DbUrl:
    return _DbUrl.parse(settings.mariadb_url.get_secret_value())


def _check_mariadb(settings: Settings) -> None:
    import pymysql

    url = _maria_url(settings)
    host, port = url.host or "127.0.0.1", url.port or 3306
    _require_port(host, port)
    conn = pymysql.connect(
        host=host,
        port=port,
        user=url.username,
        password=url.password or "",
        database=url.database,
        connect_timeout=int(PROBE_TIMEOUT),
        read_timeout=int(PROBE_TIMEOUT),
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()


def _sql_str(value: str | None) -> str:
    return "'" + (value or "").replace("\\", "\\\\").replace("'", "''") + "'"


def _start_mariadb(settings: Settings) -> None:
    mariadbd = _find_binary("mariadbd", settings)
    install_db = _find_binary("mariadb-install-db", settings)
    if not mariadbd or not install_db:
        raise ServiceError(f"mariadb-server missing: {BOOTSTRAP_HINT}")
    url = _maria_url(settings)
    port = url.port or DEV_PORTS["mariadb"]
    base = _dir(settings, "mariadb")
    data, pid_file = base / "data", _pid_path(settings, "mariadb")
    log = _log_path(settings, "mariadb")
    if _running_pid(pid_file, "mariadbd") is not None:
        return  # started earlier and still coming up
    user_args = ["--user=root"] if _as_root() else []

    if not (data / "mysql" / "global_priv.frm").exists():  # absent: never (fully) installed
        shutil.rmtree(data, ignore_errors=True)
        _run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={data}",
                *user_args,
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            log,
            timeout=180,
            cwd=base,
        )

    # runs at every start, so the account always matches the settings
    user, password, database = url.username or "headwater", url.password, url.database
    init = base / "init.sql"
    lines = []
    for host in ("%", "localhost"):
        account = f"{_sql_str(user)}@{_sql_str(host)}"
        lines += [
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {_sql_str(password)};",
            f"ALTER USER {account} IDENTIFIED BY {_sql_str(password)};",
            f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;",
        ]
    if database:
        lines.append(f"CREATE DATABASE IF NOT EXISTS `{database.replace('`', '``')}`;")
    init.touch(mode=0o600)
    init.write_text("\n".join(lines) + "\n")

    _spawn(
        settings,
        "mariadb",
        [
            mariadbd,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={base / 'mysqld.sock'}",
            f"--pid-file={base / 'mariadbd.pid'}",
            f"--init-file={init}",
            *user_args,
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
        ],
    )


def _stop_mariadb(settings: Settings) -> None:
    _stop_pid_file(settings, "mariadb", "mariadbd")


# --- minio ------------------------------------------------------------------------------------


def _minio_port(settings: Settings) -> int:
    return urlsplit(settings.minio_endpoint).port or DEV_PORTS["minio"]


def _http_status(url: str) -> int:
    """HTTP status of a GET on a loopback URL (stdlib: a probe should not pay for big imports)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    conn = http.client.HTTPConnection(host, parts.port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().status
    finally:
        conn.close()


def _check_minio(settings: Settings) -> None:
    _require_port("127.0.0.1", _minio_port(settings))
    code = _http_status(f"{settings.minio_endpoint}/minio/health/live")
    if code != 200:
        raise ServiceError(f"/minio/health/live answered HTTP {code}")


def _s3_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.minio_endpoint,
        aws_access_key_id=settings.minio_root_user,
        aws_secret_access_key=settings.minio_root_password.get_secret_value(),
        region_name=settings.s3_region,
        config=Config(connect_timeout=PROBE_TIMEOUT, read_timeout=10, retries={"max_attempts": 2}),
    )


def _start_minio(settings: Settings) -> None:
    minio = _find_binary("minio", settings)
    if not minio:
        raise ServiceError(f"minio binary missing: {BOOTSTRAP_HINT}")
    if _running_pid(_pid_path(settings, "minio"), "minio") is not None:
        return
    base = _dir(settings, "minio")
    (base / "data").mkdir(exist_ok=True)
    _spawn(
        settings,
        "minio",
        [
            minio,
            "server",
            str(base / "data"),
            "--address",
            f"127.0.0.1:{_minio_port(settings)}",
            "--console-address",
            f"127.0.0.1:{DEV_PORTS['minio_console']}",
            "--quiet",
        ],
        # secrets go through the environment, never argv
        env={
            "MINIO_ROOT_USER": settings.minio_root_user,
            "MINIO_ROOT_PASSWORD": settings.minio_root_password.get_secret_value(),
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER_REDIRECT": "off",
        },
    )


def _after_minio(settings: Settings) -> None:
    from botocore.exceptions import ClientError

    s3 = _s3_client(settings)
    try:
        s3.head_bucket(Bucket=settings.s3_bucket)
    except ClientError:
        s3.create_bucket(Bucket=settings.s3_bucket)


def _stop_minio(settings: Settings) -> None:
    _stop_pid_file(settings, "minio", "minio")


# --- mongo (mongod, else FerretDB on PostgreSQL) -------------------------------------------------


def _mongo_url(settings: Settings) -> str:
    return settings.mongo_url.get_secret_value()


def _check_mongo(settings: Settings) -> None:
    import pymongo

    parts = urlsplit(_mongo_url(settings))
    _require_port(parts.hostname or "127.0.0.1", parts.port or 27017)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        _mongo_url(settings),
        serverSelectionTimeoutMS=int(PROBE_TIMEOUT * 1000),
        connectTimeoutMS=int(PROBE_TIMEOUT * 1000),
        # a server that accepts connections but never answers (seen: FerretDB with its
        # PostgreSQL pool exhausted) must read as down, not hang the probe
        socketTimeoutMS=int(PROBE_TIMEOUT * 1000),
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


def _start_mongo(settings: Settings) -> None:
    parts = urlsplit(_mongo_url(settings))
    port = parts.port or DEV_PORTS["mongo"]
    base = _dir(settings, "mongo")
    pid_file = _pid_path(settings, "mongo")
    if _running_pid(pid_file, "mongod", "ferretdb") is not None:
        return
    mongod = shutil.which("mongod")
    env: dict[str, str] = {}
    if mongod:
        (base / "db").mkdir(exist_ok=True)
        argv = [
            mongod,
            "--dbpath",
            str(base / "db"),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
        ]
    else:
        ferretdb = _find_binary("ferretdb", settings)
        if not ferretdb:
            raise ServiceError(f"neither mongod nor the ferretdb binary found: {BOOTSTRAP_HINT}")
        (base / "state").mkdir(exist_ok=True)
        # the URL holds a password: through the environment, never argv
        env["FERRETDB_POSTGRESQL_URL"] = "postgres://{}/{}".format(
            *_ensure_pg_database(settings, FERRETDB_DATABASE)
        )
        argv = [
            ferretdb,
            "--handler=postgresql",
            f"--listen-addr=127.0.0.1:{port}",
            f"--state-dir={base / 'state'}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=error",
        ]
    _spawn(settings, "mongo", argv, env=env)


def _stop_mongo(settings: Settings) -> None:
    _stop_pid_file(settings, "mongo", "mongod", "ferretdb")


# --- imap_source / imap_dest (Dovecot) ------------------------------------------------------------


def _imap_port(settings: Settings, name: str) -> int:
    return settings.imap_source_port if name == "imap_source" else settings.imap_dest_port


def _imap_url(settings: Settings, name: str) -> str:
    return f"imap://{settings.imap_host}:{_imap_port(settings, name)}"


def _check_imap(settings: Settings, name: str) -> None:
    port = _imap_port(settings, name)
    _require_port(settings.imap_host, port)
    with imaplib.IMAP4(settings.imap_host, port, timeout=PROBE_TIMEOUT) as imap:
        imap.login(IMAP_USERS[0], settings.imap_test_password.get_secret_value())
        kind, detail = imap.select("INBOX", readonly=True)  # proves the mail storage works
        if kind != "OK":
            raise ServiceError(f"SELECT INBOX failed: {detail!r}")
        imap.logout()


def _mail_owner() -> pwd.struct_passwd:
    """The OS user owning the mail: Dovecot refuses uid 0, so root stores it as `mail`."""
    if _as_root():
        for candidate in ("mail", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(candidate)
    return pwd.getpwuid(os.getuid())


def _dovecot_config(settings: Settings, name: str) -> str:
    base = _dir(settings, name)
    me = pwd.getpwuid(os.getuid())
    owner = _mail_owner()
    # as root Dovecot drops to its own users; otherwise everything runs as us
    internal_user = "dovecot" if _as_root() else me.pw_name
    login_user = "dovenull" if _as_root() else me.pw_name
    mailboxes = "".join(
        f"  mailbox {box} {{\n    special_use = \\{box}\n    auto = subscribe\n  }}\n"
        for box in ("Sent", "Drafts", "Trash", "Junk")
    )
    return f"""# written by headwater services up: a private Dovecot for {name}
base_dir = {base}/run
state_dir = {base}/state
instance_name = headwater-{name}
protocols = imap
listen = {settings.imap_host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {base}/{name}.log
info_log_path = {base}/{name}.log
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = {owner.pw_uid}
last_valid_uid = 0
first_valid_gid = {owner.pw_gid}
mail_uid = {owner.pw_uid}
mail_gid = {owner.pw_gid}
mail_location = maildir:{base}/mail/%n/Maildir
mailbox_list_index = yes
mail_privileged_group =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {base}/users
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={base}/mail/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
service imap-login {{
  inet_listener imap {{
    address = {settings.imap_host}
    port = {_imap_port(settings, name)}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service auth {{
  user = {"root" if _as_root() else me.pw_name}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0660
  }}
}}
"""


def _start_imap(settings: Settings, name: str) -> None:
    dovecot = _find_binary("dovecot", settings)
    if not dovecot:
        raise ServiceError(f"dovecot-imapd missing: {BOOTSTRAP_HINT}")
    if _running_pid(_pid_path(settings, name), "dovecot") is not None:
        return
    base = _dir(settings, name)
    for sub in ("run", "state", "mail"):
        (base / sub).mkdir(exist_ok=True)
    owner = _mail_owner()
    if owner.pw_uid != os.getuid():
        _grant_traverse(base)
        os.chown(base / "mail", owner.pw_uid, owner.pw_gid)  # Dovecot creates the rest
    password = settings.imap_test_password.get_secret_value()
    users = base / "users"
    users.touch(mode=0o600)
    users.write_text("".join(f"{u}:{{PLAIN}}{password}::::::\n" for u in IMAP_USERS))
    conf = base / "dovecot.conf"
    conf.write_text(_dovecot_config(settings, name))
    # our PID file says no Dovecot of ours runs, so a leftover master.pid is stale (and its PID
    # may belong to an unrelated process by now, which would make Dovecot refuse to start)
    (base / "run" / "master.pid").unlink(missing_ok=True)
    _spawn(settings, name, [dovecot, "-F", "-c", str(conf)])


def _stop_imap(settings: Settings, name: str) -> None:
    _stop_pid_file(settings, name, "dovecot")


# --- docker -------------------------------------------------------------------------------------


def _docker_url(settings: Settings) -> str:
    return settings.docker_host or "unix:///var/run/docker.sock"


def _docker_client(settings: Settings, timeout: float = PROBE_TIMEOUT) -> Any:
    import docker

    return docker.DockerClient(base_url=_docker_url(settings), timeout=timeout)


def _check_docker(settings: Settings) -> None:
    import docker.errors

    url = _docker_url(settings)
    if url.startswith("unix://") and not Path(url.removeprefix("unix://")).exists():
        raise ServiceError(f"no Docker Engine socket at {url}")
    client = _docker_client(settings)
    try:
        client.ping()
        try:
            client.images.get(settings.base_image)
        except docker.errors.ImageNotFound as exc:
            raise ServiceError(
                f"engine up but base image {settings.base_image} missing: "
                "run `headwater services up docker`"
            ) from exc
    finally:
        client.close()


def _docker_engine_up(settings: Settings) -> bool:
    try:
        client = _docker_client(settings)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach the engine means "not up"
        return False


def _start_docker(settings: Settings) -> None:
    if _docker_engine_up(settings):
        return
    url = _docker_url(settings)
    if not url.startswith("unix://"):
        raise ServiceError(f"no Docker Engine answers at {url}")
    if _running_pid(_pid_path(settings, "docker"), "dockerd") is None:
        dockerd = _find_binary("dockerd", settings)
        if not dockerd:
            raise ServiceError(f"dockerd missing (docker.io): {BOOTSTRAP_HINT}")
        if not _as_root():
            raise ServiceError(f"no Docker Engine at {url}, and only root can start dockerd")
        base = _dir(settings, "docker")
        (base / "dockerd.pid").unlink(missing_ok=True)  # ours is not running: stale
        _spawn(
            settings,
            "docker",
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--host",
                url,
                "--data-root",
                "/var/lib/docker",
                "--pidfile",
                str(base / "dockerd.pid"),
            ],
        )
    deadline = time.monotonic() + START_TIMEOUT["docker"]
    while not _docker_engine_up(settings):
        if time.monotonic() > deadline:
            log = _log_path(settings, "docker")
            raise ServiceError(f"dockerd did not answer: {_last_log_line(log)} (see {log})")
        time.sleep(0.5)


def _after_docker(settings: Settings) -> None:
    ensure_base_image(settings)


def _stop_docker(settings: Settings) -> None:
    # only an engine we started ourselves is stopped
    _stop_pid_file(settings, "docker", "dockerd")


def _apt_sources() -> list[tuple[str, str]]:
    """(uri, suite) pairs of the Debian archives this machine's apt uses."""
    pairs: list[tuple[str, str]] = []
    apt = Path("/etc/apt")
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    words = [w for w in words if not w.startswith("[")]
                    if len(words) >= 3:
                        pairs.append((words[1], words[2]))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                pairs += [
                    (uri, suite)
                    for uri in fields.get("uris", "").split()
                    for suite in fields.get("suites", "").split()
                ]
    return [(uri.rstrip("/"), suite) for uri, suite in pairs if "debian" in uri]


def ensure_base_image(settings: Settings | None = None, suite: str = "bookworm") -> str:
    """Make sure the local Debian base image exists, building it without any registry.

    The root file system comes from `debootstrap --variant=minbase` against the Debian mirror
    this machine's apt uses; its tarball is cached under `cache_dir/rootfs` so that a rebuild of
    the image (after `docker system prune`, say) is a quick `docker import`.

    Args:
        settings: Headwater settings; default `get_settings()`.
        suite: Debian suite of the root file system.

    Returns:
        The image reference, `settings.base_image`.
    """
    import docker.errors

    settings = settings or get_settings()
    client = _docker_client(settings, timeout=600)
    try:
        try:
            client.images.get(settings.base_image)
            return settings.base_image
        except docker.errors.ImageNotFound:
            pass
        tarball = _build_rootfs(settings, suite)
        repository, _, tag = settings.base_image.rpartition(":")
        client.api.import_image_from_file(
            str(tarball),
            repository=repository,
            tag=tag,
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["bash"]',
            ],
        )
        client.images.get(settings.base_image)
        return settings.base_image
    finally:
        client.close()


def _build_rootfs(settings: Settings, suite: str) -> Path:
    cache = settings.cache_dir / "rootfs"
    tarball = cache / f"debian-{suite}-minbase.tar"
    if tarball.is_file():
        return tarball
    debootstrap = _find_binary("debootstrap", settings)
    if not debootstrap:
        raise ServiceError(f"debootstrap missing: {BOOTSTRAP_HINT}")
    if not _as_root():
        raise ServiceError("building the base image with debootstrap needs root")
    sources = _apt_sources()
    mirror = next(
        (uri for uri, s in sources if s == suite and "security" not in uri),
        "http://deb.debian.org/debian",
    )
    cache.mkdir(parents=True, exist_ok=True)
    log = _dir(settings, "docker") / "debootstrap.log"
    with tempfile.TemporaryDirectory(dir=cache, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        _run([debootstrap, "--variant=minbase", suite, str(root), mirror], log, timeout=1800)
        lines = [
            f"deb {uri} {s} main"
            for uri, s in dict.fromkeys(sources)
            if s in (suite, f"{suite}-updates", f"{suite}-security")
        ] or [f"deb {mirror} {suite} main"]
        (root / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        partial = cache / f"{tarball.name}.part"
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], log, 600)
        partial.replace(tarball)
    return tarball


# --- prefect ------------------------------------------------------------------------------------


def _prefect_api(settings: Settings) -> str:
    return f"http://127.0.0.1:{DEV_PORTS['prefect']}/api"


def _check_prefect(settings: Settings) -> None:
    _require_port("127.0.0.1", DEV_PORTS["prefect"])
    code = _http_status(f"{_prefect_api(settings)}/health")
    if code != 200:
        raise ServiceError(f"/api/health answered HTTP {code}")


def _start_prefect(settings: Settings) -> None:
    if _running_pid(_pid_path(settings, "prefect"), "prefect") is not None:
        return
    base = _dir(settings, "prefect")
    home = base / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PREFECT_HOME": str(home),
        # through the environment: the URL holds a password and must not show in argv
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://{}/{}".format(
            *_ensure_pg_database(settings, PREFECT_DATABASE)
        ),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_API_URL": _prefect_api(settings),
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(DEV_PORTS["prefect"]),
        # the server must not talk to another API
        "PREFECT_API_URL": "",
    }
    _spawn(
        settings,
        "prefect",
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(DEV_PORTS["prefect"]),
        ],
        env=env,
    )


def _stop_prefect(settings: Settings) -> None:
    _stop_pid_file(settings, "prefect", "prefect")


# --- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Service:
    url: Callable[[Settings], str]
    check: Callable[[Settings], None]
    start: Callable[[Settings], None]
    stop: Callable[[Settings], None]
    after: Callable[[Settings], None] | None = None
    local: Callable[[Settings], bool] = lambda _s: True


def _hide_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


_REGISTRY: dict[str, _Service] = {
    "postgres": _Service(
        url=lambda s: _hide_userinfo(s.postgres_url.get_secret_value()),
        check=_check_postgres,
        start=_start_postgres,
        stop=_stop_postgres,
        local=lambda s: _is_local(_pg_url(s).host),
    ),
    "mariadb": _Service(
        url=lambda s: _hide_userinfo(s.mariadb_url.get_secret_value()),
        check=_check_mariadb,
        start=_start_mariadb,
        stop=_stop_mariadb,
        local=lambda s: _is_local(_maria_url(s).host),
    ),
    "minio": _Service(
        url=lambda s: s.minio_endpoint,
        check=_check_minio,
        start=_start_minio,
        stop=_stop_minio,
        after=_after_minio,
    ),
    "mongo": _Service(
        url=lambda s: _hide_userinfo(_mongo_url(s)),
        check=_check_mongo,
        start=_start_mongo,
        stop=_stop_mongo,
        local=lambda s: _is_local(urlsplit(_mongo_url(s)).hostname),
    ),
    **{
        name: _Service(
            url=partial(_imap_url, name=name),
            check=partial(_check_imap, name=name),
            start=partial(_start_imap, name=name),
            stop=partial(_stop_imap, name=name),
            local=lambda s: _is_local(s.imap_host),
        )
        for name in ("imap_source", "imap_dest")
    },
    "docker": _Service(
        url=_docker_url,
        check=_check_docker,
        start=_start_docker,
        stop=_stop_docker,
        after=_after_docker,
    ),
    "prefect": _Service(
        url=_prefect_api,
        check=_check_prefect,
        start=_start_prefect,
        stop=_stop_prefect,
    ),
}


def _spec(name: str) -> _Service:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown service {name!r}; choose from: {', '.join(SERVICES)}") from None


def _names(names: list[str] | None) -> list[str]:
    wanted = list(dict.fromkeys(names or SERVICES))
    for name in wanted:
        _spec(name)
    return [name for name in SERVICES if name in wanted]


# --- public API ---------------------------------------------------------------------------------


def check(name: str, settings: Settings | None = None) -> ServiceStatus:
    """Probe one service's health without starting anything (returns within about 3 s).

    Args:
        name: One of `SERVICES`.
        settings: Headwater settings; default `get_settings()`.

    Returns:
        The service's status; `reason` says what is wrong when it is unhealthy.
    """
    settings = settings or get_settings()
    spec = _spec(name)
    try:
        url = spec.url(settings)
    except Exception as exc:  # a malformed URL setting is reported, not raised
        return ServiceStatus(name, "", False, f"bad address setting: {_one_line(exc)}")
    try:
        spec.check(settings)
    except ServiceError as exc:
        return ServiceStatus(name, url, False, _one_line(exc))
    except Exception as exc:  # every probe failure becomes a reason, never a traceback
        return ServiceStatus(name, url, False, f"{type(exc).__name__}: {_one_line(exc)}")
    return ServiceStatus(name, url, True)


def status(settings: Settings | None = None) -> list[ServiceStatus]:
    """Probe every service (in parallel) and return their statuses in `SERVICES` order."""
    settings = settings or get_settings()
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        return list(pool.map(lambda n: check(n, settings), SERVICES))


def _wait_healthy(name: str, settings: Settings, deadline: float) -> ServiceStatus:
    """Probe `name` until it is healthy, its process has exited, or `deadline` has passed."""
    while not (current := check(name, settings)).healthy:
        if name == "docker" and current.reason.startswith("engine up but base image"):
            return current  # the engine is up; `after` builds the image
        exited = _exited(settings, name)
        if exited or time.monotonic() > deadline:
            log = _log_path(settings, name)
            last = _last_log_line(log)
            what = "exited" if exited else f"not healthy after {START_TIMEOUT[name]:.0f}s"
            raise ServiceError(
                f"{what}: {current.reason}"
                + (f"; last log line: {last}" if last else "")
                + f" (see {log})"
            )
        time.sleep(0.5)
    return current


def _up_one(name: str, settings: Settings) -> ServiceStatus:
    spec = _spec(name)
    current = check(name, settings)
    if current.healthy:
        return current
    if not spec.local(settings):
        current.reason = f"configured address is not local, nothing to start ({current.reason})"
        return current
    try:
        hung = _pid_path(settings, name).is_file() and not _exited(settings, name)
        if hung:
            # our process runs but does not answer (seen: FerretDB with its PostgreSQL pool
            # exhausted): give it its start timeout to recover, then restart it once
            try:
                current = _wait_healthy(name, settings, time.monotonic() + START_TIMEOUT[name])
            except ServiceError:
                spec.stop(settings)
        spec.start(settings)
        deadline = time.monotonic() + START_TIMEOUT[name]
        current = _wait_healthy(name, settings, deadline)
        if spec.after:
            spec.after(settings)
            current = _wait_healthy(name, settings, deadline + START_TIMEOUT[name])
    except ServiceError as exc:
        return ServiceStatus(name, current.url, False, _one_line(exc))
    except Exception as exc:  # a failing service is reported with its reason, never raised
        return ServiceStatus(name, current.url, False, f"{type(exc).__name__}: {_one_line(exc)}")
    return current


def up(names: list[str] | None = None, settings: Settings | None = None) -> list[ServiceStatus]:
    """Start the named services (default: all) and wait until they are healthy.

    Idempotent: a healthy service is left alone. Services without unmet dependencies start in
    parallel; a service whose dependency is unhealthy is not started.

    Args:
        names: Services to start, from `SERVICES`; default all.
        settings: Headwater settings; default `get_settings()`.

    Returns:
        The status of every named service, in `SERVICES` order.
    """
    settings = settings or get_settings()
    wanted = _names(names)
    todo = [*wanted]
    for name in wanted:  # pull in dependencies
        todo += [dep for dep in DEPENDS[name] if dep not in todo]
    todo = [name for name in SERVICES if name in todo]
    done: dict[str, ServiceStatus] = {}
    with _lock(settings), ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        while len(done) < len(todo):
            ready = [n for n in todo if n not in done and all(d in done for d in DEPENDS[n])]
            blocked = {n for n in ready if any(not done[d].healthy for d in DEPENDS[n])}
            for name in blocked:
                bad = [d for d in DEPENDS[name] if not done[d].healthy]
                done[name] = ServiceStatus(
                    name, check(name, settings).url, False, f"needs {', '.join(bad)}"
                )
            wave = [n for n in ready if n not in blocked]
            for name, result in zip(
                wave, pool.map(lambda n: _up_one(n, settings), wave), strict=True
            ):
                done[name] = result
    return [done[name] for name in wanted]


def down(names: list[str] | None = None, settings: Settings | None = None) -> None:
    """Stop the named services (default: all) that `up` started; data is kept.

    Args:
        names: Services to stop, from `SERVICES`; default all.
        settings: Headwater settings; default `get_settings()`.
    """
    settings = settings or get_settings()
    with _lock(settings):
        for name in reversed(_names(names)):
            if (settings.services_dir / name).is_dir():
                _spec(name).stop(settings)
