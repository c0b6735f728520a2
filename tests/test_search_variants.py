"""Variant generation and BasicVariantGenerator: grids, tags, sample_from, seeds, resume."""

import glob
import json
import os
import re
from pathlib import Path

import pytest

from tunelib.search import BasicVariantGenerator, grid_search
from tunelib.search import sample as tune
from tunelib.search.variant_generator import format_vars, generate_variants

FIXTURES = str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ray-2.60")


def drain(alg, prefix="t"):
    out, i = [], 0
    while not alg.is_finished():
        s = alg.next_suggestion(f"{prefix}{i}")
        assert s is not None
        out.append(s)
        alg.on_trial_complete(f"{prefix}{i}", {})
        i += 1
    return out


def make(param_space, num_samples=1, **kw):
    alg = BasicVariantGenerator(**kw)
    alg.set_search_properties(None, None, param_space)
    alg.add_configurations(param_space, num_samples)
    return alg


def test_grid_search_returns_ray_dict():
    assert grid_search((1, 2)) == {"grid_search": [1, 2]}


def test_num_samples_repeats_the_whole_grid():
    space = {"a": grid_search([1, 2]), "b": grid_search(["x", "y", "z"]), "c": tune.uniform(0, 1)}
    alg = make(space, num_samples=4, random_state=0)
    assert alg.total_samples == 24
    got = drain(alg)
    assert len(got) == 24
    combos = [(s.config["a"], s.config["b"]) for s in got]
    assert combos[:6] == [(1, "x"), (2, "x"), (1, "y"), (2, "y"), (1, "z"), (2, "z")]
    assert combos[6:12] == combos[:6]
    assert len({s.config["c"] for s in got}) == 24  # resampled for every grid point


@pytest.mark.skipif(not os.path.isdir(FIXTURES), reason="Ray fixtures not present")
def test_tags_match_ray_fixture_directory_names():
    pattern = re.compile(r"^.+_[0-9a-f]{5}_\d{5}_(.*?)_?\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d$")
    checked = 0
    for state_file in glob.glob(f"{FIXTURES}/*/experiment_state-*.json"):
        trials = [json.loads(t) for t, _ in json.load(open(state_file))["trial_data"]]
        trials.sort(key=lambda t: t["trial_id"])
        keys = list(trials[0]["evaluated_params"])
        space = {k: grid_search([t["evaluated_params"][k] for t in trials]) for k in keys}
        tags = [s.experiment_tag for s in drain(make(space))]
        for trial, tag in zip(trials, tags):
            assert tag == trial["experiment_tag"]
            assert pattern.match(trial["relative_logdir"]).group(1) == tag
            assert os.path.isdir(
                os.path.join(os.path.dirname(state_file), trial["relative_logdir"])
            )
            checked += 1
    assert checked >= 9


def test_tag_formats_floats_and_cleans_strings():
    assert format_vars({("lr",): 0.01, ("wd",): 0.0004}) == "lr=0.0100,wd=0.0004"
    assert format_vars({("m", "act"): "re lu/x", ("n",): 3}) == "act=re_lu_x,n=3"
    got = drain(make({"lr": grid_search([0.01]), "wd": tune.choice([0.0004])}, 4))
    assert got[3].experiment_tag == "3_lr=0.0100,wd=0.0004"


def test_evaluated_params_are_flat_and_only_searched_values():
    space = {"model": {"lr": tune.choice([0.1]), "depth": 3}, "opt": grid_search(["sgd"])}
    (s,) = drain(make(space))
    assert s.evaluated_params == {"model/lr": 0.1, "opt": "sgd"}
    assert s.config == {"model": {"lr": 0.1, "depth": 3}, "opt": "sgd"}
    assert s.experiment_tag == "0_lr=0.1000,opt=sgd"


def test_no_search_params_gives_bare_index_tag():
    got = drain(make({"epochs": 3}, num_samples=2))
    assert [s.experiment_tag for s in got] == ["0", "1"]
    assert got[0].evaluated_params == {}


def test_sample_from_reads_other_resolved_values_through_spec_config():
    space = {
        "a": tune.randint(5, 10),
        "double": tune.sample_from(lambda spec: spec.config.a * 2),
        "nested": {"b": tune.sample_from(lambda spec: spec["config"]["double"] + 1)},
        "direct": tune.sample_from(lambda config: config["a"] - 1),
    }
    for s in drain(make(space, num_samples=5, random_state=1)):
        c = s.config
        assert c["double"] == 2 * c["a"] and c["nested"]["b"] == c["double"] + 1
        assert c["direct"] == c["a"] - 1


def test_sample_from_sees_grid_values():
    space = {"n": grid_search([1, 2]), "m": tune.sample_from(lambda spec: spec.config.n * 10)}
    assert [s.config["m"] for s in drain(make(space))] == [10, 20]


def test_random_state_makes_runs_reproducible():
    space = {"x": tune.uniform(0, 1), "g": grid_search([1, 2]), "c": tune.choice("abc")}
    run = lambda seed: [s.config for s in drain(make(space, 3, random_state=seed))]  # noqa: E731
    assert run(42) == run(42)
    assert run(42) != run(43)


def test_constant_grid_search_keeps_random_values_over_the_grid():
    space = {"x": tune.uniform(0, 1), "g": grid_search([1, 2, 3])}
    got = drain(make(space, constant_grid_search=True, random_state=0))
    assert len({s.config["x"] for s in got}) == 1


def test_grid_values_may_hold_search_spaces():
    space = {"opt": grid_search([{"name": "sgd", "lr": tune.uniform(0, 1)}, {"name": "adam"}])}
    got = drain(make(space, random_state=0))
    assert got[0].config["opt"]["name"] == "sgd" and 0 <= got[0].config["opt"]["lr"] < 1
    assert "opt/lr" in got[0].evaluated_params and got[1].config["opt"] == {"name": "adam"}


def test_lists_are_resolved_elementwise():
    (s,) = drain(make({"layers": [tune.choice([8]), 16, grid_search([32])]}))
    assert s.config == {"layers": [8, 16, 32]}
    assert s.evaluated_params == {"layers/0": 8, "layers/2": 32}


def test_points_to_evaluate_replace_samples_as_ray():
    space = {"a": grid_search([1, 2]), "b": tune.randint(0, 3)}
    alg = make(space, 4, points_to_evaluate=[{"a": 2, "b": 2}, {"a": 1}, {"b": 2}], random_state=0)
    assert alg.total_samples == 6
    got = [s.config for s in drain(alg)]
    assert got[0] == {"a": 2, "b": 2}
    assert got[1]["a"] == 1
    assert got[2:4] == [{"a": 1, "b": 2}, {"a": 2, "b": 2}]
    assert [c["a"] for c in got[4:]] == [1, 2]


def test_point_to_evaluate_with_unknown_key_names_it():
    alg = make({"a": tune.uniform(0, 1)}, points_to_evaluate=[{"model": {"lr": 1}}])
    with pytest.raises(ValueError, match=r'param_space\["model"\]'):
        alg.next_suggestion("t0")


def test_infinite_num_samples_never_finishes_and_has_no_total():
    alg = make({"x": tune.uniform(0, 1)}, num_samples=-1)
    assert alg.total_samples is None
    for i in range(50):
        assert alg.next_suggestion(f"t{i}") is not None
    assert not alg.is_finished()


def test_max_concurrent_waits_for_completions():
    alg = make({"x": tune.uniform(0, 1)}, num_samples=3, max_concurrent=2)
    assert alg.next_suggestion("a") and alg.next_suggestion("b")
    assert alg.next_suggestion("c") is None and not alg.is_finished()
    alg.on_trial_complete("a", {"loss": 1})
    assert alg.next_suggestion("c") is not None
    assert alg.is_finished()


def test_save_and_restore_continues_without_repeating(tmp_path):
    space = {"g": grid_search([1, 2, 3]), "x": tune.uniform(0, 1)}
    full = [s.config for s in drain(make(space, 2, random_state=5))]

    alg = make(space, 2, random_state=5)
    first = [alg.next_suggestion(f"t{i}") for i in range(4)]
    alg.save_to_dir(str(tmp_path), "2026-01-01_00-00-00")
    assert os.path.exists(tmp_path / "basic-variant-state-2026-01-01_00-00-00.json")

    resumed = BasicVariantGenerator()
    assert resumed.has_checkpoint(str(tmp_path))
    resumed.restore_from_dir(str(tmp_path))
    resumed.add_configurations(space, 2)  # ignored after a restore
    rest = drain(resumed, prefix="r")
    assert [s.config for s in first] + [s.config for s in rest] == full
    assert rest[0].experiment_tag.startswith("4_")


def test_has_checkpoint_false_on_empty_dir(tmp_path):
    assert not BasicVariantGenerator().has_checkpoint(str(tmp_path))
    with pytest.raises(RuntimeError):
        BasicVariantGenerator().restore_from_dir(str(tmp_path))


def test_sample_from_with_lambda_survives_save(tmp_path):
    space = {"a": tune.randint(0, 5), "b": tune.sample_from(lambda spec: spec.config.a + 1)}
    alg = make(space, 3, random_state=0)
    alg.next_suggestion("t0")
    alg.save_to_dir(str(tmp_path))
    resumed = BasicVariantGenerator()
    resumed.restore_from_dir(str(tmp_path))
    rest = drain(resumed)
    assert len(rest) == 2 and all(s.config["b"] == s.config["a"] + 1 for s in rest)


# ---- bad input: one ValueError naming the parameter path ------------------------------


def test_grid_search_inside_sample_from_names_the_path():
    space = {"model": {"lr": tune.sample_from(lambda spec: grid_search([0.1, 0.2]))}}
    with pytest.raises(ValueError, match=r'param_space\["model"\]\["lr"\].*grid_search'):
        drain(make(space))


def test_empty_grid_search_names_the_path():
    with pytest.raises(ValueError, match=r'param_space\["opt"\]\["wd"\].*grid_search'):
        make({"opt": {"wd": grid_search([])}})


def test_invalid_domain_built_directly_names_the_path_and_allowed_values():
    from tunelib.search.domain import Categorical, Float

    with pytest.raises(ValueError, match=r'param_space\["model"\]\["lr"\].*lower.*upper'):
        make({"model": {"lr": Float(1.0, 0.5).uniform()}})
    with pytest.raises(ValueError, match=r'param_space\["act"\].*non-empty'):
        make({"act": Categorical([]).uniform()})
    bad_log = tune.loguniform(1e-3, 1.0)
    bad_log.lower = -1.0  # mutated after construction: caught when the space is resolved
    with pytest.raises(ValueError, match=r'param_space\["layers"\]\[1\].*> 0'):
        make({"layers": [1, bad_log]})


def test_invalid_domain_nested_in_grid_value_names_the_path():
    from tunelib.search.domain import Float

    with pytest.raises(ValueError, match=r'param_space\["opt"\]\[0\]\["lr"\]'):
        make({"opt": grid_search([{"lr": Float(2.0, 1.0).uniform()}])})


def test_failing_sample_from_names_the_path():
    space = {"a": {"b": tune.sample_from(lambda spec: 1 / 0)}}
    with pytest.raises(ValueError, match=r'param_space\["a"\]\["b"\].*ZeroDivisionError'):
        drain(make(space))


def test_cyclic_sample_from_is_a_clear_error():
    space = {
        "a": tune.sample_from(lambda spec: spec.config.b),
        "b": tune.sample_from(lambda spec: spec.config.a),
    }
    with pytest.raises(ValueError, match="depend"):
        drain(make(space))


def test_bad_num_samples_and_param_space():
    with pytest.raises(ValueError, match="num_samples"):
        make({}, num_samples=-2)
    with pytest.raises(TypeError, match="param_space"):
        make([1, 2])


def test_generate_variants_yields_path_tuples():
    out = list(generate_variants({"a": {"b": grid_search([1, 2])}}))
    assert [rv for rv, _ in out] == [{("a", "b"): 1}, {("a", "b"): 2}]
