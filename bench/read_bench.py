"""Read-side benchmark: a synthetic experiment in Ray's layout, read by tunelib.

Writes ``--trials`` trials x ``--results`` reports (default 1,000 x 100) into a temp
dir, then times ExperimentAnalysis/ResultGrid construction, get_dataframe() and
get_best_result(). Run: ``python3 bench/read_bench.py [--trials N] [--results M]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def write_experiment(root: str, n_trials: int, n_results: int, n_ckpt: int = 2) -> str:
    """Write a Ray-2.60-layout experiment dir under ``root`` and return its path."""
    exp = os.path.join(root, "bench_exp")
    os.makedirs(exp)
    trial_data = []
    for i in range(n_trials):
        tid = f"ab12c_{i:05d}"
        lr = 10 ** (-1 - (i % 40) / 10)
        cfg = {"lr": lr, "model": {"width": 32 + i % 7}}
        dirname = f"train_fn_{tid}_{i}_lr={lr:.4f}_2026-11-23_08-00-00"
        tdir = os.path.join(exp, dirname)
        os.makedirs(tdir)
        with open(os.path.join(tdir, "params.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        lines = []
        last = None
        for it in range(1, n_results + 1):
            ck = f"checkpoint_{it - 1:06d}" if it > n_results - n_ckpt else None
            res = {"loss": math.exp(-lr * it) + (i % 13) * 1e-3, "acc": 1 - math.exp(-lr * it),
                   "nested": {"a": it, "b": lr * it}, "timestamp": 1795423500 + it,
                   "checkpoint_dir_name": ck, "done": it == n_results,
                   "training_iteration": it, "trial_id": tid, "date": "2026-11-23_08-00-00",
                   "time_this_iter_s": 0.01, "time_total_s": 0.01 * it, "pid": 1,
                   "hostname": "h", "node_ip": "127.0.0.1", "config": cfg,
                   "time_since_restore": 0.01 * it, "iterations_since_restore": it}
            lines.append(json.dumps(res))
            last = res
            if ck:
                os.makedirs(os.path.join(tdir, ck))
                with open(os.path.join(tdir, ck, "state.json"), "w") as f:
                    f.write(json.dumps({"it": it}))
        with open(os.path.join(tdir, "result.json"), "w") as f:
            f.write("\n".join(lines) + "\n")
        trial = {"trainable_name": "train_fn", "trial_id": tid, "config": cfg,
                 "evaluated_params": {"lr": lr}, "experiment_tag": f"{i}_lr={lr:.4f}",
                 "status": "TERMINATED", "relative_logdir": dirname,
                 "custom_trial_name": None, "max_failures": 0}
        runtime = {"start_time": 1795423500.0, "num_failures": 0, "error_filename": None,
                   "pickled_error_filename": None, "last_result": last}
        trial_data.append([json.dumps(trial), json.dumps(runtime)])
    with open(os.path.join(exp, "experiment_state-2026-11-23_08-00-00.json"), "w") as f:
        json.dump({"trial_data": trial_data, "runner_data": {"_metric": "loss"},
                   "stats": {"start_time": 1795423500.0}}, f)
    return exp


def main() -> None:
    """Write the synthetic experiment, time the read side, print one line per step."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--results", type=int, default=100)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="tunelib_read_bench_")
    try:
        t0 = time.perf_counter()
        exp = write_experiment(root, args.trials, args.results)
        print(f"wrote {args.trials} trials x {args.results} results in {time.perf_counter() - t0:.2f} s")

        from tunelib.analysis import ExperimentAnalysis
        from tunelib.result_grid import ResultGrid

        timings = {}
        t = time.perf_counter()
        ea = ExperimentAnalysis(exp, default_metric="loss", default_mode="min")
        timings["ExperimentAnalysis()"] = time.perf_counter() - t
        t = time.perf_counter()
        grid = ResultGrid(ea)
        timings["ResultGrid()"] = time.perf_counter() - t
        t = time.perf_counter()
        df = grid.get_dataframe()
        timings["get_dataframe()"] = time.perf_counter() - t
        t = time.perf_counter()
        df2 = grid.get_dataframe(filter_metric="loss", filter_mode="min")
        timings["get_dataframe(loss,min)"] = time.perf_counter() - t
        t = time.perf_counter()
        best = grid.get_best_result()
        timings["get_best_result()"] = time.perf_counter() - t
        t = time.perf_counter()
        best5 = grid.get_best_result("acc", "max", scope="last-5-avg")
        timings["get_best_result(last-5-avg)"] = time.perf_counter() - t
        t = time.perf_counter()
        n_rows = sum(len(r.metrics_dataframe) for r in grid)
        timings["all metrics_dataframes"] = time.perf_counter() - t
        assert len(df) == len(df2) == args.trials and n_rows == args.trials * args.results
        assert best.metrics["loss"] <= df["loss"].min() + 1e-12, (best.metrics["loss"], df["loss"].min())
        total = sum(timings.values())
        for k, v in timings.items():
            print(f"{k:30s} {v * 1000:9.1f} ms")
        print(f"{'total':30s} {total * 1000:9.1f} ms  = {total / args.trials * 100 * 1000:.1f} ms per 100 trials"
              f"  (best: {best.path.rsplit('/', 1)[-1][:24]}, {best5.metrics['trial_id']})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
