"""Reading an experiment back, as a user does after fit(), on either engine.

    python tune_bench.py --engine tunelib --case scale --storage /tmp/s
    python readback_bench.py --engine tunelib /tmp/s/bench_scale

Times, in a fresh process (what a later script or notebook pays): the import,
``ExperimentAnalysis(path)``, its ``dataframe()`` and ``dataframe("loss", "min")``,
``Tuner.restore(path, trainable).get_results()`` and ``get_dataframe()``. Prints one
JSON line. On tunelib, ``--no-snapshot`` reads the state and every trial dir (as for an
experiment Ray wrote, or one whose ``.tunelib-readback-*.pkl`` is gone).
"""
import argparse
import functools
import json
import resource
import time

T0 = time.perf_counter()
ap = argparse.ArgumentParser()
ap.add_argument("--engine", choices=["ray", "tunelib"], required=True)
ap.add_argument("--no-snapshot", action="store_true")
ap.add_argument("--trainable", default="trivial", help="its name in tune_bench.py (Ray checks it)")
ap.add_argument("path")
args = ap.parse_args()

if args.engine == "ray":
    from ray.tune import ExperimentAnalysis, Tuner
else:
    from tunelib.tune import ExperimentAnalysis, Tuner

    if args.no_snapshot:
        from tunelib import _readback

        _readback.load = lambda fs, state_path: None
imported = time.perf_counter() - T0


def trainable(config):
    pass


trainable.__name__ = trainable.__qualname__ = args.trainable


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - start, 3)


ea, analysis_s = timed(lambda: ExperimentAnalysis(args.path))
frame, dataframe_s = timed(ea.dataframe)
_, best_rows_s = timed(functools.partial(ea.dataframe, "loss", "min"))
del ea
grid, grid_s = timed(lambda: Tuner.restore(args.path, trainable).get_results())
_, get_dataframe_s = timed(grid.get_dataframe)
print(json.dumps({
    "engine": args.engine, "snapshot": args.engine == "tunelib" and not args.no_snapshot,
    "trials": len(frame), "import_s": round(imported, 3), "analysis_s": analysis_s,
    "dataframe_s": dataframe_s, "dataframe_best_s": best_rows_s, "restore_results_s": grid_s,
    "get_dataframe_s": get_dataframe_s,
    "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
}))
