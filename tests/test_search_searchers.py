"""Searchers: wrappers, SearchGenerator, as_search_algorithm, Optuna, HyperOpt."""

import sys

import numpy as np
import pytest

from tunelib.search import (
    BasicVariantGenerator,
    ConcurrencyLimiter,
    Repeater,
    SearchAlgorithm,
    Searcher,
    SearchGenerator,
    Suggestion,
    as_search_algorithm,
    create_searcher,
    grid_search,
)
from tunelib.search import sample as tune
from tunelib.search.repeater import TRIAL_INDEX


class CountingSearcher(Searcher):
    """Suggests {"x": 0}, {"x": 1}, ...; FINISHED after `limit`; records completions."""

    def __init__(self, limit=100, metric="loss", mode="min"):
        super().__init__(metric=metric, mode=mode)
        self.limit, self.n, self.completed = limit, 0, []

    def suggest(self, trial_id):
        if self.n >= self.limit:
            return Searcher.FINISHED
        self.n += 1
        return {"x": self.n - 1}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, result, error))

    def save(self, path):
        import pickle

        with open(path, "wb") as f:
            pickle.dump((self.n, self.completed), f)

    def restore(self, path):
        import pickle

        with open(path, "rb") as f:
            self.n, self.completed = pickle.load(f)


def run_loop(alg, objective, budget_ids, metric="loss"):
    """Tiny controller: ask, evaluate, tell. Returns the list of (config, value)."""
    seen = []
    for trial_id in budget_ids:
        if alg.is_finished():
            break
        s = alg.next_suggestion(trial_id)
        assert s is not None
        value = objective(s.config)
        seen.append((s.config, value))
        alg.on_trial_complete(trial_id, {metric: value, "training_iteration": 1})
    return seen


# ---- ConcurrencyLimiter / Repeater -----------------------------------------------------


def test_concurrency_limiter_holds_back_until_a_trial_completes():
    base = CountingSearcher()
    lim = ConcurrencyLimiter(base, max_concurrent=2)
    assert lim.suggest("a") == {"x": 0} and lim.suggest("b") == {"x": 1}
    assert lim.suggest("c") is None
    lim.on_trial_complete("a", {"loss": 1.0})
    assert base.completed == [("a", {"loss": 1.0}, False)]
    assert lim.suggest("c") == {"x": 2}


def test_concurrency_limiter_batch_reports_after_whole_batch():
    base = CountingSearcher()
    lim = ConcurrencyLimiter(base, max_concurrent=2, batch=True)
    lim.suggest("a"), lim.suggest("b")
    lim.on_trial_complete("a", {"loss": 1.0})
    assert base.completed == [] and lim.suggest("c") is None
    lim.on_trial_complete("b", {"loss": 2.0})
    assert [c[0] for c in base.completed] == ["a", "b"]
    assert lim.suggest("c") == {"x": 2}


def test_concurrency_limiter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_concurrent"):
        ConcurrencyLimiter(CountingSearcher(), max_concurrent=0)
    with pytest.raises(TypeError, match="Searcher"):
        ConcurrencyLimiter(BasicVariantGenerator(), max_concurrent=2)


def test_search_generator_returns_none_while_limited_then_continues():
    alg = SearchGenerator(ConcurrencyLimiter(CountingSearcher(), 1))
    alg.add_configurations({}, num_samples=3)
    assert alg.next_suggestion("a").config == {"x": 0}
    assert alg.next_suggestion("b") is None and not alg.is_finished()
    alg.on_trial_complete("a", {"loss": 0.0})
    assert alg.next_suggestion("b").config == {"x": 1}


def test_repeater_repeats_config_and_reports_mean():
    base = CountingSearcher()
    rep = Repeater(base, repeat=3)
    configs = [rep.suggest(t) for t in ("a", "b", "c", "d")]
    assert [c["x"] for c in configs] == [0, 0, 0, 1]
    assert [c[TRIAL_INDEX] for c in configs] == [0, 1, 2, 0]
    rep.on_trial_complete("a", {"loss": 1.0})
    rep.on_trial_complete("b", {"loss": 3.0})
    assert base.completed == []
    rep.on_trial_complete("c", {})  # missing metric counts as NaN
    assert base.completed[0][0] == "a" and base.completed[0][1] == {"loss": 2.0}


def test_repeater_without_index():
    rep = Repeater(CountingSearcher(), repeat=2, set_index=False)
    assert rep.suggest("a") == {"x": 0} == rep.suggest("b")


# ---- SearchGenerator -------------------------------------------------------------------


def test_search_generator_merges_constants_and_tags_from_one():
    alg = SearchGenerator(CountingSearcher())
    alg.add_configurations({"epochs": 5, "x": None}, num_samples=2)
    assert alg.total_samples == 2
    s1, s2 = alg.next_suggestion("a"), alg.next_suggestion("b")
    assert s1 == Suggestion({"epochs": 5, "x": 0}, {"x": 0}, "1_epochs=5,x=0")
    assert s2.experiment_tag == "2_epochs=5,x=1"
    assert alg.is_finished() and alg.next_suggestion("c") is None


def test_search_generator_finishes_when_searcher_says_so():
    alg = SearchGenerator(CountingSearcher(limit=2))
    alg.add_configurations({}, num_samples=-1)
    assert alg.total_samples is None
    assert alg.next_suggestion("a") and alg.next_suggestion("b")
    assert alg.next_suggestion("c") is None and alg.is_finished()


def test_search_generator_refuses_unresolved_space_the_searcher_ignores():
    alg = SearchGenerator(CountingSearcher())
    with pytest.raises(ValueError, match=r'param_space\["lr"\]'):
        alg.set_search_properties("loss", "min", {"lr": tune.uniform(0, 1)})


def test_search_generator_save_restore_continues(tmp_path):
    alg = SearchGenerator(ConcurrencyLimiter(CountingSearcher(), 5))
    alg.add_configurations({"c": 1}, num_samples=6)
    for t in "abc":
        alg.next_suggestion(t)
    alg.on_trial_complete("a", {"loss": 1})
    alg.save_to_dir(str(tmp_path), "s1")

    fresh_base = CountingSearcher()
    resumed = SearchGenerator(ConcurrencyLimiter(fresh_base, 5))
    assert resumed.has_checkpoint(str(tmp_path))
    resumed.restore_from_dir(str(tmp_path))
    resumed.add_configurations({"c": 1}, num_samples=6)  # ignored after a restore
    assert fresh_base.n == 3 and [c[0] for c in fresh_base.completed] == ["a"]
    rest = [resumed.next_suggestion(t) for t in "def"]
    assert [s.config["x"] for s in rest] == [3, 4, 5]
    assert rest[0].experiment_tag == "4_c=1,x=3" and resumed.is_finished()


# ---- as_search_algorithm / create_searcher ---------------------------------------------


def test_as_search_algorithm_normalises():
    assert isinstance(as_search_algorithm(None), BasicVariantGenerator)
    s = CountingSearcher()
    wrapped = as_search_algorithm(s)
    assert isinstance(wrapped, SearchGenerator) and wrapped.searcher is s
    bvg = BasicVariantGenerator()
    assert as_search_algorithm(bvg) is bvg
    assert isinstance(as_search_algorithm("random"), BasicVariantGenerator)
    with pytest.raises(TypeError, match="search_alg"):
        as_search_algorithm(42)


def test_as_search_algorithm_applies_max_concurrent_trials():
    assert as_search_algorithm(None, max_concurrent_trials=3).max_concurrent == 3
    wrapped = as_search_algorithm(CountingSearcher(), max_concurrent_trials=2)
    assert isinstance(wrapped.searcher, ConcurrencyLimiter) and wrapped.searcher.max_concurrent == 2
    with pytest.raises(ValueError, match="max_concurrent_trials"):
        as_search_algorithm(ConcurrencyLimiter(CountingSearcher(), 4), max_concurrent_trials=2)


def test_create_searcher_names():
    assert isinstance(create_searcher("variant_generator", metric="m"), BasicVariantGenerator)
    with pytest.raises(ValueError, match="search_alg"):
        create_searcher("nope")


def test_searcher_rejects_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        CountingSearcher(mode="maximise")


def test_search_algorithm_is_the_base_of_both():
    assert issubclass(BasicVariantGenerator, SearchAlgorithm)
    assert issubclass(SearchGenerator, SearchAlgorithm)


# ---- Optuna ----------------------------------------------------------------------------

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)
from tunelib.search.optuna import OptunaSearch  # noqa: E402

SPACE = {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)}


def quadratic(c):
    return (c["x"] - 1.3) ** 2 + (c["y"] + 0.7) ** 2


def best_of(alg, budget=60):
    alg.set_search_properties("loss", "min", SPACE)
    alg.add_configurations(SPACE, num_samples=budget)
    return min(v for _, v in run_loop(alg, quadratic, [f"t{i}" for i in range(budget)]))


def test_optuna_beats_random_search_on_a_quadratic():
    seeds = [0, 1, 2]
    tpe = [best_of(as_search_algorithm(OptunaSearch(seed=s))) for s in seeds]
    rnd = [best_of(BasicVariantGenerator(random_state=s)) for s in seeds]
    assert np.mean(tpe) < np.mean(rnd)


def test_optuna_honours_points_to_evaluate_and_native_space():
    space = {
        "a": optuna.distributions.FloatDistribution(0, 1),
        "b": optuna.distributions.IntDistribution(1, 3),
    }
    alg = as_search_algorithm(
        OptunaSearch(
            space, metric="m", mode="max", points_to_evaluate=[{"a": 0.25, "b": 2}], seed=0
        )
    )
    alg.add_configurations({}, num_samples=3)
    seen = run_loop(alg, lambda c: c["a"], ["t0", "t1", "t2"], metric="m")
    assert seen[0][0] == {"a": 0.25, "b": 2}
    assert all(0 <= c["a"] <= 1 and c["b"] in (1, 2, 3) for c, _ in seen)


def test_optuna_converts_tunelib_spaces_with_ray_bounds():
    conv = OptunaSearch.convert_search_space(
        {
            "m": {"lr": tune.loguniform(1e-4, 1e-1)},
            "n": tune.randint(1, 5),
            "q": tune.qrandint(0, 10, 5),
            "c": tune.choice(["a", "b"]),
        }
    )
    assert conv["m/lr"].log and (conv["n"].low, conv["n"].high) == (1, 4)
    assert (conv["q"].high, conv["q"].step) == (10, 5) and conv["c"].choices == ("a", "b")


def test_optuna_nested_space_and_save_restore_without_repeats(tmp_path):
    space = {"m": {"lr": tune.loguniform(1e-4, 1e-1)}, "k": tune.choice([1, 2, 3]), "e": 2}
    alg = as_search_algorithm(OptunaSearch(seed=0))
    alg.set_search_properties("loss", "min", space)
    alg.add_configurations(space, num_samples=8)
    first = run_loop(alg, lambda c: c["m"]["lr"], [f"t{i}" for i in range(4)])
    assert first[0][0]["e"] == 2 and "m/lr" in alg.searcher._space
    alg.save_to_dir(str(tmp_path), "s")
    resumed = as_search_algorithm(OptunaSearch())
    resumed.restore_from_dir(str(tmp_path))
    rest = run_loop(resumed, lambda c: c["m"]["lr"], [f"r{i}" for i in range(10)])
    assert len(rest) == 4 and resumed.is_finished()
    lrs = [c["m"]["lr"] for c, _ in first + rest]
    assert len(set(lrs)) == 8  # nothing suggested twice
    assert len(resumed.searcher._ot_study.trials) == 8


@pytest.mark.parametrize(
    "space, path",
    [
        (
            {"model": {"lr": grid_search([0.1, 0.2])}},
            r'param_space\["model"\]\["lr"\].*grid_search',
        ),
        ({"noise": tune.randn(0, 1)}, r'param_space\["noise"\].*allowed'),
        ({"f": {"g": tune.sample_from(lambda spec: 1)}}, r'param_space\["f"\]\["g"\].*sample_from'),
    ],
)
def test_optuna_rejects_spaces_it_cannot_express(space, path):
    with pytest.raises(ValueError, match=path):
        OptunaSearch(metric="loss", mode="min").set_search_properties("loss", "min", space)


def test_missing_optuna_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'tunelib\[optuna\]'"):
        OptunaSearch()


# ---- HyperOpt --------------------------------------------------------------------------


def test_hyperopt_search_runs_with_points_and_converted_space():
    pytest.importorskip("hyperopt")
    from tunelib.search.hyperopt import HyperOptSearch

    space = {
        "x": tune.uniform(-5, 5),
        "act": tune.choice(["relu", "tanh"]),
        "n": {"k": tune.randint(1, 4)},
    }
    alg = as_search_algorithm(
        HyperOptSearch(
            points_to_evaluate=[{"x": 2.0, "act": "tanh", "n": {"k": 3}}], random_state_seed=0
        )
    )
    alg.set_search_properties("loss", "min", space)
    alg.add_configurations(space, num_samples=12)
    seen = run_loop(alg, lambda c: (c["x"] - 2) ** 2, [f"t{i}" for i in range(12)])
    assert seen[0][0] == {"x": 2.0, "act": "tanh", "n": {"k": 3}}
    assert all(
        -5 <= c["x"] <= 5 and c["act"] in ("relu", "tanh") and 1 <= c["n"]["k"] <= 3
        for c, _ in seen
    )
    with pytest.raises(ValueError, match=r'param_space\["g"\].*grid_search'):
        HyperOptSearch.convert_search_space({"g": grid_search([1, 2])})


def test_missing_hyperopt_gives_install_hint(monkeypatch):
    from tunelib.search.hyperopt import HyperOptSearch

    monkeypatch.setitem(sys.modules, "hyperopt", None)
    with pytest.raises(ImportError, match=r"pip install 'tunelib\[hyperopt\]'"):
        HyperOptSearch()
