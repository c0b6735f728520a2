"""How much does recording an experiment in Prefect cost? (tunelib.prefect.recorder)

Simulates N concurrent trials reporting R results each, spread over D seconds (trial 0
fails once halfway and is retried; with --checkpoint-every K every K-th result names a
checkpoint), through the recorder against an embedded server, and prints per
configuration: writes, writes per trial, 503 retries, seconds to drain after the last
event, ms per write (busy time / writes) and the count and mean latency per kind of write
(``artifact``: artifacts created - leaderboard versions, progress, curves, trial tables and
checkpoint links -; ``artifact_update``: artifacts updated in place).

    python bench/prefect_writes.py                      # the default grid
    python bench/prefect_writes.py --trials 8 --in-flight 1 2 4 --window 1 0
    python bench/prefect_writes.py --trials 8 64 --in-flight 1 --window 1 --variants recording

Server variants: "default" = Prefect's embedded server as shipped (all services on);
"recording" = tunelib.prefect.server.EMBEDDED_SERVER_ENV (what tunelib uses: run-acting services
and the event persister off); "events" = the same with the event persister on. One server per
variant is started (PREFECT_HOME is a fresh temp dir unless --keep-home) and shared by the
runs of that variant.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def simulate(rec, n_trials: int, n_results: int, duration: float, tag: str,
             checkpoint_every: int = 0) -> float:
    """Drive the recorder like a controller would; returns the time of the last event."""
    exp = f"bench_{tag}"
    rec.experiment_started(exp, {"trials": n_trials, "results": n_results, "metric": "loss",
                                 "mode": "min", "total_trials": n_trials}, [])
    names = {f"t{i:03d}": f"train_fn_{tag}_{i:05d}" for i in range(n_trials)}
    for i, (tid, name) in enumerate(names.items()):
        rec.trial_started(tid, name, {"lr": 10.0 ** -(i % 5), "i": i}, 2, 0)
    step = duration / n_results
    t_start = time.time()
    for it in range(1, n_results + 1):
        for tid in names:
            ckpt = (f"checkpoint_{it // checkpoint_every:06d}"
                    if checkpoint_every and it % checkpoint_every == 0 else None)
            rec.trial_result(tid, {"training_iteration": it, "loss": 1.0 / it,
                                   "mean_accuracy": 1 - 1.0 / it, "time_this_iter_s": step,
                                   "checkpoint_dir_name": ckpt})
        if it == n_results // 2:
            rec.trial_failed("t000", "ValueError: simulated", True)
            rec.trial_started("t000", names["t000"], {"lr": 1.0, "i": 0}, 2, 1)
        delay = t_start + it * step - time.time()
        if delay > 0:
            time.sleep(delay)
    from tunelib._lifecycle import ExperimentOutcome, TrialOutcome

    rows = []
    for i, (tid, name) in enumerate(names.items()):
        stopped = i % 3 == 2
        rec.trial_finished(tid, TrialOutcome.STOPPED if stopped else TrialOutcome.TERMINATED,
                           "stopped early by ASHA" if stopped else "")
        rows.append({"trial": name, "status": "TERMINATED", "loss": 1.0 / n_results})
    rec.experiment_finished(ExperimentOutcome.COMPLETED, rows)
    return time.time()


def run_one(api_url, n_trials, n_results, duration, in_flight, window, tag,
            checkpoint_every=0):
    from tunelib.prefect.recorder import PrefectRecorder

    rec = PrefectRecorder(api_url=api_url, window=window, max_in_flight=in_flight)
    rec._server.wait_ready(30)
    simulate(rec, n_trials, n_results, duration, tag, checkpoint_every)
    t0 = time.time()
    missing = rec.close(300)
    drain = time.time() - t0
    s = rec.stats
    kinds = " ".join(f"{k}:{v[0]}x{v[1] / max(v[0], 1):.0f}ms"
                     for k, v in sorted(s["by_kind"].items()))
    return {
        "trials": n_trials, "in_flight": in_flight, "window": window,
        "writes": s["writes"], "per_trial": s["writes"] / n_trials,
        "503": s["retries_503"], "drain_s": drain, "busy_s": s["seconds_busy"],
        "ms_per_write": 1000 * s["seconds_busy"] / max(s["writes"], 1),
        "max_lag_s": s["max_lag_s"], "missing": len(missing), "kinds": kinds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--results", type=int, default=100)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--window", type=float, nargs="+", default=[1.0, 0.0])
    ap.add_argument("--variants", nargs="+", default=["recording", "default"],
                    choices=["recording", "events", "default"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--checkpoint-every", type=int, default=0,
                    help="every K-th result names a checkpoint (0: none)")
    ap.add_argument("--keep-home", action="store_true", help="use the current PREFECT_HOME")
    args = ap.parse_args()

    if not args.keep_home:
        os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tunelib-bench-")
    os.environ.pop("PREFECT_API_URL", None)
    from tunelib.prefect.server import EMBEDDED_SERVER_ENV, ServerHandle

    print(f"{args.results} results per trial over {args.duration:g} s; "
          f"window = coalescing window (s); in_flight = max concurrent requests")
    hdr = (f"{'server':9} {'trials':>6} {'infl':>4} {'win':>4} {'writes':>6} {'w/trial':>7} "
           f"{'503s':>4} {'drain_s':>7} {'busy_s':>6} {'ms/write':>8} {'lag_s':>5} {'miss':>4}  per kind")
    for variant in args.variants:
        env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        if variant != "default":
            env = dict(EMBEDDED_SERVER_ENV)
        if variant == "events":
            env.pop("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED")
        handle = ServerHandle(extra_env=env).start()
        url = handle.wait_ready(180)
        print(f"\n[{variant}] server up in {handle.startup_seconds:.1f} s at {url}")
        print(hdr)
        n = 0
        try:
            for window in [w for w in args.window for _ in range(args.repeat)]:
                for trials in args.trials:
                    for infl in args.in_flight:
                        n += 1
                        r = run_one(url, trials, args.results, args.duration, infl, window,
                                    f"{variant}_{n}", args.checkpoint_every)
                        print(f"{variant:9} {r['trials']:>6} {r['in_flight']:>4} {r['window']:>4g} "
                              f"{r['writes']:>6} {r['per_trial']:>7.1f} {r['503']:>4} "
                              f"{r['drain_s']:>7.2f} {r['busy_s']:>6.2f} {r['ms_per_write']:>8.1f} "
                              f"{r['max_lag_s']:>5.2f} {r['missing']:>4}  {r['kinds']}", flush=True)
        finally:
            handle.stop()


if __name__ == "__main__":
    main()
