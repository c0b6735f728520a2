"""Trials/s and results/s: 2 Prefect workers (PrefectWorkers) vs the local executor.

    python bench/scaleout_bench.py [--trials 8] [--iterations 50] [--sleep 0] [--workers 2]

Starts a LocalCluster (PostgreSQL-backed `prefect server`, a process pool, the trial
deployment, N `prefect worker` processes; deployments/local_cluster.py), then runs the same
experiment (FIFO, `max_concurrent_trials` = N) on the workers and on the local executor,
both recording into that server. Wall time is Tuner.fit() end to end; the cluster's own
start is not counted. Needs PostgreSQL on 127.0.0.1:5432 (trust auth).
"""

from __future__ import annotations

import argparse
import os
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
        tune.report({"score": config["x"] * (i + 1)})


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from deployments.local_cluster import LocalCluster, postgres_reachable
    from tunelib.executor.prefect_workers import PrefectWorkers

    if not postgres_reachable():
        print("PostgreSQL is not reachable on 127.0.0.1:5432", file=sys.stderr)
        return 2
    storage = tempfile.mkdtemp(prefix="tunelib-bench-")
    t0 = time.perf_counter()
    with LocalCluster(workers=args.workers) as cluster:
        os.environ["PREFECT_API_URL"] = cluster.api_url
        print(f"cluster up in {time.perf_counter() - t0:.1f} s ({args.workers} workers)")
        rows = {
            "prefect workers": run(storage, "bench-workers", args, PrefectWorkers()),
            "local executor": run(storage, "bench-local", args),
        }
    print(f"{args.trials} trials x {args.iterations} iterations, sleep {args.sleep:g} s, "
          f"{args.workers} at a time, {os.cpu_count()} cores")
    print(f"{'executor':<16} {'wall s':>8} {'trials/s':>9} {'results/s':>10}")
    for name, row in rows.items():
        print(f"{name:<16} {row['wall_s']:8.1f} {row['trials_per_s']:9.3f} "
              f"{row['results_per_s']:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
