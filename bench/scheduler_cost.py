"""Per-decision cost of the schedulers at 1,000 live trials.

Run: ``python3 bench/scheduler_cost.py [--trials 1000] [--rounds 60]``

Every round, each of the live trials reports one result (round-robin, as a controller
receiving results from 1,000 concurrent trials would). A STOPped trial is replaced by a
fresh one so that the population stays at ``--trials``; PBT exploits are accepted.
Prints µs per ``on_trial_result`` call: mean, median, p99 and max.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tunelib.schedulers import (  # noqa: E402
    ASHAScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from tunelib.trial import RUNNING, TERMINATED, Trial  # noqa: E402


class Controller:
    def __init__(self) -> None:
        self.trials: List[Trial] = []
        self.live: List[Trial] = []

    def get_trials(self) -> List[Trial]:
        return self.trials

    def get_live_trials(self) -> List[Trial]:
        return self.live

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        pass

    def stop_trial(self, trial: Trial) -> None:
        trial.status = TERMINATED

    def exploit(self, trial, donor_trial, new_config, new_tag) -> bool:
        trial.config = new_config
        return True


def run(name: str, sched: TrialScheduler, n: int, rounds: int, seed: int = 0) -> Dict[str, float]:
    gc.collect()
    rng = np.random.default_rng(seed)
    ctl = Controller()
    iters: Dict[str, int] = {}
    scale: Dict[str, float] = {}
    counter = [0]

    def new_trial() -> Trial:
        t = Trial(
            trial_id=f"{counter[0]:06d}",
            config={"lr": float(rng.uniform(1e-3, 1))},
            trainable_name="f",
        )
        counter[0] += 1
        ctl.trials.append(t)
        sched.on_trial_add(ctl, t)
        t.status = RUNNING
        iters[t.trial_id] = 0
        scale[t.trial_id] = float(rng.uniform(0.1, 1.0))
        return t

    ctl.live = [new_trial() for _ in range(n)]
    costs: List[float] = []
    decisions: Dict[str, int] = {}
    clock = time.perf_counter
    for _ in range(rounds):
        for trial in list(ctl.live):
            iters[trial.trial_id] += 1
            i = iters[trial.trial_id]
            s = scale[trial.trial_id]
            result = {
                "training_iteration": i,
                "time_total_s": i * (1.0 + 0.1 * s),
                "loss": s * 10 / (i + 1) + s + float(rng.normal(0, 0.01)),
            }
            t0 = clock()
            decision = sched.on_trial_result(ctl, trial, result)
            costs.append(clock() - t0)
            decisions[decision] = decisions.get(decision, 0) + 1
            if decision == TrialScheduler.STOP:
                trial.status = TERMINATED
                sched.on_trial_complete(ctl, trial, result)
                idx = ctl.live.index(trial)
                ctl.live[idx] = new_trial()
    us = np.array(costs) * 1e6
    print(
        f"{name:<28} {len(us):>7} decisions  mean {us.mean():7.1f} µs"
        f"  median {np.median(us):6.1f} µs"
        f"  p99 {np.percentile(us, 99):7.1f} µs  max {us.max():8.1f} µs   {decisions}"
    )
    return {"mean": float(us.mean()), "p99": float(np.percentile(us, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    n, rounds = args.trials, args.rounds
    print(f"{n} live trials, {rounds} results each (round-robin)\n")
    run(
        "ASHA (rf=3, max_t=100)",
        ASHAScheduler(metric="loss", mode="min", max_t=100, grace_period=1, reduction_factor=3),
        n,
        rounds,
    )
    run(
        "MedianStoppingRule (iter)",
        MedianStoppingRule(
            time_attr="training_iteration", metric="loss", mode="min", grace_period=5
        ),
        n,
        rounds,
    )
    run(
        "MedianStoppingRule (time_s)",
        MedianStoppingRule(time_attr="time_total_s", metric="loss", mode="min", grace_period=5),
        n,
        rounds,
    )
    run(
        "PBT (interval=10)",
        PopulationBasedTraining(
            time_attr="training_iteration",
            metric="loss",
            mode="min",
            perturbation_interval=10,
            hyperparam_mutations={"lr": lambda: float(np.random.uniform(1e-3, 1))},
        ),
        n,
        rounds,
    )


if __name__ == "__main__":
    main()
