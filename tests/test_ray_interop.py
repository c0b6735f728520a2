"""Ray and tunelib read each other's directories, checked with Ray itself: Ray's
Result.from_path and ExperimentAnalysis on tunelib's experiments, tunelib continuing an
experiment Ray left unfinished, Ray's pickles loaded by tunelib (test_ray_dirs.py does what
needs no Ray).

Ray 2.60's ``ray.train.Result`` is Train V2's, which reads only Train V2 run dirs
(checkpoint_manager_snapshot.json) and fails on Ray Tune's own trial dirs too; the reader
of Tune trial dirs is ``ray.tune.Result`` (``ray.air.result.Result``), used here.

Optional: runs where Ray is importable, by this Python or by the interpreter named in
TUNELIB_RAY_PYTHON (e.g. a separate venv: Ray is a benchmark-only dependency).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tunelib import _ray_compat, tune

RAY_PYTHON = os.environ.get("TUNELIB_RAY_PYTHON") or (
    sys.executable if importlib.util.find_spec("ray") else None
)

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(RAY_PYTHON is None, reason="Ray is not installed (set TUNELIB_RAY_PYTHON)"),
    pytest.mark.usefixtures("prefect_server"),
]

READ_WITH_RAY = """
import json, sys
from ray.tune import Result
out = []
for path in sys.argv[1:]:
    r = Result.from_path(path)
    best = r.get_best_checkpoint("loss", "min")
    out.append({"config": r.config, "loss": r.metrics["loss"],
                "iters": len(r.metrics_dataframe), "checkpoint": r.checkpoint.path,
                "best": best.path, "n_ckpts": len(r.best_checkpoints)})
print(json.dumps(out))
"""


def fn(config):
    for i in range(4):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "w.txt"), "w") as f:
                f.write(str(i))
            tune.report({"loss": abs(2 - i) * config["lr"]},
                        checkpoint=tune.Checkpoint.from_directory(d))


class Steps(tune.Trainable):
    def setup(self, config):
        self.i = 0

    def step(self):
        self.i += 1
        return {"loss": abs(2 - self.i) * self.config["lr"]}

    def save_checkpoint(self, d):
        with open(os.path.join(d, "i"), "w") as f:
            f.write(str(self.i))

    def load_checkpoint(self, d):
        pass


@pytest.mark.parametrize("trainable", [fn, Steps])
def test_ray_reads_tunelib_trial_dirs(storage_dir, trainable):
    grid = tune.Tuner(
        trainable, param_space={"lr": tune.grid_search([0.5, 1.0])},
        run_config=tune.RunConfig(
            name="interop", storage_path=storage_dir, verbose=0, stop={"training_iteration": 4},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_frequency=1),
        ),
    ).fit()
    paths = [r.path for r in grid]
    out = subprocess.run([RAY_PYTHON, "-c", READ_WITH_RAY, *paths], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    read = json.loads(out.stdout.strip().splitlines()[-1])
    for ours, theirs in zip(grid, read):
        assert theirs["config"] == ours.config
        assert theirs["loss"] == ours.metrics["loss"]
        assert theirs["iters"] == 4
        assert theirs["checkpoint"] == ours.checkpoint.path
        assert theirs["best"] == ours.get_best_checkpoint("loss", "min").path
        assert theirs["n_ckpts"] == 2


def _run_with_ray(script: str, *args: str) -> dict:
    """Run ``script`` with Ray's interpreter; its last stdout line is JSON."""
    # run from elsewhere than the repository: `python -c` would import tunelib from the cwd
    out = subprocess.run([RAY_PYTHON, "-c", textwrap.dedent(script), *args],
                         capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


ANALYSE_WITH_RAY = """
    import json, sys
    from ray.tune import ExperimentAnalysis, ResultGrid
    analysis = ExperimentAnalysis(sys.argv[1])
    trials = {}
    for t in analysis.trials:
        manager = t.run_metadata.checkpoint_manager
        trials[t.trial_id] = {
            "status": t.status, "config": t.config, "dir": t.storage.trial_dir_name,
            "rows": len(analysis.trial_dataframes[t.trial_id]),
            "resources": t.placement_group_factory.required_resources,
            "best": [r.checkpoint.path for r in manager.best_checkpoint_results],
            "latest": manager.latest_checkpoint_result.checkpoint.path,
        }
    results = [{"config": r.config, "loss": r.metrics.get("loss"), "path": r.path,
                "checkpoint": r.checkpoint.path if r.checkpoint else None,
                "error": type(r.error).__name__ if r.error else None}
               for r in ResultGrid(analysis)]
    print(json.dumps({"trials": trials, "results": results}))
"""


def failing_fn(config):
    for i in range(3):
        if config["lr"] < 0 and i == 1:
            raise ValueError("negative lr")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "w.txt"), "w") as f:
                f.write(str(i))
            tune.report({"loss": abs(2 - i) * config["lr"]},
                        checkpoint=tune.Checkpoint.from_directory(d))


def test_ray_experiment_analysis_reads_a_tunelib_experiment(storage_dir):
    grid = tune.Tuner(
        failing_fn, param_space={"lr": tune.grid_search([0.5, -1.0])},
        run_config=tune.RunConfig(
            name="analysed", storage_path=storage_dir, verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss",
                                                    checkpoint_score_order="min")),
    ).fit()
    read = _run_with_ray(ANALYSE_WITH_RAY, os.path.join(storage_dir, "analysed"))
    ours = {r.config["lr"]: r for r in grid}
    theirs = {r["config"]["lr"]: r for r in read["results"]}
    assert theirs[0.5] == {"config": {"lr": 0.5}, "loss": 0.0, "path": ours[0.5].path,
                           "checkpoint": ours[0.5].checkpoint.path, "error": None}
    assert theirs[-1.0]["error"] == "ValueError"
    trials = {t["config"]["lr"]: t for t in read["trials"].values()}
    assert {lr: t["status"] for lr, t in trials.items()} == {0.5: "TERMINATED", -1.0: "ERROR"}
    assert trials[0.5]["rows"] == 3 and trials[0.5]["resources"] == {"CPU": 1.0}
    assert trials[0.5]["dir"] == os.path.basename(ours[0.5].path)
    assert trials[0.5]["best"] == [c.path for c, _ in ours[0.5].best_checkpoints][::-1] or \
        sorted(trials[0.5]["best"]) == sorted(c.path for c, _ in ours[0.5].best_checkpoints)
    assert trials[0.5]["latest"] == ours[0.5].checkpoint.path


BEST_WITH_RAY = """
    import json, sys
    from ray.tune import ExperimentAnalysis, ResultGrid
    best = ResultGrid(ExperimentAnalysis(sys.argv[1])).get_best_result("loss", "min")
    print(json.dumps(best.config))
"""


def test_ray_finds_the_best_trial_of_a_tunelib_experiment(storage_dir):
    tune.Tuner(fn, param_space={"lr": tune.grid_search([0.5, 1.0])},
               run_config=tune.RunConfig(name="best", storage_path=storage_dir, verbose=0)).fit()
    assert _run_with_ray(BEST_WITH_RAY, os.path.join(storage_dir, "best")) == {"lr": 0.5}


def counting_fn(config):
    """tests/fixtures/ray_unfinished/make_fixture.py's trainable, on tunelib."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
            start = json.load(f)["step"]
    for step in range(start + 1, 5):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step}, f)
            tune.report({"score": config["lr"] * step},
                        checkpoint=tune.Checkpoint.from_directory(d))


MAKE_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ray_unfinished" / "make_fixture.py"

TRIALS_WITH_RAY = """
    import json, sys
    from ray.tune import ExperimentAnalysis
    analysis = ExperimentAnalysis(sys.argv[1])
    print(json.dumps({t.config["lr"]: [t.status, len(analysis.trial_dataframes[t.trial_id])]
                      for t in analysis.trials}))
"""


def test_tunelib_continues_an_experiment_ray_left_unfinished_and_ray_reads_it(tmp_path):
    made = subprocess.run([RAY_PYTHON, str(MAKE_FIXTURE), str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert "driver exit status: -9" in made.stdout, made.stderr[-3000:]
    path = str(tmp_path / "ray_unfinished")
    grid = tune.Tuner.restore(path, counting_fn).fit()
    assert sorted((r.config["lr"], r.metrics["training_iteration"]) for r in grid) == [
        (0.1, 4), (1.0, 4), (10.0, 4), (100.0, 4)]
    assert _run_with_ray(TRIALS_WITH_RAY, path) == {
        str(lr): ["TERMINATED", 4] for lr in (0.1, 1.0, 10.0, 100.0)}


PICKLE_WITH_RAY = """
    import sys
    import ray.cloudpickle as cloudpickle
    from ray import tune
    from ray.tune.schedulers import (ASHAScheduler, FIFOScheduler, HyperBandScheduler,
                                     MedianStoppingRule, PopulationBasedTraining)
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.stopper import MaximumIterationStopper, TrialPlateauStopper

    class CountingCallback(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.seen = getattr(self, "seen", 0) + 1

    with open(sys.argv[1], "wb") as f:
        cloudpickle.dump({
            "asha": ASHAScheduler(metric="loss", mode="min", max_t=20, grace_period=3,
                                  reduction_factor=3, brackets=2),
            "hyperband": HyperBandScheduler(metric="loss", mode="min", max_t=9),
            "median": MedianStoppingRule(metric="loss", mode="min", grace_period=2),
            "fifo": FIFOScheduler(),
            "pbt": PopulationBasedTraining(metric="loss", mode="min", perturbation_interval=2,
                                           hyperparam_mutations={"a": [1, 2]}),
            "max_iter": MaximumIterationStopper(5),
            "plateau": TrialPlateauStopper("loss", num_results=3),
            "variants": BasicVariantGenerator(max_concurrent=2),
            "space": {"a": tune.uniform(0, 1), "b": tune.qloguniform(1e-4, 1e-1, 1e-4),
                      "c": tune.randint(1, 10), "d": tune.choice(["x", "y"]),
                      "e": tune.grid_search([1, 2])},
            "tune_config": tune.TuneConfig(metric="loss", mode="min", num_samples=4),
            "run_config": tune.RunConfig(name="x", stop={"training_iteration": 3},
                                         failure_config=tune.FailureConfig(max_failures=2),
                                         callbacks=[CountingCallback()]),
            "resources": tune.PlacementGroupFactory([{"CPU": 2, "GPU": 1}, {"CPU": 1}]),
        }, f)
    print("{}")
"""


def _tunelibs_own():
    from tunelib.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )
    from tunelib.tune.search import BasicVariantGenerator

    from tunelib.tune.stopper import MaximumIterationStopper, TrialPlateauStopper

    return {
        "asha": ASHAScheduler(metric="loss", mode="min", max_t=20, grace_period=3,
                              reduction_factor=3, brackets=2),
        "hyperband": HyperBandScheduler(metric="loss", mode="min", max_t=9),
        "median": MedianStoppingRule(metric="loss", mode="min", grace_period=2),
        "fifo": FIFOScheduler(),
        "pbt": PopulationBasedTraining(metric="loss", mode="min", perturbation_interval=2,
                                       hyperparam_mutations={"a": [1, 2]}),
        "max_iter": MaximumIterationStopper(5),
        "plateau": TrialPlateauStopper("loss", num_results=3),
        "variants": BasicVariantGenerator(max_concurrent=2),
    }


def _plain_attributes(obj) -> dict:
    """An object's attributes, functions and nested objects by their type only."""
    def shown(value):
        if isinstance(value, (list, tuple)):
            return [shown(v) for v in value]
        if isinstance(value, dict):
            return {k: shown(v) for k, v in value.items()}
        if callable(value) or hasattr(value, "__dict__"):
            return type(value).__name__ if hasattr(value, "__dict__") else "callable"
        return value if isinstance(value, (int, float, str, type(None))) else repr(value)
    return {k: shown(v) for k, v in vars(obj).items()}


def test_rays_pickled_schedulers_stoppers_and_configs_load_as_tunelibs(tmp_path):
    _run_with_ray(PICKLE_WITH_RAY, str(tmp_path / "objects.pkl"))
    loaded = _ray_compat.loads((tmp_path / "objects.pkl").read_bytes())
    for name, own in _tunelibs_own().items():
        assert type(loaded[name]) is type(own), name
        theirs = _plain_attributes(loaded[name])  # Ray's may have more (HyperBand's lambdas)
        assert {k: theirs.get(k) for k in vars(own)} == _plain_attributes(own), name
    assert loaded["tune_config"] == tune.TuneConfig(metric="loss", mode="min", num_samples=4)
    run_config = loaded["run_config"]
    assert (run_config.stop, run_config.failure_config) == (
        {"training_iteration": 3}, tune.FailureConfig(max_failures=2))
    assert isinstance(run_config.callbacks[0], tune.Callback)
    assert loaded["resources"].bundles == [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 1.0}]
    space = loaded["space"]
    assert 0 <= space["a"].sample() < 1 and space["d"].sample() in ("x", "y")
    assert space["e"] == {"grid_search": [1, 2]}


RESTORE_WITH_RAY = """
    import json, sys
    from ray import tune
    try:
        tune.Tuner.restore(sys.argv[1], trainable=lambda config: None)
        print(json.dumps("restored"))
    except ModuleNotFoundError as e:
        print(json.dumps(str(e)))
"""


def test_ray_cannot_restore_a_tunelib_experiment_without_tunelib(storage_dir):
    """What README's "Reading each other's directories" says: Ray's Tuner.restore unpickles
    tuner.pkl, whose configs are tunelib's."""
    tune.Tuner(fn, param_space={"lr": 0.5},
               run_config=tune.RunConfig(name="ours", storage_path=storage_dir, verbose=0)).fit()
    said = _run_with_ray(RESTORE_WITH_RAY, os.path.join(storage_dir, "ours"))
    assert said == "No module named 'tunelib'"
