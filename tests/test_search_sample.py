"""Search-space primitives: bounds, quantisation, log scale, seeds, bad input."""

import math

import numpy as np
import pytest

from tunelib.search import sample as tune
from tunelib.search.domain import Categorical, Float, Function, Integer

N = 2000


def draw(domain, seed=0, n=N):
    return np.asarray(domain.sample(size=n, random_state=seed))


def test_uniform_stays_in_bounds_and_covers_them():
    xs = draw(tune.uniform(2.0, 3.0))
    assert xs.min() >= 2.0 and xs.max() < 3.0
    assert xs.min() < 2.05 and xs.max() > 2.95


def test_single_sample_is_a_python_scalar():
    assert isinstance(tune.uniform(0, 1).sample(random_state=0), float)
    assert isinstance(tune.randint(0, 5).sample(random_state=0), int)
    assert isinstance(tune.qrandint(0, 10, 2).sample(random_state=0), int)


def test_quniform_values_are_multiples_of_q_with_inclusive_upper():
    xs = draw(tune.quniform(0.0, 1.0, 0.25))
    assert set(np.round(xs, 10)) == {0.0, 0.25, 0.5, 0.75, 1.0}


def test_loguniform_is_uniform_in_log_space():
    xs = draw(tune.loguniform(1e-4, 1e-1), n=4000)
    assert xs.min() >= 1e-4 and xs.max() < 1e-1
    decades = np.floor(np.log10(xs)).astype(int)
    counts = np.bincount(decades + 4)
    assert len(counts) == 3 and counts.min() > 0.27 * len(xs)  # ~1/3 in each decade


def test_qloguniform_rounds_to_q():
    xs = draw(tune.qloguniform(1e-3, 1.0, 1e-3))
    assert np.allclose(np.round(xs / 1e-3), xs / 1e-3)
    assert xs.min() >= 1e-3 and xs.max() <= 1.0


def test_randint_upper_is_exclusive():
    assert set(draw(tune.randint(1, 5)).tolist()) == {1, 2, 3, 4}


def test_qrandint_upper_is_inclusive_for_q_above_one():
    assert set(draw(tune.qrandint(16, 64, 16)).tolist()) == {16, 32, 48, 64}


def test_qrandint_with_q_one_is_upper_exclusive():
    assert set(draw(tune.qrandint(0, 3, 1)).tolist()) == {0, 1, 2}


def test_lograndint_favours_small_values():
    xs = draw(tune.lograndint(1, 1000), n=4000)
    assert xs.min() >= 1 and xs.max() < 1000
    assert np.mean(xs < 32) > 0.4  # half the log range lies below ~31.6


def test_qlograndint_multiples_of_q_within_bounds():
    xs = draw(tune.qlograndint(4, 64, 4))
    assert set(xs.tolist()) <= set(range(4, 65, 4)) and (xs % 4 == 0).all()


def test_randn_mean_and_sd():
    xs = draw(tune.randn(3.0, 0.5), n=5000)
    assert abs(xs.mean() - 3.0) < 0.05 and abs(xs.std() - 0.5) < 0.05


def test_qrandn_is_quantized():
    xs = draw(tune.qrandn(0.0, 1.0, 0.5))
    assert np.allclose(xs * 2, np.round(xs * 2))


def test_choice_keeps_value_types():
    values = set(map(repr, draw(tune.choice([1, "a", None]), n=200).tolist()))
    assert values == {"1", "'a'", "None"}


def test_same_seed_same_samples_for_int_generator_and_randomstate():
    d = tune.uniform(0, 1)
    assert d.sample(size=5, random_state=7).tolist() == d.sample(size=5, random_state=7).tolist()
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert d.sample(size=3, random_state=g1).tolist() == d.sample(size=3, random_state=g2).tolist()
    r1, r2 = np.random.RandomState(3), np.random.RandomState(3)
    assert (
        tune.randint(0, 100).sample(size=3, random_state=r1).tolist()
        == tune.randint(0, 100).sample(size=3, random_state=r2).tolist()
    )


def test_sample_from_without_arguments():
    assert tune.sample_from(lambda: 42).sample() == 42


def test_domain_classes_are_ray_names():
    assert isinstance(tune.uniform(0, 1), Float)
    assert isinstance(tune.randint(0, 2), Integer)
    assert isinstance(tune.choice([1]), Categorical)
    assert isinstance(tune.sample_from(lambda: 1), Function)
    assert Float(0, 1).is_valid(0.5) and not Float(0, 1).is_valid(2)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: tune.choice([]), ["choice", "non-empty"]),
        (lambda: tune.uniform(1, 0), ["uniform", "lower", "upper"]),
        (lambda: tune.uniform(1, 1), ["lower", "less than"]),
        (lambda: tune.randint(5, 5), ["randint", "lower", "upper"]),
        (lambda: tune.loguniform(0, 1), ["loguniform", "lower", "> 0"]),
        (lambda: tune.loguniform(-1, 1), ["loguniform", "> 0"]),
        (lambda: tune.lograndint(0, 10), ["lograndint", "> 0"]),
        (lambda: tune.quniform(0, 1, 0), ["quniform", "q", "> 0"]),
        (lambda: tune.qrandint(0, 10, -2), ["qrandint", "q", "> 0"]),
        (lambda: tune.qloguniform(1e-3, 1, -1), ["q", "> 0"]),
        (lambda: tune.qrandn(0, 1, 0), ["q", "> 0"]),
        (lambda: tune.randn(0, 0), ["randn", "sd"]),
        (lambda: tune.quniform(0.05, 1, 0.1), ["multiple", "q=0.1"]),
        (lambda: tune.sample_from({"grid_search": [1, 2]}), ["grid_search", "sample_from"]),
    ],
)
def test_bad_domains_raise_one_clear_value_error(make, words):
    with pytest.raises(ValueError) as info:
        make()
    for word in words:
        assert word in str(info.value)


def test_base_argument_is_deprecated_but_accepted():
    with pytest.warns(DeprecationWarning):
        d = tune.loguniform(1e-3, 1, base=10)
    assert 1e-3 <= d.sample(random_state=0) < 1


def test_int_seed_wrapper_is_picklable():
    import pickle

    from tunelib.search.domain import _BackwardsCompatibleNumpyRng

    rng = _BackwardsCompatibleNumpyRng(5)
    clone = pickle.loads(pickle.dumps(rng))
    assert rng.uniform(0, 1) == clone.uniform(0, 1)
    assert math.isfinite(_BackwardsCompatibleNumpyRng(None).uniform(0, 1))
