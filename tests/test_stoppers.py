"""Stoppers and the ``stop=`` argument forms, as Ray defines them."""

from __future__ import annotations

import datetime
import pickle
import time

import pytest

from tunelib.stopper import (
    CombinedStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    NoopStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
    as_stopper,
)


def r(i: int, **metrics):
    return {"training_iteration": i, **metrics}


def test_stopper_is_abstract_and_its_methods_must_be_implemented():
    class Half(Stopper):
        pass

    with pytest.raises(NotImplementedError):
        Half()("t", {})
    with pytest.raises(NotImplementedError):
        Half().stop_all()


def test_noop_stopper_never_stops():
    s = NoopStopper()
    assert not s("t", r(10**6)) and not s.stop_all()


def test_maximum_iteration_stopper_counts_results_per_trial():
    s = MaximumIterationStopper(max_iter=3)
    assert [s("a", r(i)) for i in (1, 2, 3)] == [False, False, True]
    assert s("b", r(1)) is False
    assert s.stop_all() is False


def test_trial_plateau_stopper_stops_a_flat_trial_after_the_grace_period():
    s = TrialPlateauStopper(metric="loss", std=0.01, num_results=4, grace_period=4)
    assert [s("a", r(i, loss=1.0)) for i in range(1, 5)] == [False, False, False, True]
    assert [s("b", r(i, loss=float(i))) for i in range(1, 6)] == [False] * 5


def test_trial_plateau_stopper_respects_the_metric_threshold():
    s = TrialPlateauStopper(
        metric="loss", num_results=2, grace_period=2, metric_threshold=0.5, mode="min"
    )
    assert [s("a", r(i, loss=1.0)) for i in range(1, 4)] == [False] * 3  # flat but above 0.5
    assert [s("b", r(i, loss=0.1)) for i in range(1, 3)] == [False, True]


def test_trial_plateau_stopper_bad_input():
    with pytest.raises(ValueError, match="`metric_threshold`.*`mode`"):
        TrialPlateauStopper(metric="loss", metric_threshold=0.5)
    with pytest.raises(ValueError, match="`mode` must be 'min' or 'max'"):
        TrialPlateauStopper(metric="loss", mode="lowest")


def test_trial_plateau_stopper_names_a_metric_never_reported():
    s = TrialPlateauStopper(metric="loss")
    with pytest.raises(ValueError, match=r"`loss`.*Reported keys: \['acc', 'training_iteration'\]"):
        s("a", r(1, acc=0.5))


def test_trial_plateau_stopper_pickles():
    s = TrialPlateauStopper(metric="loss", num_results=2, grace_period=2)
    s("a", r(1, loss=1.0))
    s2 = pickle.loads(pickle.dumps(s))
    assert s2("a", r(2, loss=1.0)) is True


def test_experiment_plateau_stopper_stops_everything_when_the_top_values_agree():
    s = ExperimentPlateauStopper(metric="loss", std=0.001, top=3, mode="min", patience=2)
    assert s("a", r(1, loss=5.0)) is False
    assert s("b", r(1, loss=1.0)) is False
    assert s("c", r(1, loss=1.0)) is False
    assert s("a", r(2, loss=1.0)) is False  # plateaued once; patience 2 not used up
    assert s("b", r(2, loss=1.0)) is True
    assert s.stop_all() is True


def test_experiment_plateau_stopper_max_mode_keeps_the_largest():
    s = ExperimentPlateauStopper(metric="acc", top=2, mode="max")
    s("a", r(1, acc=0.9))
    s("b", r(1, acc=0.1))
    assert s("c", r(1, acc=0.9)) is True


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(mode="avg"), "`mode` must be 'min' or 'max'"),
        (dict(top=1), "`top` must be an integer greater than one"),
        (dict(patience=-1), "`patience`"),
        (dict(std=0), "`std` must be a float > 0"),
    ],
)
def test_experiment_plateau_stopper_bad_input(kw, words):
    with pytest.raises(ValueError, match=words):
        ExperimentPlateauStopper(metric="loss", **kw)


def test_timeout_stopper_counts_from_the_first_check():
    s = TimeoutStopper(0.05)
    time.sleep(0.06)
    assert s.stop_all() is False  # setup time does not count
    time.sleep(0.06)
    assert s.stop_all() is True
    assert s("t", r(1)) is False


def test_timeout_stopper_takes_a_timedelta_and_rejects_other_types():
    assert TimeoutStopper(datetime.timedelta(minutes=2))._timeout_seconds == 120
    with pytest.raises(ValueError, match="`timeout`"):
        TimeoutStopper("10s")


def test_timeout_stopper_restarts_its_clock_after_unpickling():
    s = TimeoutStopper(100)
    s.stop_all()
    assert pickle.loads(pickle.dumps(s))._last_check is None


def test_combined_stopper_is_an_or():
    s = CombinedStopper(
        MaximumIterationStopper(2), FunctionStopper(lambda tid, res: res["loss"] < 0.1)
    )
    assert s("a", r(1, loss=0.05)) is True
    assert s("b", r(1, loss=1.0)) is False
    assert s("b", r(2, loss=1.0)) is True
    assert s.stop_all() is False
    assert CombinedStopper(NoopStopper(), TimeoutStopper(0)).stop_all() is True


def test_function_stopper_calls_the_function():
    seen = []
    s = FunctionStopper(lambda tid, res: seen.append(tid) or res["x"] > 1)
    assert s("a", {"x": 2}) is True and seen == ["a"] and s.stop_all() is False


# --- as_stopper: Ray's `stop=` forms ------------------------------------------------------


def test_as_stopper_none_and_empty_dict_mean_no_stopper():
    assert as_stopper(None) is None
    assert as_stopper({}) is None


def test_as_stopper_passes_a_stopper_through():
    s = MaximumIterationStopper(3)
    assert as_stopper(s) is s


def test_as_stopper_dict_stops_when_any_value_is_reached():
    s = as_stopper({"training_iteration": 10, "mean_accuracy": 0.98})
    assert s("a", r(3, mean_accuracy=0.5)) is False
    assert s("a", r(10, mean_accuracy=0.5)) is True
    assert s("b", r(2, mean_accuracy=0.99)) is True
    assert s("c", r(2, mean_accuracy=0.5, done=True)) is True
    assert s.stop_all() is False


def test_as_stopper_dict_names_a_key_never_reported():
    s = as_stopper({"training_iteration": 10, "acc": 0.9})
    with pytest.raises(ValueError, match=r"`acc`.*Reported keys: \['loss', 'training_iteration'\]"):
        s("a", r(1, loss=0.3))


def test_as_stopper_dict_tolerates_a_key_missing_after_it_was_reported():
    s = as_stopper({"acc": 0.9})
    s("a", r(1, acc=0.1))
    assert s("a", r(2, loss=0.3)) is False
    assert s("a", {"training_iteration": 3, "done": False}) is False  # bare result


def test_as_stopper_dict_rejects_nested_criteria():
    with pytest.raises(ValueError, match="flattened"):
        as_stopper({"eval": {"loss": 0.1}})


def test_as_stopper_wraps_a_function():
    s = as_stopper(lambda trial_id, result: result["loss"] < 0.1)
    assert isinstance(s, FunctionStopper)
    assert s("a", {"loss": 0.05}) is True


def test_as_stopper_combines_a_list_of_stoppers():
    s = as_stopper([MaximumIterationStopper(1), NoopStopper()])
    assert isinstance(s, CombinedStopper) and s("a", r(1)) is True
    with pytest.raises(TypeError, match="`stop`"):
        as_stopper([MaximumIterationStopper(1), {"a": 1}])


@pytest.mark.parametrize("bad", [42, "training_iteration", 1.5])
def test_as_stopper_rejects_anything_else_naming_stop(bad):
    with pytest.raises(TypeError, match="`stop` must be None, a dict"):
        as_stopper(bad)


def test_as_stopper_rejects_a_stopper_lookalike_that_is_not_a_subclass():
    class Lookalike:
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return False

    with pytest.raises(ValueError, match="Stopper subclass"):
        as_stopper(Lookalike())
