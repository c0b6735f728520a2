"""One experiment where ASHA stops trials early, for the tests that check how such trials
are recorded in Prefect on each executor (test_prefect_records, test_scaleout)."""

from __future__ import annotations

import os
import time

from tunelib import tune
from tunelib.schedulers import ASHAScheduler

ITERATIONS = 6   # below max_t: only ASHA's rungs (1, 2, 4) stop a trial


def ranked_trainable(config):
    """Loss = rank + 1. A trial reports its first result only after the trial ranked just
    above it has reported its own, so ASHA sees them best first at rung 1 and stops every
    trial but the best there."""
    rank, markers = config["rank"], config["markers"]
    deadline = time.monotonic() + 120
    while rank and not os.path.exists(os.path.join(markers, str(rank - 1))):
        if time.monotonic() > deadline:
            raise TimeoutError(f"trial of rank {rank - 1} never reported")
        time.sleep(0.05)
    for i in range(ITERATIONS):
        try:
            tune.report({"loss": float(rank + 1)})
        finally:  # also when the report's answer is STOP, which unwinds the trainable
            if i == 0:
                open(os.path.join(markers, str(rank)), "w").close()
        time.sleep(config["sleep"])


def asha_experiment(name, storage, markers, sleep, executor=None):
    """Four trials of ranks 0-3 at once; returns the ResultGrid."""
    os.makedirs(markers, exist_ok=True)
    return tune.Tuner(
        ranked_trainable,
        param_space={"rank": tune.grid_search([0, 1, 2, 3]), "markers": markers,
                     "sleep": sleep},
        tune_config=tune.TuneConfig(
            metric="loss", mode="min", max_concurrent_trials=4,
            scheduler=ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2)),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                  executor=executor),
    ).fit()


def assert_stopped_trials_recorded(states):
    """``states``: rank -> the final Prefect state of the trial's flow run. The best trial
    ran to the end (Completed); ASHA stopped the others, which are Completed "Stopped"."""
    assert sorted(states) == [0, 1, 2, 3]
    assert all(state.type.value == "COMPLETED" for state in states.values()), states
    assert states[0].name == "Completed"
    for rank in (1, 2, 3):
        assert states[rank].name == "Stopped", (rank, states[rank])
        assert "scheduler" in states[rank].message
