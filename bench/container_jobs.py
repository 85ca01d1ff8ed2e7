"""Benchmark: tool jobs through Headwater's container-job flow vs plain `docker run`.

1. a 1-second tool job (the `sleep` tool) through the flow vs the same command with `docker run`;
2. N short jobs at concurrency 4: one fanned-out flow run vs N `docker run` at concurrency 4.

Both sides use the same sandbox (no network, read-only root, non-root user, bind mounts), so the
ratio is Headwater's own overhead: Prefect flow/task runs, staging, uploads, records, logs.
Usage: uv run python bench/container_jobs.py [--quick]; writes bench/results/container_jobs.json.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASE = "headwater/debian-base:bookworm"
RESULTS = Path(__file__).resolve().parent / "results" / "container_jobs.json"
SHORT_TOOL = """\
name: bench-count
version: "1"
image: {base}
command: [sh, -c, "wc -c < {{file}} > /out/size.txt"]
inputs: [{{name: file}}]
limits: {{memory: 64m, cpus: 0.5, pids: 16}}
timeout: 60
outputs: [size.txt]
"""


def _docker_run(cmd: str, in_dir: Path, out_dir: Path) -> None:
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,size=64m",
            "--user",
            "65534:65534",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "16",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-v",
            f"{in_dir}:/in:ro",
            "-v",
            f"{out_dir}:/out",
            BASE,
            "sh",
            "-c",
            cmd,
        ],
        check=True,
        capture_output=True,
    )


def _dirs(root: Path, name: str) -> tuple[Path, Path]:
    in_dir, out_dir = root / name / "in", root / name / "out"
    in_dir.mkdir(parents=True)
    out_dir.mkdir(parents=True)
    os.chown(out_dir, 65534, 65534) if os.geteuid() == 0 else out_dir.chmod(0o777)
    for p in (root / name, in_dir):
        p.chmod(0o755)
    return in_dir, out_dir


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    """Run both comparisons and write the JSON results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 repetition, 20 short jobs")
    args = parser.parse_args()
    reps, n_jobs, concurrency = (1, 20, 4) if args.quick else (3, 100, 4)

    from headwater import services

    st = services.check("prefect")
    if st.healthy and not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = st.url
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from headwater.runtime import foreground_flow_settings

    # flows run in this process as `headwater run` runs them (see headwater.runtime)
    with foreground_flow_settings():
        measure(reps, n_jobs, concurrency, args.quick)


def measure(reps: int, n_jobs: int, concurrency: int, quick: bool) -> None:
    """Time both comparisons against the configured services and write the JSON results."""
    from flows.container_jobs import ContainerJobRequest, container_job
    from headwater.settings import get_settings
    from headwater.storage import get_store

    settings = get_settings()
    store = get_store(settings)
    work = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    tools = work / "tools"
    tools.mkdir()
    (tools / "bench-count.yaml").write_text(SHORT_TOOL.format(base=BASE))
    try:
        # warm-up: imports, schema, image lookup, Prefect client
        state = container_job(
            ContainerJobRequest(tool="sleep", params={"seconds": 0}), return_state=True
        )
        assert state.is_completed(), state.message
        in_dir, out_dir = _dirs(work, "warm")
        _docker_run("true", in_dir, out_dir)

        from prefect import flow

        @flow(name="bench-empty")
        def empty() -> None:
            """Nothing: the floor of a Prefect flow run on this server."""

        empty(return_state=True)
        single_hw, single_docker, empty_flow = [], [], []
        for i in range(reps):
            empty_flow.append(_timed(lambda: empty(return_state=True)))
            in_dir, out_dir = _dirs(work, f"single-{i}")
            single_docker.append(
                _timed(
                    lambda d=(in_dir, out_dir): _docker_run(
                        "sleep 1 && echo slept 1 > /out/done.txt", *d
                    )
                )
            )

            def one() -> None:
                st = container_job(
                    ContainerJobRequest(tool="sleep", params={"seconds": 1}), return_state=True
                )
                assert st.is_completed(), st.message

            single_hw.append(_timed(one))

        keys = [
            store.put_bytes(f"bench/container-jobs/inputs/f{i:04d}.txt", b"x" * i)
            for i in range(n_jobs)
        ]
        batch_dirs = []
        for i in range(n_jobs):
            in_dir, out_dir = _dirs(work, f"batch-{i}")
            (in_dir / "f.txt").write_bytes(b"x" * i)  # the same bytes as the uploaded key
            (in_dir / "f.txt").chmod(0o644)
            batch_dirs.append((in_dir, out_dir))

        def plain_batch() -> None:
            with ThreadPoolExecutor(concurrency) as pool:
                list(
                    pool.map(
                        lambda d: _docker_run("wc -c < /in/f.txt > /out/size.txt", *d), batch_dirs
                    )
                )

        def hw_batch() -> None:
            request = ContainerJobRequest(
                tool="bench-count", inputs=keys, concurrency=concurrency, tool_dirs=[str(tools)]
            )
            st = container_job(request, return_state=True)
            assert st.is_completed(), st.message

        batch_docker = _timed(plain_batch)
        batch_hw = _timed(hw_batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "store": store.describe(),
        "database": settings.sqlalchemy_url().split("@")[-1],
        "prefect_api": os.environ.get("PREFECT_API_URL", "ephemeral"),
        "single_job": {
            "repetitions": reps,
            "docker_run_s": round(statistics.median(single_docker), 3),
            "headwater_s": round(statistics.median(single_hw), 3),
            "ratio": round(statistics.median(single_hw) / statistics.median(single_docker), 3),
            "target_ratio": 1.2,
            "empty_prefect_flow_run_s": round(statistics.median(empty_flow), 3),
            "headwater_minus_empty_flow_ratio": round(
                (statistics.median(single_hw) - statistics.median(empty_flow))
                / statistics.median(single_docker),
                3,
            ),
        },
        "batch": {
            "jobs": n_jobs,
            "concurrency": concurrency,
            "docker_run_s": round(batch_docker, 3),
            "headwater_s": round(batch_hw, 3),
            "ratio": round(batch_hw / batch_docker, 3),
            "target_ratio": 1.5,
        },
        "quick": quick,
        "load_average": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
