"""Search algorithms through the public API: Optuna driving a real experiment, and
Tuner.restore reading one back."""

import pytest

from tunelib import tune

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def quadratic(config):
    tune.report({"loss": (config["x"] - 3.0) ** 2 + (config["y"] + 1.0) ** 2})


def test_optuna_search_drives_an_experiment(storage_dir):
    pytest.importorskip("optuna")
    from tunelib.search import ConcurrencyLimiter
    from tunelib.search.optuna import OptunaSearch

    searcher = ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2)
    grid = tune.Tuner(
        quadratic,
        param_space={"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", search_alg=searcher,
                                    num_samples=12),
        run_config=tune.RunConfig(name="optuna", storage_path=storage_dir, verbose=0),
    ).fit()
    assert len(grid) == 12 and grid.num_errors == 0
    configs = {(r.config["x"], r.config["y"]) for r in grid}
    assert len(configs) == 12
    best = grid.get_best_result()
    assert best.metrics["loss"] == min(r.metrics["loss"] for r in grid)


def test_tuner_restore_reads_an_existing_experiment(storage_dir):
    tune.Tuner(
        quadratic,
        param_space={"x": tune.grid_search([1.0, 3.0]), "y": -1.0},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(name="again", storage_path=storage_dir, verbose=0),
    ).fit()
    path = f"{storage_dir}/again"
    assert tune.Tuner.can_restore(path)
    grid = tune.Tuner.restore(path, trainable=quadratic).get_results()
    assert len(grid) == 2
    assert grid.get_best_result().config == {"x": 3.0, "y": -1.0}  # metric/mode restored
    with pytest.raises(ValueError, match="is not an experiment directory"):
        tune.Tuner.restore(storage_dir, trainable=quadratic)
