"""Trials/s and results/s: 2 Prefect workers (PrefectWorkers) vs the local executor, and
the start latency of a trial on an idle worker, for each worker type.

    python bench/scaleout_bench.py [--trials 6] [--iterations 20] [--sleep 0] [--workers 2]
                                   [--worker-type process tunelib] [--query-seconds 1]

Starts a LocalCluster (PostgreSQL-backed `prefect server`, the trial deployment;
deployments/local_cluster.py) with, per worker type, a work pool of that type, its trial
deployment and N `prefect worker start --type <type>` processes; then runs the same
experiment (FIFO, `max_concurrent_trials` = N) on each pool's workers and on the local
executor, all recording into that server. Wall time is Tuner.fit() end to end; the
cluster's own start is not counted. Start latency: a one-trial experiment on idle workers,
from the trial's flow run being created to its Running state and to its first result
(median of --latency-runs). Needs PostgreSQL on 127.0.0.1:5432 (trust auth).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="tunelib-bench-prefect-"))


def trainable(config):
    from tunelib import tune

    for i in range(config["iterations"]):
        if config["sleep"]:
            time.sleep(config["sleep"])
        tune.report({"score": config["x"] * (i + 1), "reported_at": time.time()})


def add_pool(cluster, worker_type: str, workers: int, limit: int = 1) -> tuple:
    """A work pool of ``worker_type`` on ``cluster``, its trial deployment and ``workers``
    workers of that type (the LocalCluster's own pool is a process pool, without workers
    here); ``(pool, deployment)``."""
    pool, deployment = f"bench-{worker_type}", f"tunelib-trial-{worker_type}"
    subprocess.run(["prefect", "work-pool", "create", pool, "--type", worker_type],
                   env=cluster.env(), check=True, capture_output=True, text=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "deployments", "deploy.py"),
                    "--pool", pool, "--name", deployment],
                   env=cluster.env(), check=True, capture_output=True, text=True, cwd=ROOT)
    for i in range(workers):
        name = f"{worker_type}-worker-{i}"
        env = cluster.env(PREFECT_WORKER_QUERY_SECONDS=str(cluster.query_seconds),
                          PREFECT_WORKER_PREFETCH_SECONDS="0")
        cluster.workers.append(subprocess.Popen(
            ["prefect", "worker", "start", "--pool", pool, "--type", worker_type,
             "--name", name, "--limit", str(limit)],
            env=env, stdout=open(os.path.join(cluster.log_dir, f"{name}.log"), "w"),
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=ROOT))
        cluster.worker_names.append(name)
    return pool, f"trial/{deployment}"


def run(storage: str, name: str, args, executor=None) -> dict:
    from tunelib import tune

    t0 = time.perf_counter()
    grid = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search(list(range(args.trials))),
                     "iterations": args.iterations, "sleep": args.sleep},
        tune_config=tune.TuneConfig(metric="score", mode="max",
                                    max_concurrent_trials=args.workers),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                  executor=executor),
    ).fit()
    wall = time.perf_counter() - t0
    results = sum(r.metrics["training_iteration"] for r in grid)
    assert grid.num_errors == 0 and len(grid) == args.trials
    return {"wall_s": wall, "trials_per_s": args.trials / wall, "results_per_s": results / wall,
            "results": results}


def start_latency(storage: str, name: str, executor, api_url: str) -> dict:
    """One trial of one iteration on idle workers: seconds from its flow run's creation to
    Running, and to its first result."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from tunelib import tune

    grid = tune.Tuner(
        trainable, param_space={"x": 1, "iterations": 1, "sleep": 0},
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                  executor=executor)).fit()
    reported_at = grid[0].metrics["reported_at"]
    with SyncPrefectClient(api_url) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[name])))
    run = next(fr for fr in runs if fr.deployment_id is not None)
    created = run.created.timestamp()
    return {"running_s": run.start_time.timestamp() - created,
            "first_result_s": reported_at - created}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-type", nargs="+", choices=["process", "tunelib"],
                        default=["process", "tunelib"])
    parser.add_argument("--query-seconds", type=float, default=1.0,
                        help="the workers' PREFECT_WORKER_QUERY_SECONDS")
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--no-local", action="store_true", help="skip the local executor")
    args = parser.parse_args()

    from deployments.local_cluster import LocalCluster, postgres_reachable
    from tunelib.executor.prefect_workers import PrefectWorkers

    if not postgres_reachable():
        print("PostgreSQL is not reachable on 127.0.0.1:5432", file=sys.stderr)
        return 2
    storage = tempfile.mkdtemp(prefix="tunelib-bench-")
    t0 = time.perf_counter()
    rows, latency = {}, {}
    with LocalCluster(workers=0, query_seconds=args.query_seconds) as cluster:
        os.environ["PREFECT_API_URL"] = cluster.api_url
        pools = {kind: add_pool(cluster, kind, args.workers) for kind in args.worker_type}
        print(f"cluster up in {time.perf_counter() - t0:.1f} s ({args.workers} workers of "
              f"each type: {', '.join(args.worker_type)}; logs in {cluster.log_dir})")
        for kind, (pool, deployment) in pools.items():
            executor = PrefectWorkers(work_pool=pool, deployment=deployment)
            rows[f"{kind} workers"] = run(storage, f"bench-{kind}", args, executor)
            samples = [start_latency(storage, f"latency-{kind}-{i}", executor,
                                     cluster.api_url) for i in range(args.latency_runs)]
            latency[kind] = {key: statistics.median(s[key] for s in samples)
                             for key in samples[0]}
        if not args.no_local:
            rows["local executor"] = run(storage, "bench-local", args)
    print(f"{args.trials} trials x {args.iterations} iterations, sleep {args.sleep:g} s, "
          f"{args.workers} at a time, {os.cpu_count()} cores, "
          f"PREFECT_WORKER_QUERY_SECONDS={args.query_seconds:g}")
    print(f"{'executor':<18} {'wall s':>8} {'trials/s':>9} {'results/s':>10}")
    for name, row in rows.items():
        print(f"{name:<18} {row['wall_s']:8.1f} {row['trials_per_s']:9.3f} "
              f"{row['results_per_s']:10.1f}")
    print(f"start latency on an idle worker (median of {args.latency_runs}), from the trial's "
          "flow run created:")
    print(f"{'worker type':<18} {'-> Running s':>13} {'-> 1st result s':>16}")
    for kind, row in latency.items():
        print(f"{kind:<18} {row['running_s']:13.2f} {row['first_result_s']:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
