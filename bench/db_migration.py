"""Benchmark db-migration: Headwater vs a naive pandas copy (and mongoimport when installed).

    uv run python bench/db_migration.py [--quick] [--rows N] [--sources sqlite,postgres]

Builds a scaled Chinook-like dataset (invoice lines and tracks with new keys) in SQLite and in
the local PostgreSQL, copies it into the local MongoDB-wire server, and writes
bench/results/db_migration.json. Timings are measured, never asserted. Flows report to the
local Prefect server when `headwater services up` runs one (else Prefect's ephemeral API, which
then runs inside this process). mongoimport is looked up on PATH and in
$HEADWATER_CACHE_DIR/bin (~/.cache/headwater/bin, where scripts/bootstrap.sh builds it).
Headwater's `seconds` is the whole flow run; `copy_seconds` runs from the first prepare to the
last batch written, `verify_seconds` is the verification still running after that: with the
sample smaller than a table, the server's exact count (which FerretDB v1 computes by decoding
every document) and the first `batch_size` stored documents checked against their source rows.
`server_ceiling` is what the target sustains on its own: Headwater's documents prebuilt in
memory and inserted by 1 and 4 clients, and one full scan, next to 3x the naive baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from headwater import services  # noqa: E402
from headwater.settings import get_settings  # noqa: E402

TABLES = ("invoice_line", "track")


class PeakRss:
    """Sample this process's RSS in a thread; `peak` is the maximum since `reset`."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss

    def stop(self) -> None:
        self._stop.set()


DDL = [
    "CREATE TABLE invoice_line (invoice_line_id BIGINT PRIMARY KEY, invoice_id INTEGER NOT NULL, "
    "track_id INTEGER NOT NULL, unit_price NUMERIC(10,2) NOT NULL, quantity INTEGER NOT NULL, "
    "sold_at TIMESTAMP NOT NULL)",
    "CREATE TABLE track (track_id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, "
    "album_id INTEGER, genre_id INTEGER, composer VARCHAR(220), milliseconds INTEGER NOT NULL, "
    "bytes INTEGER, unit_price NUMERIC(10,2) NOT NULL)",
]


def build_sqlite(path: Path, lines: int, tracks: int) -> str:
    """Scaled Chinook in SQLite: InvoiceLine and Track repeated with new keys."""
    chinook = get_settings().shared_data_dir / "sql" / "chinook.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    line_copies, track_copies = lines // 2240, tracks // 3503
    with engine.begin() as conn:
        for ddl in DDL:
            conn.execute(sa.text(ddl))
        conn.execute(sa.text(f"ATTACH DATABASE '{chinook}' AS src"))
        conn.execute(sa.text(f"""
            INSERT INTO invoice_line
            WITH RECURSIVE k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n < {line_copies})
            SELECT n * 10000 + l.InvoiceLineId, n * 1000 + l.InvoiceId, l.TrackId, l.UnitPrice,
                   l.Quantity, datetime(i.InvoiceDate, '+' || n || ' minutes')
            FROM k, src.InvoiceLine l JOIN src.Invoice i ON i.InvoiceId = l.InvoiceId
            ORDER BY 1 LIMIT {lines}"""))  # fmt: skip
        conn.execute(sa.text(f"""
            INSERT INTO track
            WITH RECURSIVE k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n < {track_copies})
            SELECT n * 10000 + t.TrackId, t.Name, t.AlbumId, t.GenreId, t.Composer,
                   t.Milliseconds, t.Bytes, t.UnitPrice
            FROM k, src.Track t ORDER BY 1 LIMIT {tracks}"""))  # fmt: skip
    engine.dispose()
    return f"sqlite:///{path}"


def build_postgres(sqlite_url: str, database: str) -> str:
    """The same rows in a dedicated PostgreSQL database (COPY from the SQLite build)."""
    base = get_settings().postgres_url.get_secret_value()
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    admin.dispose()
    url = sa.engine.make_url(base).set(database=database)
    pg = sa.create_engine(url)
    src = sa.create_engine(sqlite_url)
    with pg.begin() as conn:
        for ddl in DDL:
            conn.execute(sa.text(ddl))
    raw = pg.raw_connection()
    try:
        cur = raw.cursor()
        for table in TABLES:
            with src.connect() as s, cur.copy(f"COPY {table} FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in s.execution_options(yield_per=20000).execute(
                    sa.text(f"SELECT * FROM {table}")
                ):
                    copy.write_row(tuple(row))
        raw.commit()
    finally:
        raw.close()
    pg.dispose()
    src.dispose()
    return url.render_as_string(hide_password=False)


def mongo_url(database: str) -> str:
    base = get_settings().mongo_url.get_secret_value().rsplit("/", 1)[0]
    return f"{base}/{database}"


def empty_database(database: str) -> None:
    """Drop the collections (never the database: that has crashed FerretDB's SQLite handler)."""
    from tasks.mongo import client_for_url

    client = client_for_url(mongo_url(database))
    for name in client[database].list_collection_names():
        client[database].drop_collection(name)
    client.close()


def run_headwater(source_url: str, database: str, batch_size: int) -> dict[str, Any]:
    from pydantic import SecretStr

    from blocks.mongo import MongoConnection
    from blocks.registry import sql_connector_from_url
    from flows.db_migration import DbMigrationParams, db_migration
    from tasks.mongo import close_clients
    from tasks.sql import dispose_engines

    empty_database(database)
    sql_connector_from_url(source_url).save("bench-dbmig-source", overwrite=True)
    MongoConnection(url=SecretStr(mongo_url(database))).save("bench-dbmig-target", overwrite=True)
    start = time.perf_counter()
    summary = db_migration(
        DbMigrationParams(
            source_block="bench-dbmig-source",
            target_block="bench-dbmig-target",
            batch_size=batch_size,
            verify_sample=batch_size,
        )
    )
    seconds = time.perf_counter() - start
    dispose_engines()
    close_clients()
    return {
        "seconds": seconds,
        "rows": summary["rows_copied"],
        "verified": summary["verified"],
        "copy_seconds": summary["copy_seconds"],
        "verify_seconds": summary["verify_seconds"],
        "copy_rows_per_s": round(summary["rows_copied"] / max(summary["copy_seconds"], 1e-9), 1),
    }


def run_naive(source_url: str, database: str) -> dict[str, Any]:
    """pandas read_sql of the whole table + insert_many: what a quick script does."""
    import pandas as pd

    from tasks.mongo import client_for_url

    empty_database(database)
    engine = sa.create_engine(source_url)
    client = client_for_url(mongo_url(database))
    start = time.perf_counter()
    rows = 0
    for table in TABLES:
        df = pd.read_sql(f"SELECT * FROM {table}", engine)
        records = df.to_dict("records")
        for rec in records:  # pymongo cannot encode numpy scalars or Decimal
            for k, v in rec.items():
                if hasattr(v, "item"):
                    rec[k] = v.item()
                elif v is not None and type(v).__name__ == "Decimal":
                    rec[k] = float(v)
        client[database][table].insert_many(records)
        rows += len(records)
        del df, records
    seconds = time.perf_counter() - start
    client.close()
    engine.dispose()
    return {"seconds": seconds, "rows": rows}


def find_mongoimport() -> str | None:
    """mongoimport on PATH, else the one scripts/bootstrap.sh builds into the cache."""
    cache = Path(os.environ.get("HEADWATER_CACHE_DIR") or Path.home() / ".cache" / "headwater")
    return shutil.which("mongoimport") or shutil.which("mongoimport", path=str(cache / "bin"))


def run_mongoimport(source_url: str, database: str, workdir: Path) -> dict[str, Any] | None:
    """mongoimport of the same rows pre-exported as JSON lines (only when it is installed)."""
    binary = find_mongoimport()
    if not binary:
        return None
    empty_database(database)
    engine = sa.create_engine(source_url)
    files = []
    for table in TABLES:
        path = workdir / f"{table}.json"
        with engine.connect() as conn, path.open("w") as out:
            for row in conn.execution_options(yield_per=20000).execute(
                sa.text(f"SELECT * FROM {table}")
            ):
                out.write(json.dumps(dict(row._mapping), default=str) + "\n")
        files.append((table, path))
    engine.dispose()
    start = time.perf_counter()
    rows = 0
    for table, path in files:
        proc = subprocess.run(
            [binary, f"--uri={mongo_url(database)}", f"--collection={table}", f"--file={path}",
             "--numInsertionWorkers=4"],
            capture_output=True, text=True,
        )  # fmt: skip
        done = re.search(r"(\d+) document\(s\) imported successfully", proc.stderr)
        if proc.returncode != 0 or done is None:
            return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        rows += int(done.group(1))
    return {"seconds": time.perf_counter() - start, "rows": rows}


def measure_server_ceiling(source_url: str, database: str, rows: int) -> dict[str, Any]:
    """What the target itself sustains, without any source reading or conversion.

    Headwater's own documents for the first `rows` invoice lines are built in memory first, then
    inserted into an empty collection by 1 and by 4 client threads (unordered bulks of
    WRITE_CHUNK), and read back by one full scan (the floor of any verification that reads the
    documents). On a small, fresh collection these are upper bounds for the full-size runs.
    """
    from tasks.migration_plan import build_plan
    from tasks.mongo import WRITE_CHUNK, client_for_url
    from tasks.sql import read_batch_documents, reflect_engine

    engine = sa.create_engine(source_url)
    with engine.connect() as conn:
        upper = conn.execute(
            sa.text("SELECT invoice_line_id FROM invoice_line ORDER BY 1 LIMIT 1 OFFSET :n"),
            {"n": rows - 1},
        ).scalar_one()
    plan = build_plan(reflect_engine(engine, ["invoice_line"]))
    plan.decimal_mode = "string"  # what FerretDB gets
    docs = read_batch_documents(engine, plan, plan.collection("invoice_line"), None, [upper]).docs
    engine.dispose()
    out: dict[str, Any] = {"documents": len(docs)}
    client = client_for_url(mongo_url(database))
    coll = client[database]["ceiling"]
    for threads in (1, 4):
        empty_database(database)
        parts = [docs[i::threads] for i in range(threads)]

        def insert(part: list[dict[str, Any]]) -> None:
            for i in range(0, len(part), WRITE_CHUNK):
                coll.insert_many(part[i : i + WRITE_CHUNK], ordered=False)

        start = time.perf_counter()
        workers = [threading.Thread(target=insert, args=(p,)) for p in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - start
        out[f"insert_{threads}_clients_docs_per_s"] = round(len(docs) / seconds)
    start = time.perf_counter()
    scanned = sum(1 for _ in coll.find({}, batch_size=5000))
    out["scan_docs_per_s"] = round(scanned / (time.perf_counter() - start))
    client.close()
    empty_database(database)
    return out


def main() -> None:
    """Build the dataset, run the contenders, print and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="~100k rows (under 2 minutes)")
    parser.add_argument("--rows", type=int, default=None, help="total rows (default 1,000,000)")
    parser.add_argument("--sources", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    total = args.rows or (100_000 if args.quick else 1_000_000)
    batch_size = args.batch_size or (5000 if args.quick else 10000)
    lines, tracks = total * 4 // 5, total - total * 4 // 5
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if not os.environ.get("PREFECT_API_URL"):  # before Prefect is imported (it reads it once)
        prefect = services.check("prefect")
        if prefect.healthy:
            os.environ["PREFECT_API_URL"] = prefect.url
    rss = PeakRss()
    workdir = Path(tempfile.mkdtemp(prefix="hw-bench-dbmig-"))
    result: dict[str, Any] = {
        "rows": total,
        "batch_size": batch_size,
        "prefect_api": os.environ.get("PREFECT_API_URL") or "ephemeral",
        "mongoimport": find_mongoimport(),
        "mongo": f"{urlsplit(mongo_url('')).hostname}:{urlsplit(mongo_url('')).port}",
        "cpus": os.cpu_count(),
        "sources": {},
    }
    try:
        sqlite_url = build_sqlite(workdir / "scaled.sqlite", lines, tracks)
        urls = {"sqlite": sqlite_url}
        if "postgres" in args.sources:
            urls["postgres"] = build_postgres(sqlite_url, "dbmig_bench")
        for name in args.sources.split(","):
            url = urls[name]
            rss.reset()
            hw = run_headwater(url, "dbmig_bench_hw", batch_size)
            hw["peak_rss_mb"] = round(rss.peak / 2**20, 1)
            print(json.dumps({name: {"headwater": hw}}), flush=True)
            rss.reset()
            naive = run_naive(url, "dbmig_bench_naive")
            naive["peak_rss_mb"] = round(rss.peak / 2**20, 1)
            mi = run_mongoimport(url, "dbmig_bench_mongoimport", workdir)
            ok = [c for c in (hw, naive, mi) if c and "error" not in c]
            for contender in ok:
                contender["rows_per_s"] = round(contender["rows"] / contender["seconds"], 1)
                contender["seconds"] = round(contender["seconds"], 2)
            entry: dict[str, Any] = {"headwater": hw, "naive": naive,
                                     "mongoimport": mi or "not installed"}  # fmt: skip
            entry["speedup_vs_naive"] = round(hw["rows_per_s"] / naive["rows_per_s"], 2)
            if mi and "error" not in mi:
                entry["ratio_vs_mongoimport"] = round(hw["rows_per_s"] / mi["rows_per_s"], 2)
            result["sources"][name] = entry
            print(json.dumps({name: entry}), flush=True)
        ceiling = measure_server_ceiling(sqlite_url, "dbmig_bench_ceiling", min(200_000, lines))
        ceiling["three_times_naive_rows_per_s"] = {
            name: round(3 * e["naive"]["rows_per_s"]) for name, e in result["sources"].items()
        }
        result["server_ceiling"] = ceiling
        print(json.dumps({"server_ceiling": ceiling}), flush=True)
    finally:
        rss.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for db in ("dbmig_bench_hw", "dbmig_bench_naive", "dbmig_bench_mongoimport",
                   "dbmig_bench_ceiling"):  # fmt: skip
            empty_database(db)
    out = ROOT / "bench" / "results" / "db_migration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
