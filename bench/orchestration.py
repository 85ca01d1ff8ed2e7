"""Orchestration latency and overhead against the real Prefect server.

1. Trigger latency of a trivial deployment (smoke, process pool, worker poll 1 s): REST
   `create_flow_run` -> RUNNING and -> COMPLETED, from the server's state timestamps.
   Baseline: the same flow called in-process (no worker, no subprocess).
2. Orchestration overhead of each capability run triggered over REST: flow-run wall time minus
   the time spent inside its task runs (from the API's task runs).

Usage: uv run python bench/orchestration.py [--quick]   (needs `headwater services up`)
Writes bench/results/orchestration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
API = os.environ.get("PREFECT_API_URL") or "http://127.0.0.1:4200/api"
os.environ["PREFECT_API_URL"] = API
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

from headwater.commands.orchestration import (  # noqa: E402
    api_client,
    create_flow_run,
    request,
    resolve_deployment,
    wait_for_run,
)

SHARED = ROOT.parent / "shared" / "data"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def state_times(client: Any, run_id: str) -> dict[str, datetime]:
    """First timestamp of each state type of a flow run."""
    states = request(client, "GET", "flow_run_states/", params={"flow_run_id": run_id}).json()
    out: dict[str, datetime] = {}
    for st in sorted(states, key=lambda s: s["timestamp"]):
        out.setdefault(st["type"], _ts(st["timestamp"]))
    return out


def task_seconds(client: Any, run_id: str) -> tuple[float, int]:
    """Seconds in which at least one task run of the flow run was running, and their count."""
    tasks = request(
        client,
        "POST",
        "task_runs/filter",
        json={"task_runs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200},
    ).json()
    # union of [start, end] intervals: concurrent tasks count once
    spans = sorted(
        (_ts(t["start_time"]), _ts(t["end_time"]))
        for t in tasks
        if t.get("start_time") and t.get("end_time")
    )
    total, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += (cur_end - cur_start).total_seconds()
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += (cur_end - cur_start).total_seconds()
    return total, len(tasks)


def capability_cases(tmp: Path) -> list[tuple[str, dict[str, Any]]]:
    """Small but real runs of each landed capability."""
    cases: list[tuple[str, dict[str, Any]]] = [("smoke/smoke-on-demand", {"message": "bench"})]
    if (ROOT / "flows/image_pipeline.py").exists():
        fashion = SHARED / "images" / "fashion"
        cases.append(
            (
                "image-pipeline/image-pipeline-on-demand",
                {
                    "params": {
                        "catalog": str(fashion / "styles.csv"),
                        "images": str(fashion / "images"),
                        "limit": 100,
                        "chunk_size": 50,
                        "operations": ["resize:64x64", "format:webp"],
                        "out": str(tmp / "images"),
                        "workers": 1,
                    }
                },
            )
        )
    if (ROOT / "flows/leak_detection.py").exists():
        cases.append(("leak-detection/leak-detection-on-demand", {"params": {"plots": False}}))
    if (ROOT / "flows/db_migration.py").exists():
        from blocks.mongo import MongoConnection
        from blocks.registry import sql_connector_from_url

        db = tmp / "chinook.sqlite"
        shutil.copy(SHARED / "sql" / "chinook.sqlite", db)
        sfx = uuid.uuid4().hex[:8]
        sql_connector_from_url(f"sqlite:///{db}").save(f"bench-sqlite-{sfx}", overwrite=True)
        MongoConnection(url=f"mongodb://127.0.0.1:27018/bench_{sfx}").save(
            f"bench-mongo-{sfx}", overwrite=True
        )
        cases.append(
            (
                "db-migration/db-migration-on-demand",
                {
                    "params": {
                        "source_block": f"bench-sqlite-{sfx}",
                        "target_block": f"bench-mongo-{sfx}",
                        "plan": {"exclude": ["Track", "PlaylistTrack", "InvoiceLine"]},
                    }
                },
            )
        )
    if (ROOT / "flows/mail_migration.py").exists():
        cases.append(
            (
                "mail-migration/mail-migration-on-demand",
                {
                    "params": {
                        "source": {"block": "local-source-bob"},
                        "dest": {"block": "local-dest-bob"},
                        "mailbox": "bench",
                        "options": {"dry_run": True},
                    }
                },
            )
        )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 trivial runs, smoke only")
    parser.add_argument("--runs", type=int, default=None, help="trivial runs (default 3/10)")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 10)

    from blocks.registry import register_blocks
    from deployments.register import register_all
    from headwater.settings import get_settings

    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-orch-"))
    env = {
        **os.environ,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "HEADWATER_DATA_DIR": str(tmp / "data"),
        "HEADWATER_STORAGE": "local",
    }
    os.environ["HEADWATER_DATA_DIR"] = env["HEADWATER_DATA_DIR"]
    os.environ["HEADWATER_STORAGE"] = "local"
    get_settings.cache_clear()
    register_blocks(get_settings(), local_services=True)
    register_all()

    # baseline: the flow in-process
    from flows.smoke import smoke

    t = time.perf_counter()
    smoke("baseline")
    baseline = time.perf_counter() - t

    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "headwater-process"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    result: dict[str, Any] = {
        "api": API,
        "quick": args.quick,
        "runs": runs,
        "load_average_at_start": list(os.getloadavg()),
    }
    try:
        time.sleep(3)
        job_vars = {"env": {"HEADWATER_DATA_DIR": env["HEADWATER_DATA_DIR"]}}
        to_running, to_completed, to_pending = [], [], []
        with api_client(API) as client:
            dep = resolve_deployment(client, "smoke/smoke-on-demand")
            for i in range(runs):
                run = create_flow_run(client, dep["id"], {"message": f"bench {i}"}, job_vars)
                done = wait_for_run(client, run["id"], timeout=300, poll=0.2)
                if done["state_type"] != "COMPLETED":
                    raise SystemExit(f"trivial run {run['id']} ended {done['state_type']}")
                times = state_times(client, run["id"])
                created = _ts(run["created"])
                to_running.append((times["RUNNING"] - created).total_seconds())
                # PENDING: the worker has picked the run up; PENDING -> RUNNING is the flow-run
                # process starting (Python, imports of Prefect and the flow module)
                to_pending.append((times["PENDING"] - created).total_seconds())
                to_completed.append((times["COMPLETED"] - created).total_seconds())
                print(f"run {i}: RUNNING {to_running[-1]:.2f}s COMPLETED {to_completed[-1]:.2f}s")
            result["trivial"] = {
                "trigger_to_running_s": {
                    "median": statistics.median(to_running),
                    "min": min(to_running),
                    "max": max(to_running),
                },
                "trigger_to_pending_s": {
                    "median": statistics.median(to_pending),
                    "min": min(to_pending),
                    "max": max(to_pending),
                },
                "trigger_to_completed_s": {
                    "median": statistics.median(to_completed),
                    "min": min(to_completed),
                    "max": max(to_completed),
                },
                "in_process_baseline_s": baseline,
                "completed_vs_in_process_ratio": statistics.median(to_completed) / baseline,
                "target_running_s": 3.0,
                "meets_target": statistics.median(to_running) <= 3.0,
            }
            caps = []
            for name, params in capability_cases(tmp) if not args.quick else []:
                t0 = time.perf_counter()
                d = resolve_deployment(client, name)
                run = create_flow_run(client, d["id"], params, job_vars)
                done = wait_for_run(client, run["id"], timeout=900, poll=0.5)
                wall = time.perf_counter() - t0
                in_tasks, n_tasks = task_seconds(client, run["id"])
                flow_time = done.get("total_run_time") or 0.0
                caps.append(
                    {
                        "deployment": name,
                        "state": done["state_type"],
                        "trigger_to_terminal_s": round(wall, 2),
                        "flow_run_time_s": round(flow_time, 2),
                        "task_runs": n_tasks,
                        "time_in_tasks_s": round(in_tasks, 2),
                        "overhead_s": round(wall - in_tasks, 2),
                        "overhead_in_flow_s": round(flow_time - in_tasks, 2),
                    }
                )
                print(json.dumps(caps[-1]))
            result["capabilities"] = caps
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
        log.close()
    result["load_average_at_end"] = list(os.getloadavg())
    out = ROOT / "bench" / "results" / "orchestration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result["trivial"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
