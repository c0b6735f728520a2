"""Ray's import paths: ``s/\\bray\\b/tunelib/`` on a Ray import line gives a working import
for every public name tunelib implements.

The names are Ray 2.60's: every ``__all__`` in ``shared/reference/ray-2.60-public-names.txt``,
plus the module paths Ray's docs and users import that the reference does not list
(``RAY_PATHS`` below, checked against Ray 2.60). A name tunelib implements nowhere is
skipped and reported; a name that exists in tunelib's core but is missing at Ray's path
fails. ``KNOWN_MISSING`` is the exact list of what tunelib does not provide: it must
shrink as names are implemented (a listed name that imports fails the test).
"""

import functools
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ray-2.60-public-names.txt"

# Ray module paths (and names in them) that the reference's ``__all__`` lists leave out,
# read off Ray 2.60.0's installed package.
RAY_PATHS = {
    "ray.tune.schedulers.async_hyperband": ["ASHAScheduler", "AsyncHyperBandScheduler"],
    "ray.tune.schedulers.hyperband": ["HyperBandScheduler"],
    "ray.tune.schedulers.median_stopping_rule": ["MedianStoppingRule"],
    "ray.tune.schedulers.pbt": ["PopulationBasedTraining", "PopulationBasedTrainingReplay"],
    "ray.tune.schedulers.pb2": ["PB2"],
    "ray.tune.schedulers.hb_bohb": ["HyperBandForBOHB"],
    "ray.tune.schedulers.resource_changing_scheduler": ["ResourceChangingScheduler",
                                                        "DistributeResources"],
    "ray.tune.schedulers.trial_scheduler": ["TrialScheduler", "FIFOScheduler"],
    "ray.tune.search.basic_variant": ["BasicVariantGenerator"],
    "ray.tune.search.sample": ["Domain", "Float", "Integer", "Categorical", "Function",
                               "sample_from", "uniform", "choice"],
    "ray.tune.search.variant_generator": ["grid_search", "generate_variants"],
    "ray.tune.search.searcher": ["Searcher"],
    "ray.tune.search.concurrency_limiter": ["ConcurrencyLimiter"],
    "ray.tune.search.repeater": ["Repeater"],
    "ray.tune.search.search_generator": ["SearchGenerator"],
    "ray.tune.search.search_algorithm": ["SearchAlgorithm"],
    "ray.tune.search.ax": ["AxSearch"],
    "ray.tune.search.bayesopt": ["BayesOptSearch"],
    "ray.tune.search.bohb": ["TuneBOHB"],
    "ray.tune.search.hebo": ["HEBOSearch"],
    "ray.tune.search.hyperopt": ["HyperOptSearch"],
    "ray.tune.search.nevergrad": ["NevergradSearch"],
    "ray.tune.search.optuna": ["OptunaSearch"],
    "ray.tune.search.zoopt": ["ZOOptSearch"],
    "ray.tune.stopper.stopper": ["Stopper", "CombinedStopper"],
    "ray.tune.stopper.experiment_plateau": ["ExperimentPlateauStopper"],
    "ray.tune.stopper.function_stopper": ["FunctionStopper"],
    "ray.tune.stopper.maximum_iteration": ["MaximumIterationStopper"],
    "ray.tune.stopper.noop": ["NoopStopper"],
    "ray.tune.stopper.timeout": ["TimeoutStopper"],
    "ray.tune.stopper.trial_plateau": ["TrialPlateauStopper"],
    "ray.tune.experiment.trial": ["Trial"],
    "ray.tune.experiment.experiment": ["Experiment"],
    "ray.tune.analysis": ["ExperimentAnalysis"],
    "ray.tune.analysis.experiment_analysis": ["ExperimentAnalysis"],
    "ray.tune.trainable": ["Trainable", "FunctionTrainable", "with_parameters", "wrap_function"],
    "ray.tune.trainable.trainable": ["Trainable"],
    "ray.tune.trainable.util": ["with_parameters", "with_resources"],
    "ray.tune.tuner": ["Tuner"],
    "ray.tune.tune_config": ["TuneConfig", "ResumeConfig"],
    "ray.tune.tune": ["run", "run_experiments"],
    "ray.tune.execution.placement_groups": ["PlacementGroupFactory"],
    "ray.tune.callback": ["Callback"],
    "ray.tune.progress_reporter": ["ProgressReporter", "CLIReporter", "JupyterNotebookReporter"],
    "ray.tune.error": ["TuneError"],
    "ray.tune.registry": ["register_trainable", "register_env"],
    "ray.tune.result_grid": ["ResultGrid"],
    "ray.train.torch": ["TorchTrainer", "TorchCheckpoint", "TorchConfig", "accelerate",
                        "get_device", "get_devices", "prepare_model", "prepare_optimizer",
                        "prepare_data_loader", "backward", "enable_reproducibility"],
}

# What tunelib does not provide, and why. Remove a line when the name is implemented:
# the test fails while a listed name imports at Ray's path.
KNOWN_MISSING = {
    # RLlib's environments
    ("ray.tune", "register_env"), ("ray.tune.registry", "register_env"),
    # Ray's execution internals: a function trainable is not wrapped into a class here
    ("ray.tune.trainable", "FunctionTrainable"), ("ray.tune.trainable", "wrap_function"),
    # Ray Train V2 / Ray Data names with no counterpart in tunelib's trainers
    ("ray.train", "BackendConfig"), ("ray.train", "DataConfig"),
    ("ray.train", "TRAIN_DATASET_KEY"), ("ray.train", "CheckpointUploadMode"),
    ("ray.train", "CheckpointConsistencyMode"), ("ray.train", "ControllerError"),
    ("ray.train", "NCCLHangError"), ("ray.train", "LoggingConfig"),
    ("ray.train", "PreemptionError"), ("ray.train", "PreemptionInfo"),
    ("ray.train", "ReportedCheckpoint"), ("ray.train", "ReportedCheckpointStatus"),
    ("ray.train", "UserCallback"), ("ray.train", "ValidationConfig"),
    ("ray.train", "ValidationFn"), ("ray.train", "ValidationTaskConfig"),
    ("ray.train", "get_all_reported_checkpoints"), ("ray.train", "get_preemption_info"),
    ("ray.train.torch", "accelerate"),
    # ray.tune.utils: the resource monitor and the slow-step warner are Ray-runtime tools;
    # _detect_config_single is private
    ("ray.tune.utils", "UtilMonitor"), ("ray.tune.utils", "warn_if_slow"),
    ("ray.tune.utils", "_detect_config_single"),
}

# where tunelib's own implementations live (a name found here must be at Ray's path too)
CORE_MODULES = [
    "tunelib.tune", "tunelib.train", "tunelib.train.torch", "tunelib.stopper",
    "tunelib.trial", "tunelib.analysis", "tunelib.result_grid", "tunelib.registry",
    "tunelib.error", "tunelib.trainable", "tunelib._layout", "tunelib.tune._wrappers",
    "tunelib.tune.utils.util",
]
CORE_PACKAGES = ["tunelib.schedulers", "tunelib.search"]


def _reference_names():
    pairs, module = [], None
    for line in REFERENCE.read_text().splitlines():
        header = re.match(r"## (\S+)", line)
        if header:
            module = header.group(1)
            continue
        entry = re.match(r"- (\w+) \[", line)
        if entry and module:
            pairs.append((module, entry.group(1)))
    return pairs


def _all_ray_names():
    pairs = _reference_names() + [(m, n) for m, names in RAY_PATHS.items() for n in names]
    return sorted(set(pairs))


@functools.lru_cache(maxsize=None)
def _core_names():
    names = set()
    modules = list(CORE_MODULES)
    for package in CORE_PACKAGES:
        pkg = importlib.import_module(package)
        modules.append(package)
        modules += [info.name for info in pkgutil.walk_packages(pkg.__path__, package + ".")]
    for module in modules:
        names.update(dir(importlib.import_module(module)))
    return names


def _imports(ray_line: str) -> bool:
    line = re.sub(r"\bray\b", "tunelib", ray_line)
    try:
        exec(line, {})
    except ImportError:
        return False
    return True


ALL_NAMES = _all_ray_names()


def test_the_reference_is_read():
    modules = {m for m, _ in _reference_names()}
    assert {"ray.tune", "ray.tune.schedulers", "ray.tune.search", "ray.tune.stopper",
            "ray.train", "ray.tune.logger", "ray.tune.experiment", "ray.tune.utils"} <= modules
    assert len(_reference_names()) > 100


@pytest.mark.parametrize("module,name", ALL_NAMES, ids=[f"{m}.{n}" for m, n in ALL_NAMES])
def test_ray_import_line_works_with_tunelib(module, name):
    line = f"from {module} import {name}"
    rewritten = re.sub(r"\bray\b", "tunelib", line)
    if _imports(line):
        assert (module, name) not in KNOWN_MISSING, (
            f"`{line}` works with tunelib now: remove ({module!r}, {name!r}) from KNOWN_MISSING."
        )
        return
    if name in _core_names():
        pytest.fail(f"tunelib implements {name} but `{rewritten}` fails: re-export it at "
                    "Ray's path.")
    assert (module, name) in KNOWN_MISSING, (
        f"`{line}` has no tunelib counterpart and is not in KNOWN_MISSING: implement it, or "
        "list it there with the reason."
    )
    pytest.skip(f"not provided by tunelib: {module}.{name}")


def test_known_missing_names_are_ray_names():
    assert KNOWN_MISSING <= set(ALL_NAMES)


@pytest.mark.parametrize("alias,core", [
    ("tunelib.tune.schedulers", "tunelib.schedulers"),
    ("tunelib.tune.schedulers.async_hyperband", "tunelib.schedulers.async_hyperband"),
    ("tunelib.tune.search", "tunelib.search"),
    ("tunelib.tune.search.optuna", "tunelib.search.optuna"),
    ("tunelib.tune.search.sample", "tunelib.search.sample"),
])
def test_rays_paths_to_the_core_packages_are_the_same_modules(alias, core):
    assert importlib.import_module(alias) is importlib.import_module(core)
    # the module keeps its own identity, whichever path imported it first
    assert importlib.import_module(alias).__spec__.name == core


def test_a_class_from_rays_path_is_the_core_class():
    from tunelib.schedulers import ASHAScheduler as core

    ASHAScheduler = importlib.import_module(
        "tunelib.tune.schedulers.async_hyperband").ASHAScheduler
    assert ASHAScheduler is core
    assert isinstance(ASHAScheduler(), core)


def test_a_searcher_the_core_lacks_fails_to_import_at_rays_path():
    with pytest.raises(ModuleNotFoundError, match="tunelib.tune.search.no_such_lib"):
        importlib.import_module("tunelib.tune.search.no_such_lib")


def test_the_schedulers_docstring_import_line_works():
    import tunelib.schedulers

    lines = [ln.strip() for ln in tunelib.schedulers.__doc__.splitlines()
             if ln.strip().startswith("from tunelib")]
    assert lines
    for line in lines:
        exec(line.split("#")[0], {})


# ------------------------------------------------------------------ what the paths hold


def test_merge_dicts_deep_merges_into_a_copy():
    from tunelib.tune.utils import merge_dicts

    original = {"a": {"b": 1}, "x": 1}
    assert merge_dicts(original, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}, "x": 1}
    assert original == {"a": {"b": 1}, "x": 1}


def test_deep_update_refuses_new_keys_unless_allowed():
    from tunelib.tune.utils import deep_update

    with pytest.raises(Exception, match="Unknown config parameter `y`"):
        deep_update({"x": 1}, {"y": 2})
    assert deep_update({"a": {"b": 1}}, {"a": {"c": 2}}, allow_new_subkey_list=["a"]) == {
        "a": {"b": 1, "c": 2}}


def test_flat_key_helpers_are_the_engines_own():
    from tunelib import _layout
    from tunelib.tune.utils import flatten_dict, unflattened_lookup

    assert flatten_dict is _layout.flatten_dict
    assert unflattened_lookup("a/0/b", {"a": [{"b": 3}]}) == 3


def test_date_str_is_rays_stamp():
    from tunelib.tune.utils import date_str

    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", date_str())


def _dict_counter_class():
    """A Trainable whose count survives save/restore (as a dict checkpoint)."""
    from tunelib import tune

    class DictCounter(tune.Trainable):
        def setup(self, config):
            self.count = 0

        def step(self):
            self.count += 1
            return {"count": self.count}

        def save_checkpoint(self, checkpoint_dir):
            return {"count": self.count}

        def load_checkpoint(self, checkpoint):
            self.count = checkpoint["count"]

    return DictCounter


def test_validate_save_restore_passes_a_trainable_that_resumes(tmp_path, monkeypatch):
    from tunelib.tune.utils import validate_save_restore

    monkeypatch.setenv("HOME", str(tmp_path))  # a Trainable on its own logs to ~/ray_results
    assert validate_save_restore(_dict_counter_class()) is True


def test_diagnose_serialization_names_the_captured_culprit(capsys):
    import threading

    from tunelib.tune.utils import diagnose_serialization

    lock = threading.Lock()

    def train_fn(config):
        with lock:
            pass

    assert diagnose_serialization(train_fn) == {"lock"}
    assert "Variable(s) {'lock'} was found to be non-serializable" in capsys.readouterr().out
    assert diagnose_serialization(lambda config: None) is True


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """``nvidia-smi`` answering for two GPUs; GPU 1's memory is in use."""
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho '0, GPU-aaaa, 10, 1000'\necho '1, GPU-bbbb, 900, 1000'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{__import__('os').environ['PATH']}")


def test_wait_for_gpu_returns_once_the_trials_gpu_is_free(fake_nvidia_smi, monkeypatch):
    from tunelib.tune.utils import wait_for_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert wait_for_gpu() is True
    assert wait_for_gpu("GPU-aaaa", retry=1) is True


def test_wait_for_gpu_gives_up_on_a_busy_gpu(fake_nvidia_smi):
    from tunelib.tune.utils import wait_for_gpu

    with pytest.raises(RuntimeError, match="GPU memory was not freed"):
        wait_for_gpu(1, retry=2, delay_s=0)
    with pytest.raises(ValueError, match="7 not found in set of available GPUs"):
        wait_for_gpu(7)


def test_wait_for_gpu_outside_a_gpu_trial_says_so(monkeypatch):
    from tunelib.tune.utils import wait_for_gpu

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(RuntimeError, match="No GPU ids found"):
        wait_for_gpu()


def test_torch_checkpoint_round_trips_a_state_dict():
    torch = pytest.importorskip("torch")
    from tunelib.train import Checkpoint
    from tunelib.train.torch import TorchCheckpoint

    model = torch.nn.Linear(3, 1)
    with pytest.warns(DeprecationWarning, match="TorchCheckpoint` is deprecated"):
        checkpoint = TorchCheckpoint.from_state_dict(model.state_dict())
    assert isinstance(checkpoint, Checkpoint)
    restored = checkpoint.get_model(torch.nn.Linear(3, 1))
    assert torch.equal(restored.weight, model.weight)
    with pytest.raises(ValueError, match="no `model_definition` was provided"):
        checkpoint.get_model()
