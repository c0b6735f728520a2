"""The experiment's Prefect artifacts: a live leaderboard (versions under one key), a
progress artifact and learning curves on the experiment run; a metric table and checkpoint
links on each trial run.

Fast tests check what each artifact says and when the recorder writes it (pure modules, no
Prefect); the slow ones run real experiments and read the artifacts back through Prefect's
client as soon as fit() returns."""

from __future__ import annotations

import json
import os
import time

import pytest
from _prefect_reads import artifacts, experiment_runs

from tunelib._lifecycle import TrialOutcome
from tunelib.prefect._artifact_book import (
    PAUSED_WRITE_DELAY_S,
    ArtifactBook,
    Rewritten,
    Throttle,
)
from tunelib.prefect._artifact_content import (
    BEST_MARK,
    MAX_LEADERBOARD_ROWS,
    ExperimentInfo,
    TrialFolder,
    checkpoint_links,
    leaderboard,
    learning_curves,
    link_target,
    progress,
    trial_table,
)
from tunelib.prefect._svg_chart import Series, html_block, line_chart
from tunelib.prefect._trial_dirs import TrialDirs, match_folder
from tunelib.prefect._trial_metrics import EvenSample, Objective, TrialMetrics


def book_with(losses, metric="loss", mode="min", total=None, path=None, iterations=3):
    """A book where trial i reported ``iterations`` results ending at ``losses[i]``."""
    book = ArtifactBook()
    book.experiment_started("My Exp", {"metric": metric, "mode": mode, "total_trials": total,
                                       "experiment_path": path}, now=0.0)
    for i, loss in enumerate(losses):
        tid = f"t{i}"
        book.trial_started(tid, f"train_{i:05d}", {"lr": 0.1 * (i + 1), "net": {"width": 8}},
                           now=0.0)
        for it in range(1, iterations + 1):
            book.trial_result(tid, {"training_iteration": it, "loss": loss * iterations / it,
                                    "acc": 1 - loss, "config": {"lr": 0.1}, "pid": 7,
                                    "time_total_s": 0.5 * it})
    return book


def rows_of(body):
    return json.loads(body.data)


# --------------------------------------------------------------------------- what they say
def test_the_leaderboard_has_one_row_per_trial_best_first_and_marks_the_best():
    book = book_with([0.3, 0.1, 0.2])
    book.trial_finished("t1", TrialOutcome.TERMINATED)
    book.trial_finished("t2", TrialOutcome.STOPPED)
    body = leaderboard(book.info, list(book.trials.values()), "12:00:00")
    rows = rows_of(body)
    assert body.key == "my-exp-leaderboard" and body.kind == "table"
    assert [r["trial"] for r in rows] == ["train_00001", "train_00002", "train_00000"]
    assert [r["best"] for r in rows] == [BEST_MARK, "", ""]
    assert [r["status"] for r in rows] == ["TERMINATED", "STOPPED", "RUNNING"]
    assert list(rows[0])[:6] == ["rank", "best", "trial", "status", "iterations", "loss"]
    assert rows[0]["loss"] == 0.1 and rows[0]["acc"] == 0.9 and rows[0]["iterations"] == 3
    assert rows[0]["config/lr"] == 0.2 and rows[0]["config/net/width"] == 8
    assert "pid" not in rows[0] and rows[0]["time_total_s"] == 1.5  # bookkeeping left out
    assert "Best: train_00001" in body.description and "loss = 0.1 (min)" in body.description


def test_the_leaderboard_sorts_by_max_and_puts_trials_without_the_metric_last():
    book = book_with([0.3, 0.1, 0.2], metric="acc", mode="max")
    book.trial_started("t3", "train_00003", {}, now=0.0)   # no result yet
    rows = rows_of(leaderboard(book.info, list(book.trials.values()), "now"))
    assert [r["trial"] for r in rows] == ["train_00001", "train_00002", "train_00000",
                                          "train_00003"]
    assert rows[-1]["acc"] is None and rows[-1]["status"] == "RUNNING"


def test_without_a_metric_the_leaderboard_is_in_start_order_and_marks_no_best():
    book = book_with([0.3, 0.1], metric=None, mode=None)
    body = leaderboard(book.info, list(book.trials.values()), "now")
    assert [r["trial"] for r in rows_of(body)] == ["train_00000", "train_00001"]
    assert all(r["best"] == "" for r in rows_of(body))
    assert "No metric and mode set" in body.description


def test_the_leaderboard_is_capped_and_says_so():
    book = book_with([float(i) for i in range(MAX_LEADERBOARD_ROWS + 5)], iterations=1)
    body = leaderboard(book.info, list(book.trials.values()), "now")
    assert len(rows_of(body)) == MAX_LEADERBOARD_ROWS
    assert f"The best {MAX_LEADERBOARD_ROWS} of {MAX_LEADERBOARD_ROWS + 5}" in body.description


def test_progress_counts_finished_trials_of_the_total_or_of_those_started():
    book = book_with([0.3, 0.1, 0.2], total=6)
    book.trial_finished("t0", TrialOutcome.TERMINATED)
    book.trial_paused("t1", now=1.0)
    body = progress(book.info, list(book.trials.values()))
    assert body.kind == "progress" and body.key == "my-exp-progress" and body.data == 16.7
    assert "1 of 6 trials finished · 1 running, 1 paused" in body.description
    unknown = progress(book_with([0.3, 0.1]).info, list(book_with([0.3, 0.1]).trials.values()))
    assert unknown.data == 0.0 and "not known in advance" in unknown.description


def test_a_trials_table_has_a_row_per_result_iteration_first_and_a_chart():
    book = book_with([0.1], iterations=4)
    body = trial_table(book.info, book.trials["t0"], book.curve_key)
    rows = rows_of(body)
    assert body.key == "my-exp-t0-metrics" and body.kind == "table"
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == ["training_iteration", "loss", "acc", "time_total_s"]
    assert rows[1]["loss"] == 0.2
    assert "train_00000" in body.description and "<svg" in body.description


def test_long_trials_keep_evenly_spaced_rows_and_the_latest():
    sample = EvenSample(4)
    for i in range(10):
        sample.add(i)
    assert sample.items() == [0, 4, 8, 9] and sample.stride == 4
    book = book_with([0.1], iterations=2500)
    body = trial_table(book.info, book.trials["t0"], book.curve_key)
    its = [r["training_iteration"] for r in rows_of(body)]
    assert len(its) <= 1001 and its[0] == 1 and its[-1] == 2500
    assert len({b - a for a, b in zip(its, its[1:-1])}) == 1   # evenly spaced
    assert f"{len(its)} of 2500 results shown" in body.description


def checkpointed(losses_by_iteration, mode="min"):
    book = ArtifactBook()
    book.experiment_started("exp", {"metric": "loss", "mode": mode}, now=0.0)
    book.trial_started("t0", "train_00000", {}, now=0.0)
    for it, loss in enumerate(losses_by_iteration, 1):
        book.trial_result("t0", {"training_iteration": it, "loss": loss,
                                 "checkpoint_dir_name": f"checkpoint_{it - 1:06d}"})
    return book


def test_checkpoint_links_point_at_the_latest_and_the_best_checkpoint():
    book = checkpointed([0.5, 0.1, 0.3])
    folder = TrialFolder("/r/exp/train_00000_0_2026", ["checkpoint_000000", "checkpoint_000001",
                                                       "checkpoint_000002"])
    body = checkpoint_links(book.info, book.trials["t0"], folder)
    assert body.key == "exp-t0-checkpoints" and body.kind == "markdown"
    assert "**Latest**: [checkpoint_000002](<file:///r/exp/train_00000_0_2026/checkpoint_000002>)" \
        in body.data
    assert "**Best by loss (min)**: [checkpoint_000001]" in body.data and "loss = 0.1" in body.data


def test_the_best_checkpoint_is_one_still_on_storage():
    book = checkpointed([0.5, 0.1, 0.3])
    folder = TrialFolder("s3://b/exp/t", ["checkpoint_000002"])   # retention deleted 0 and 1
    body = checkpoint_links(book.info, book.trials["t0"], folder)
    assert "**Best by loss (min)**: the latest one" in body.data
    assert "s3://b/exp/t/checkpoint_000002" in body.data


def test_checkpoint_links_without_the_trial_folder_name_the_checkpoints():
    book = checkpointed([0.5])
    body = checkpoint_links(book.info, book.trials["t0"], TrialFolder(None))
    assert "`checkpoint_000000` (in the trial's folder)" in body.data
    assert checkpoint_links(book_with([0.1]).info, book_with([0.1]).trials["t0"],
                            TrialFolder(None)) is None   # no checkpoint reported: no links


def test_link_targets_are_urls():
    assert link_target("/a b/c") == "file:///a%20b/c"
    assert link_target("s3://bucket/x y") == "s3://bucket/x%20y"


def test_learning_curves_draw_every_trial_with_the_best_emphasised_and_name_the_cli():
    book = book_with([0.3, 0.1], path="/r/my exp")
    body = learning_curves(book.info, list(book.trials.values()), book.curve_key)
    assert body.key == "my-exp-curves" and body.kind == "markdown"
    assert "<div>\n<svg" in body.data and "train_00000" in body.data
    assert f"{BEST_MARK} train_00001" in body.data
    assert "`tunelib plot '/r/my exp' --metric loss --mode min`" in body.data
    assert learning_curves(book.info, [], None) is None


def test_the_chart_is_one_line_of_svg_without_style_attributes():
    svg = line_chart([Series("a<b", [(1, 1.0), (2, 0.5)], emphasis=True),
                      Series("c", [(1, 2.0)])], x_label="it", y_label="loss", title="t")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "\n" not in svg and "style=" not in svg and "a&lt;b" in svg
    assert "<polyline" in svg and "<circle" in svg     # a one-point series is a dot
    assert html_block(svg) == f"<div>\n{svg}\n</div>"


# --------------------------------------------------------------------------- when they are written
def test_the_leaderboard_waits_two_seconds_for_trial_changes_and_thirty_for_results():
    book = book_with([0.1])
    assert book.due(1.9, caught_up=True) == []
    assert Rewritten.LEADERBOARD in book.due(2.0, caught_up=True)
    book.taken(Rewritten.LEADERBOARD, 2.0)
    book.trial_result("t0", {"training_iteration": 4, "loss": 0.01})
    assert Rewritten.LEADERBOARD not in book.due(20.0, caught_up=True)
    assert Rewritten.LEADERBOARD in book.due(32.0, caught_up=True)


def test_rewrites_wait_for_the_writer_to_catch_up_unless_it_never_does():
    throttle = Throttle(2.0, 30.0)
    throttle.mark(urgent=True)
    assert not throttle.due(5.0, age=5.0, caught_up=False)
    assert throttle.due(5.0, age=5.0, caught_up=True)
    assert throttle.due(20.0, age=20.0, caught_up=False)    # ten intervals


def test_rewrites_slow_down_with_the_experiments_age_and_their_cost():
    throttle = Throttle(2.0, 30.0, age_fraction=0.01, cost_factor=25.0)
    throttle.mark(urgent=True)
    assert throttle.interval(age=1000.0) == 10.0
    throttle.last_cost = 0.4
    assert throttle.interval(age=0.0) == 10.0


def test_a_trials_artifacts_are_claimed_once_when_it_ends():
    book = book_with([0.1])
    book.trial_finished("t0", TrialOutcome.TERMINATED)
    assert book.claim_trial_write("t0") and not book.claim_trial_write("t0")
    assert book.unwritten_trials() == []           # its write is under way
    book.trial_written("t0", book.trials["t0"].results.seen)
    assert book.unwritten_trials() == [] and book.trials["t0"].results.kept == []  # let go


def test_a_paused_trials_artifacts_are_written_after_a_while_unless_it_resumes():
    book = book_with([0.1, 0.2])
    book.trial_paused("t0", now=100.0)
    book.trial_paused("t1", now=100.0)
    book.trial_started("t1", "train_00001", None, now=101.0)     # resumed quickly
    assert book.trials_due(100.0 + PAUSED_WRITE_DELAY_S - 0.1) == []
    assert book.trials_due(100.0 + PAUSED_WRITE_DELAY_S) == ["t0"]
    assert book.trials_due(200.0) == []


def test_trials_of_an_earlier_run_join_the_leaderboard_from_the_summary_rows():
    book = book_with([0.2])
    book.summary_rows([{"trial": "train_00000", "status": "TERMINATED", "loss": 0.2},
                       {"trial": "old_00009", "status": "TERMINATED", "iterations": 7,
                        "loss": 0.05}])
    rows = rows_of(leaderboard(book.info, list(book.trials.values()), "now"))
    assert [(r["trial"], r["iterations"], r["best"]) for r in rows] == [
        ("old_00009", 7, BEST_MARK), ("train_00000", 3, "")]
    assert book.unwritten_trials() == ["t0"]       # nothing of its own to write for the old one


def test_trial_folders_are_found_by_name_under_the_experiment(tmp_path):
    exp = tmp_path / "exp"
    (exp / "train_00001_1_lr=0.2_2026-11-29_10-00-00" / "checkpoint_000003").mkdir(parents=True)
    (exp / "train_000010_0_lr=0.1_2026-11-29_10-00-00").mkdir()
    dirs = TrialDirs(str(exp))
    folder = dirs.folder("train_00001")
    assert folder.uri == str(exp / "train_00001_1_lr=0.2_2026-11-29_10-00-00")
    assert folder.checkpoints == ["checkpoint_000003"]
    assert dirs.folder("train_00002") == TrialFolder(None) and dirs.listings == 2
    assert TrialDirs(None).folder("x") == TrialFolder(None)
    assert match_folder("f_1", ["f_1", "f_10_x"]) == "f_1"


def test_the_objective_ignores_bools_and_nan():
    goal = Objective("loss", "min")
    assert goal.value({"loss": True}) is None and goal.value({"loss": float("nan")}) is None
    assert goal.better(0.1, None) and not goal.better(None, 0.1)
    tm = TrialMetrics("t", "t", 0)
    assert tm.value(goal) is None and tm.iterations == 0


def test_experiment_info_reads_the_controllers_parameters():
    info = ExperimentInfo.from_parameters("e", {"metric": "m", "mode": "max", "total_trials": 0,
                                                "experiment_path": "/r/e"})
    assert info.goal == Objective("m", "max") and info.total is None and info.path == "/r/e"


# --------------------------------------------------------------------------- end to end
def _trainable(config):
    import tempfile

    from tunelib import tune

    for i in range(config["iters"]):
        time.sleep(config["sleep"])
        metrics = {"loss": config["lr"] / (i + 1), "acc": 1 - config["lr"] / (i + 1)}
        if i % 2 == 1:
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "w.txt"), "w") as f:
                    f.write(str(i))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)


def run_experiment(name, storage_dir, sleep=0.25):
    from tunelib import tune

    return tune.Tuner(
        _trainable,
        param_space={"lr": tune.grid_search([0.3, 0.1, 0.2, 0.4]), "iters": 6, "sleep": sleep},
        tune_config=tune.TuneConfig(metric="loss", mode="min", max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=storage_dir, verbose=0),
    ).fit()


@pytest.mark.slow
def test_a_real_experiment_has_a_leaderboard_progress_and_curves(prefect_server, storage_dir):
    grid = run_experiment("artifacts-exp", storage_dir)
    runs = experiment_runs(prefect_server, "artifacts-exp")
    [exp] = runs["experiment"]
    arts = artifacts(prefect_server, flow_run_id={"any_": [str(exp.id)]})
    by_key = {}
    for a in arts:
        by_key.setdefault(a.key, []).append(a)
    assert set(by_key) == {"artifacts-exp-leaderboard", "artifacts-exp-progress",
                           "artifacts-exp-curves"}

    versions = by_key["artifacts-exp-leaderboard"]
    rows = json.loads(versions[0].data)                 # the newest: the final one
    best = grid.get_best_result()
    best_name = next(r["trial"] for r in rows if r["best"] == BEST_MARK)
    assert best_name.endswith(best.metrics["trial_id"])
    assert len(rows) == 4 and [r["config/lr"] for r in rows] == [0.1, 0.2, 0.3, 0.4]
    assert rows[0]["loss"] == pytest.approx(best.metrics["loss"], rel=1e-5)
    assert all(r["status"] == "TERMINATED" and r["iterations"] == 6 for r in rows)

    [prog] = by_key["artifacts-exp-progress"]          # updated in place: one artifact
    assert prog.type == "progress" and prog.data == 100.0
    assert "4 of 4 trials finished" in prog.description
    [curves] = by_key["artifacts-exp-curves"]
    assert "<svg" in curves.data and best_name in curves.data
    assert f"tunelib plot {storage_dir}/artifacts-exp --metric loss" in curves.data


@pytest.mark.slow
def test_each_trial_run_has_its_metric_table_and_checkpoint_links(prefect_server, storage_dir):
    grid = run_experiment("artifacts-trials", storage_dir, sleep=0.05)
    runs = experiment_runs(prefect_server, "artifacts-trials")
    assert len(runs["trial"]) == 4
    for fr in runs["trial"]:
        result = next(r for r in grid if fr.name.endswith(r.metrics["trial_id"]))
        arts = {a.key.rsplit("-", 1)[-1]: a
                for a in artifacts(prefect_server, flow_run_id={"any_": [str(fr.id)]})}
        assert set(arts) == {"metrics", "checkpoints"}
        table = json.loads(arts["metrics"].data)
        expected = result.metrics_dataframe
        assert [r["training_iteration"] for r in table] == list(expected["training_iteration"])
        assert [r["loss"] for r in table] == pytest.approx(list(expected["loss"]), rel=1e-5)
        links = arts["checkpoints"].data
        latest = os.path.basename(result.checkpoint.path)
        assert f"**Latest**: [{latest}]" in links and result.path in links
        assert "**Best by loss (min)**: the latest one" in links   # the loss keeps falling


@pytest.mark.slow
def test_the_leaderboard_keeps_a_version_per_rewrite(prefect_server):
    """Trials ending seconds apart: the leaderboard is rewritten as they end (a new version
    under its key each time), the progress artifact is updated in place."""
    from tunelib.prefect import create_recorder

    rec = create_recorder(api_url=prefect_server, window=0.2)
    rec.experiment_started("versions", {"metric": "loss", "mode": "min", "total_trials": 3}, [])
    for i in range(3):
        rec.trial_started(f"t{i}", f"train_{i}", {"lr": i}, 0, 0)
    for i in range(3):
        for it in range(1, 4):
            rec.trial_result(f"t{i}", {"training_iteration": it, "loss": (i + 1) / it})
        rec.trial_finished(f"t{i}", TrialOutcome.TERMINATED)
        time.sleep(2.6)
    rec.experiment_finished("COMPLETED", [])
    assert rec.close(60) == []
    versions = artifacts(prefect_server, key={"any_": ["versions-leaderboard"]})
    assert len(versions) >= 3
    finished = [sum(r["status"] == "TERMINATED" for r in json.loads(v.data))
                for v in reversed(versions)]
    assert finished == sorted(finished) and finished[-1] == 3
    [prog] = artifacts(prefect_server, key={"any_": ["versions-progress"]})
    assert prog.data == 100.0
