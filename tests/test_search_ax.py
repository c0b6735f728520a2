"""AxSearch through the public API, its save/restore, its errors, and its suggestions against
Ray 2.60's own AxSearch on the same seed.

The ``RAY_*`` expected values are the output of
``tests/ray_reference/optional_searchers.py ray ax ax_botorch`` run in a venv with Ray 2.60.0,
ax-platform 1.2.1, botorch 0.16.1, gpytorch 1.15.2 and torch 2.13.0+cpu; with
``TUNELIB_RAY_PYTHON`` set, the script is also run live under that interpreter. Sobol's
points depend on the seed only; BoTorch's steps on the botorch release too (0.17.2 moves
them in the 5th digit), so those are compared on the recorded releases only.
"""

import importlib.metadata
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

pytest.importorskip("ax")

from tunelib import tune  # noqa: E402
from tunelib.search import create_searcher  # noqa: E402
from tunelib.search._util import flatten_dict  # noqa: E402
from tunelib.search.ax import AxSearch, ax_search  # noqa: E402

if importlib.metadata.version("ax-platform") not in SpecifierSet(ax_search.SUPPORTED_AX):
    pytest.skip(f"AxSearch supports ax-platform{ax_search.SUPPORTED_AX}, found "
                f"{importlib.metadata.version('ax-platform')}", allow_module_level=True)

REFERENCE = Path(__file__).parent / "ray_reference" / "optional_searchers.py"
sys.path.insert(0, str(REFERENCE.parent))
import optional_searchers as protocols  # noqa: E402

RAY_AX = [{'x': 1.5, 'y': 0.5, 'n': 2, 'm': {'act': 'tanh'}, 'c': 3}, {'x': -3.0052687227725983, 'y': 0.0032568414042368344, 'n': 7, 'm': {'act': 'relu'}, 'c': 3}, {'x': 2.1619966439902782, 'y': 0.04877552260146438, 'n': 2, 'm': {'act': 'tanh'}, 'c': 3}, {'x': 3.9957905933260918, 'y': 0.018415919361586073, 'n': 8, 'm': {'act': 'relu'}, 'c': 3}, {'x': -1.171469921246171, 'y': 0.2755776196516956, 'n': 3, 'm': {'act': 'tanh'}, 'c': 3}, {'x': -1.5244068019092083, 'y': 0.012485733428503823, 'n': 0, 'm': {'act': 'tanh'}, 'c': 3}, {'x': 3.620883459225297, 'y': 0.49931504523465836, 'n': 5, 'm': {'act': 'relu'}, 'c': 3}, {'x': 0.5328167509287596, 'y': 0.002230541722642419, 'n': 4, 'm': {'act': 'tanh'}, 'c': 3}]  # noqa: E501
RAY_AX_BOTORCH = [{'x': 2.272080183029175, 'y': 0.11495503038167953}, {'x': -3.812902569770813, 'y': 0.9749882016330957}, {'x': -2.0334919169545174, 'y': 0.2593900188803673}, {'x': 4.364128326997161, 'y': 0.6506653232499957}, {'x': 2.8907835762947798, 'y': 0.48230143915861845}, {'x': 1.0596787550573714, 'y': 0.29789114589943744}, {'x': 0.7663558954055961, 'y': 0.0}]  # noqa: E501
RAY = {"ax": RAY_AX, "ax_botorch": RAY_AX_BOTORCH}
RECORDED_RELEASES = {"ax-platform": "1.2.1", "botorch": "0.16.1"}
SPACE = {"x": tune.uniform(-5, 5), "n": tune.randint(0, 4), "act": tune.choice(["relu", "tanh"])}


@pytest.fixture(autouse=True)
def no_prefect(monkeypatch):
    monkeypatch.setenv("TUNELIB_DISABLE_PREFECT", "1")


def _approx(expected):
    return [{k: pytest.approx(v, rel=1e-9, abs=1e-12) if isinstance(v, float) else v
             for k, v in flatten_dict(e).items()} for e in expected]


def _on_recorded_releases() -> bool:
    return all(importlib.metadata.version(p) == v for p, v in RECORDED_RELEASES.items())


def _searcher(**kwargs):
    """An AxSearch on ``SPACE`` and its AxClient (whose experiment shows the Ax trials)."""
    from ax.service.ax_client import AxClient

    client = AxClient(random_seed=3, verbose_logging=False)
    return AxSearch(SPACE, metric="loss", mode="min", ax_client=client, **kwargs), client


def _trial_status(client, index: int) -> str:
    return client.experiment.trials[index].status.name


# ---------------------------------------------------------------- against Ray


def test_sobol_suggestions_match_rays_on_the_same_seed():
    out = protocols.ax("tunelib")
    assert [flatten_dict(c) for c in out] == _approx(RAY_AX)


def test_botorch_suggestions_match_rays_on_the_same_seed():
    if not _on_recorded_releases():
        pytest.skip(f"Ray's BoTorch steps were recorded with {RECORDED_RELEASES}")
    assert protocols.ax_botorch("tunelib") == _approx(RAY_AX_BOTORCH)


@pytest.mark.skipif(not os.environ.get("TUNELIB_RAY_PYTHON"), reason="set TUNELIB_RAY_PYTHON")
def test_recorded_ray_values_are_what_ray_computes_now():
    out = subprocess.run([os.environ["TUNELIB_RAY_PYTHON"], str(REFERENCE), "ray", *RAY],
                         capture_output=True, text=True, check=True, timeout=600)
    live = json.loads(out.stdout)
    for name, expected in RAY.items():
        assert [flatten_dict(c) for c in live[name]] == _approx(expected), name


# ---------------------------------------------------------------- end to end


def quadratic(config):
    tune.report({"loss": (config["x"] - 1.0) ** 2 + 0.1 * config["n"]})


def test_ax_search_drives_an_experiment(tmp_path):
    grid = tune.Tuner(
        quadratic,
        param_space={**SPACE, "c": 7, "model": {"w": tune.loguniform(1e-3, 1)}},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=5,
                                    search_alg=AxSearch(random_seed=1, verbose_logging=False)),
        run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert len(grid) == 5 and grid.num_errors == 0
    for r in grid:
        assert -5 <= r.config["x"] <= 5 and r.config["n"] in range(4)
        assert r.config["act"] in ("relu", "tanh") and r.config["c"] == 7
        assert 1e-3 <= r.config["model"]["w"] <= 1
    assert len({r.config["x"] for r in grid}) == 5
    assert list((tmp_path / "exp").glob("searcher-state-*.pkl"))


def test_create_searcher_knows_ax():
    searcher = create_searcher("ax", metric="loss", mode="max")
    assert isinstance(searcher, AxSearch) and (searcher.metric, searcher.mode) == ("loss", "max")


# ---------------------------------------------------------------- save / restore


def test_save_restore_round_trip(tmp_path):
    original, _ = _searcher()
    for i in range(3):
        config = original.suggest(f"t{i}")
        original.on_trial_complete(f"t{i}", {"loss": protocols.loss(config)})
    live = original.suggest("live")
    path = str(tmp_path / "state.pkl")
    original.save(path)
    restored = AxSearch()
    restored.restore(path)
    assert (restored.metric, restored.mode) == ("loss", "min")
    assert restored.suggest("next") == original.suggest("next") is not None
    restored.on_trial_complete("live", {"loss": protocols.loss(live)})  # known after restore
    assert restored.suggest("after") is not None


# ---------------------------------------------------------------- behaviour


def test_lists_in_the_space_come_back_as_lists_in_order():
    searcher = AxSearch(metric="loss", mode="min", random_seed=0, verbose_logging=False)
    searcher.set_search_properties(None, None, {"l": [tune.uniform(0, 1), 5, tune.randint(7, 9)]})
    config = searcher.suggest("t0")
    assert config["l"][1] == 5 and 0 <= config["l"][0] <= 1 and config["l"][2] in (7, 8)


def test_points_to_evaluate_may_be_nested_and_leave_out_constants():
    searcher = AxSearch(metric="loss", mode="min", verbose_logging=False,
                        points_to_evaluate=[{"m": {"act": "tanh"}, "x": 0.5}])
    searcher.set_search_properties(None, None, {"x": tune.uniform(0, 1), "c": 3,
                                                "m": {"act": tune.choice(["relu", "tanh"])}})
    assert searcher.suggest("t0") == {"x": 0.5, "c": 3, "m": {"act": "tanh"}}


def test_a_nan_result_abandons_the_ax_trial_instead_of_telling_it():
    searcher, client = _searcher()
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"loss": math.nan})
    assert _trial_status(client, 0) == "ABANDONED"


def test_a_trial_ending_without_result_is_abandoned():
    searcher, client = _searcher()
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", None, error=True)
    assert _trial_status(client, 0) == "ABANDONED"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("space, label, what", [
    ({"model": {"w": tune.randn()}}, r'param_space\["model"\]\["w"\]', "Float.*Normal"),
    ({"f": tune.sample_from(lambda _: 1)}, r'param_space\["f"\]', "sample_from"),
    ({"g": tune.grid_search([1, 2])}, r'param_space\["g"\]', "Grid search"),
])
def test_a_space_ax_cannot_express_is_refused_naming_the_parameter(space, label, what):
    with pytest.raises(ValueError, match=f"{label}.*{what}"):
        AxSearch.convert_search_space(space)


def test_a_bad_space_in_the_tuner_fails_the_fit_naming_the_parameter(tmp_path):
    tuner = tune.Tuner(
        quadratic, param_space={"x": tune.randn(), "n": 1},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=2,
                                    search_alg=AxSearch(verbose_logging=False)),
        run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0),
    )
    with pytest.raises(ValueError, match=r'param_space\["x"\]: AxSearch does not support'):
        tuner.fit()


def test_a_misspelt_ax_client_argument_is_refused_with_a_suggestion():
    with pytest.raises(TypeError, match=r"argument 'random_sed' \(did you mean 'random_seed'\?\)"):
        AxSearch(metric="loss", mode="min", random_sed=3)


def test_a_point_to_evaluate_with_an_unknown_key_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match=r"points_to_evaluate\[0\]: 'actt'.*Did you mean 'act'"):
        _searcher(points_to_evaluate=[{"x": 0.0, "n": 1, "actt": "relu"}])


def test_an_unsupported_ax_release_is_refused_naming_the_range(monkeypatch):
    monkeypatch.setattr(ax_search.importlib.metadata, "version", lambda name: "1.3.1")
    ax_search._import_ax_client.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"ax-platform>=1.2.1,<1.3.*found ax-platform 1.3.1"):
            AxSearch(metric="loss", mode="min")
    finally:
        ax_search._import_ax_client.cache_clear()


def test_an_ax_client_with_its_experiment_refuses_metric_and_mode():
    from ax.service.ax_client import AxClient, ObjectiveProperties

    client = AxClient(verbose_logging=False)
    client.create_experiment(parameters=[{"name": "x", "type": "range", "bounds": [0.0, 1.0]}],
                             objectives={"score": ObjectiveProperties(minimize=False)})
    with pytest.raises(ValueError, match="do not pass values for these parameters.*mode, metric"):
        AxSearch(metric="loss", mode="min", ax_client=client)
    searcher = AxSearch(ax_client=client)
    assert (searcher.metric, searcher.mode) == ("score", "max")
