"""Drive Ray's or tunelib's optional searchers / PB2's GP step on a fixed seed; print JSON.

    python tests/ray_reference/optional_searchers.py ray       # in a venv with Ray 2.60
    python tests/ray_reference/optional_searchers.py tunelib

tests/test_search_optional.py and tests/test_schedulers_extra.py hold the Ray output of
this script as literal expected values (produced with Ray 2.60.0, bayesian-optimization
1.4.3, nevergrad 1.0.3, zoopt 0.4.2, ConfigSpace 1.2.2, hpbandster 0.7.4, scikit-learn
1.9.1, scipy 1.17.1, numpy 2.4.6, pandas 3.1.1) and compare tunelib's live output with them;
tests/test_search_ax.py holds the ``ax``/``ax_botorch`` output (ax-platform 1.2.1, botorch
0.16.1, gpytorch 1.15.2, torch 2.13.0+cpu).
Each protocol suggests, reports and completes trials in order (ZOOpt: two live at once).
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any, Callable, Dict, List

import numpy as np


def _lib(name: str):
    if name == "ray":
        from ray import tune
        from ray.tune.schedulers import pb2
        from ray.tune.search.bayesopt import BayesOptSearch
        from ray.tune.search.bohb import TuneBOHB
        from ray.tune.search.nevergrad import NevergradSearch
        from ray.tune.search.zoopt import ZOOptSearch
    else:
        from tunelib import tune
        from tunelib.schedulers import pb2
        from tunelib.search.bayesopt import BayesOptSearch
        from tunelib.search.bohb import TuneBOHB
        from tunelib.search.nevergrad import NevergradSearch
        from tunelib.search.zoopt import ZOOptSearch
    return tune, BayesOptSearch, TuneBOHB, NevergradSearch, ZOOptSearch, pb2


def loss(config: Dict[str, Any]) -> float:
    return (config["x"] - 1.0) ** 2 + config.get("y", 0.0) + 0.1 * config.get("n", 0)


def drive(searcher, n: int, on_result: Callable[[Dict], Dict] = lambda r: r,
          depth: int = 1) -> List[Any]:
    """``n`` suggestions, up to ``depth`` trials live at once (the oldest completes first)."""
    out: List[Any] = []
    live: List[tuple] = []

    def complete_oldest() -> None:
        trial_id, config = live.pop(0)
        result = on_result({"loss": loss(config), "training_iteration": 1})
        searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)

    for i in range(n):
        if len(live) >= depth:
            complete_oldest()
        config = searcher.suggest(f"t{i}")
        if config is None or isinstance(config, str):
            out.append(config)
            if live:
                complete_oldest()
            continue
        live.append((f"t{i}", config))
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in config.items()})
    while live:
        complete_oldest()
    return out


def bayesopt(lib: str) -> List[Any]:
    tune, BayesOptSearch, *_ = _lib(lib)
    searcher = BayesOptSearch(metric="loss", mode="min", random_state=7, random_search_steps=3)
    searcher.set_search_properties(None, None, {"x": tune.uniform(-5, 5), "y": tune.uniform(0, 1)})
    return drive(searcher, 8)


def nevergrad(lib: str) -> List[Any]:
    import nevergrad as ng

    tune, _, _, NevergradSearch, *_ = _lib(lib)
    np.random.seed(0)
    searcher = NevergradSearch(optimizer=ng.optimizers.OnePlusOne, metric="loss", mode="min")
    space = {"x": tune.uniform(-5, 5), "y": tune.loguniform(1e-3, 1), "n": tune.randint(0, 10),
             "act": tune.choice(["relu", "tanh"])}
    searcher.set_search_properties(None, None, space)
    return drive(searcher, 8)


def zoopt(lib: str) -> List[Any]:
    tune, *_, ZOOptSearch, _ = _lib(lib)
    np.random.seed(0)
    random.seed(0)
    searcher = ZOOptSearch(budget=8, metric="loss", mode="min")
    searcher.set_search_properties(None, None, {"x": tune.uniform(-5, 5), "n": tune.randint(0, 10)})
    return drive(searcher, 10, depth=2)


def bohb(lib: str) -> List[Any]:
    tune, _, TuneBOHB, *_ = _lib(lib)
    np.random.seed(0)
    searcher = TuneBOHB(seed=3, metric="loss", mode="min")
    searcher.set_search_properties(None, None, {"x": tune.uniform(-5, 5), "y": tune.uniform(0, 1)})
    return drive(searcher, 12, lambda r: dict(r, hyperband_info={"budget": 1}))


def _ax_search(lib: str):
    if lib == "ray":
        from ray import tune
        from ray.tune.search.ax import AxSearch
    else:
        from tunelib import tune
        from tunelib.search.ax import AxSearch
    return tune, AxSearch


def ax(lib: str) -> List[Any]:
    """Ax's seeded Sobol phase (8 trials for 4 tuned parameters), a point to evaluate first,
    a constant, a nested key, int, log and choice parameters."""
    tune, AxSearch = _ax_search(lib)
    searcher = AxSearch(metric="loss", mode="min", random_seed=7, verbose_logging=False,
                        points_to_evaluate=[{"x": 1.5, "y": 0.5, "n": 2, "m/act": "tanh",
                                             "c": 3}])
    space = {"x": tune.uniform(-5, 5), "y": tune.loguniform(1e-3, 1), "n": tune.randint(0, 10),
             "m": {"act": tune.choice(["relu", "tanh"])}, "c": 3}
    searcher.set_search_properties(None, None, space)
    return drive(searcher, 8)


def ax_botorch(lib: str) -> List[Any]:
    """Ax's Sobol phase (5 trials for 2 parameters), then two BoTorch steps."""
    tune, AxSearch = _ax_search(lib)
    searcher = AxSearch(metric="loss", mode="min", random_seed=11, verbose_logging=False)
    searcher.set_search_properties(None, None, {"x": tune.uniform(-5, 5), "y": tune.uniform(0, 1)})
    return drive(searcher, 7)


class _Named:
    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return self.name


def pb2_explore(lib: str) -> Dict[str, Any]:
    """PB2's GP step on a fixed population history: the config chosen for a bottom trial."""
    import pandas as pd

    *_, pb2 = _lib(lib)
    rows = []
    rng = np.random.RandomState(1)
    for trial in range(4):
        lr = float(rng.uniform(1e-4, 1e-1))
        mom = float(rng.uniform(0.5, 0.99))
        for t in range(1, 6):
            rows.append([f"T{trial}", t, lr, mom, float(t * (0.5 + lr * 10 - abs(mom - 0.9)))])
    data = pd.DataFrame(rows, columns=["Trial", "Time", "lr", "mom", "Reward"])
    bounds = {"lr": [1e-4, 1e-1], "mom": [0.5, 0.99]}
    np.random.seed(0)
    config, new_data = pb2._explore(data, bounds, None, _Named("T3"), _Named("T0"),
                                    {"lr": 0.05, "mom": 0.7, "other": 1})
    return {"config": {k: float(v) for k, v in config.items()}, "rows": len(new_data)}


# (add_bundles, increase_by, increase_by_times, reserve, total CPUs, total GPUs,
#  base bundle, current CPUs of each live trial, the trial asking, its metric per trial)
DISTRIBUTE_SCENARIOS = [
    (False, None, -1, None, 8, 0, {"CPU": 1}, [1, 1], 0, None),
    (False, None, -1, None, 8, 0, {"CPU": 1}, [4, 1, 1], 1, None),
    (True, None, -1, None, 8, 0, {"CPU": 1}, [1, 1, 1], 2, None),
    (False, {"CPU": 2}, 2, {"CPU": 1}, 16, 0, {"CPU": 1}, [1, 1], 0, None),
    (False, None, -1, None, 4, 0, {"CPU": 1}, [3, 3], 0, None),
    (False, None, -1, None, 8, 0, {"CPU": 1}, [1, 1, 1], 1, [0.5, 0.1, 0.9]),
]


def distribute_resources(lib: str) -> List[Any]:
    """Ray's DistributeResources(ToTopJob) on fixed trial resources: the bundles returned."""
    from types import SimpleNamespace

    out = []
    for add, inc, times, reserve, cpus, gpus, base, current, asking, metrics in DISTRIBUTE_SCENARIOS:
        if lib == "ray":
            from ray.tune import PlacementGroupFactory as PGF
            from ray.tune.schedulers import resource_changing_scheduler as rcs

            trials = [SimpleNamespace(trial_id=f"t{i}", placement_group_factory=PGF(
                [dict(base, CPU=c)] if not add else [base] * c),
                last_result={"loss": metrics[i]} if metrics else {})
                for i, c in enumerate(current)]
            controller = SimpleNamespace(
                _resource_updater=SimpleNamespace(get_num_cpus=lambda c=cpus: c,
                                                  get_num_gpus=lambda g=gpus: g),
                get_live_trials=lambda t=trials: t)
            scheduler = SimpleNamespace(base_trial_resources=PGF([base]))
        else:
            from tunelib.schedulers import resource_changing_scheduler as rcs
            from tunelib.trial import Trial

            trials = [Trial(trial_id=f"t{i}", config={}, trainable_name="f",
                            resources={"cpu": float(base["CPU"])},
                            last_result={"loss": metrics[i]} if metrics else {})
                      for i in range(len(current))]
            controller = SimpleNamespace(total_resources={"cpu": cpus, "gpu": gpus},
                                         get_live_trials=lambda t=trials: t)
            scheduler = rcs.ResourceChangingScheduler()
            for trial, c in zip(trials, current):
                scheduler.on_trial_add(controller, trial)
                scheduler._trial_bundles[trial.trial_id] = (
                    [dict(base, CPU=c)] if not add else [base] * c)
        if metrics:
            fn = rcs.DistributeResourcesToTopJob(add, inc, times, reserve, metric="loss", mode="max")
        else:
            fn = rcs.DistributeResources(add, inc, times, reserve)
        pgf = fn(controller, trials[asking], {"training_iteration": 2}, scheduler)
        # Ray's PlacementGroupFactory drops zero amounts; compare without them
        out.append(None if pgf is None else [{k: float(v) for k, v in b.items() if v}
                                             for b in pgf.bundles])
    return out


# a pbt_policy_<trial>.txt as Ray's PBT writes it: the donor chain t3 <- t1 <- t0, with an
# older exploit of t0 (from t2) that t0's later clone of t1 overwrote
POLICY_LINES = [
    ["0_lr=0.0100", "2_lr=0.0300", 3, 4, {"lr": 0.03, "bs": 16}, {"lr": 0.036, "bs": 16}],
    ["1_lr=0.0200", "0_lr=0.0100", 4, 6, {"lr": 0.01, "bs": 32}, {"lr": 0.012, "bs": 32}],
    ["3_lr=0.0400", "1_lr=0.0200", 8, 9, {"lr": 0.012, "bs": 32}, {"lr": 0.0096, "bs": 64}],
]


def pbt_replay_policy(lib: str) -> Dict[str, Any]:
    """What PopulationBasedTrainingReplay reads from a policy file."""
    import tempfile

    if lib == "ray":
        from ray.tune.schedulers import PopulationBasedTrainingReplay
    else:
        from tunelib.schedulers import PopulationBasedTrainingReplay
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/pbt_policy_t3.txt"
        with open(path, "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in POLICY_LINES)
        replay = PopulationBasedTrainingReplay(path)
    return {"config": replay.config, "policy": [list(p) for p in replay._policy],
            "tag": replay.experiment_tag}


PROTOCOLS = {"bayesopt": bayesopt, "nevergrad": nevergrad, "zoopt": zoopt, "bohb": bohb,
             "pb2_explore": pb2_explore, "distribute_resources": distribute_resources,
             "pbt_replay_policy": pbt_replay_policy, "ax": ax, "ax_botorch": ax_botorch}

if __name__ == "__main__":
    which = sys.argv[2:] or list(PROTOCOLS)
    print(json.dumps({name: PROTOCOLS[name](sys.argv[1]) for name in which}, indent=1))
