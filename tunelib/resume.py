"""Continuing an interrupted experiment: which saved trials run again, and from where.

The controller saves ``experiment_state-*.json`` every few seconds (and the search
algorithm's state beside it), so after a driver crash the newest state file says, for every
trial, its status, config and latest persisted checkpoint. ``load_trials`` turns it back
into ``Trial`` records, following Ray's ``ResumeConfig``: finished trials are kept as they
are, unfinished ones continue from their latest checkpoint, errored ones are skipped,
resumed or restarted from scratch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import List, Tuple

from tunelib import trial as T

SKIP, RESUME, RESTART = "skip", "resume", "restart"
_CHOICES = (SKIP, RESUME, RESTART)


@dataclass
class ResumePolicy:
    """What happens to each kind of saved trial (Ray's ResumeConfig)."""

    finished: str = SKIP
    unfinished: str = RESUME
    errored: str = SKIP

    def __post_init__(self):
        for name in ("finished", "unfinished", "errored"):
            value = str(getattr(self, name)).lower().rsplit(".", 1)[-1]
            if value not in _CHOICES:
                raise ValueError(f"ResumeConfig `{name}` must be one of {_CHOICES}, got {value!r}.")
            setattr(self, name, value)

    @classmethod
    def from_tuner_flags(cls, resume_unfinished: bool, resume_errored: bool,
                         restart_errored: bool) -> "ResumePolicy":
        errored = RESTART if restart_errored else RESUME if resume_errored else SKIP
        return cls(unfinished=RESUME if resume_unfinished else SKIP, errored=errored)


def load_trials(fs, experiment_path: str, policy: ResumePolicy) -> Tuple[List[T.Trial], str]:
    """The saved trials of the experiment at ``experiment_path``, made ready to continue;
    also returns the id prefix new trials must share."""
    from tunelib import _layout, storage

    state_file = _layout.find_experiment_state(fs, experiment_path)
    if state_file is None:
        raise ValueError(
            f"Cannot resume {storage.fs_uri(fs, experiment_path)!r}: no experiment_state-*.json "
            "there (was the experiment started by tunelib?)."
        )
    state = json.loads(storage.read_text(fs, state_file))
    trials = []
    for trial, _runtime in _layout.trials_from_state(state):
        action = _apply_policy(trial, policy)
        if action != SKIP and trial.dirname:
            _cut_back_appended_files(fs, storage.join(experiment_path, trial.dirname))
        if action == RESUME:
            _catch_up_with_storage(fs, storage.join(experiment_path, trial.dirname), trial)
        trials.append(trial)
    prefix = trials[0].trial_id.rsplit("_", 1)[0] if trials else ""
    return trials, prefix


def _cut_back_appended_files(fs, trial_path: str) -> None:
    """A trial that runs again appends to result.json and progress.csv: what a killed
    writer or a full disk left after their last complete line (row) goes first, so that
    no new line runs into it."""
    from tunelib import storage
    from tunelib._trial_writer import APPENDED_FILES, cut_back_to_complete_lines

    for name in APPENDED_FILES:
        cut_back_to_complete_lines(fs, storage.join(trial_path, name))


def _catch_up_with_storage(fs, trial_path: str, trial: T.Trial) -> None:
    """The state file is saved every few seconds; what the trial wrote after that is on
    storage. Resume from the newest checkpoint whose reporting row exists (the row is
    written after the checkpoint, so such a checkpoint is complete)."""
    from tunelib import _layout, _reader

    try:
        data = _reader.read_trial_dir(fs, trial_path, read_params=False)
    except (OSError, ValueError):
        return
    reported = [(c, m) for c, m in data.checkpoints if m.get("training_iteration") is not None]
    if data.last_result:  # its config as the trial's objects, not result.json's JSON view
        trial.last_result = _layout.exact_config_in(data.last_result, trial.config)
    if not reported:
        return
    names = [c.path.rstrip("/").rsplit("/", 1)[-1] for c, _ in data.checkpoints]
    newest, metrics = reported[-1]
    trial.checkpoint_dir_name = newest.path.rstrip("/").rsplit("/", 1)[-1]
    trial.checkpoint_progress = (int(metrics["training_iteration"]),
                                 float(metrics.get("time_total_s") or 0.0))
    by_name = dict(zip(names, (m for _, m in data.checkpoints)))
    trial.kept_checkpoints = [(name, by_name[name]) for name in names]
    trial.next_checkpoint_index = max(
        trial.next_checkpoint_index, _layout.checkpoint_index(names[-1]) + 1)


def _apply_policy(trial: T.Trial, policy: ResumePolicy) -> str:
    if trial.status == T.TERMINATED:
        action = policy.finished
    elif trial.status == T.ERROR:
        action = policy.errored
    else:  # RUNNING / PENDING / PAUSED when the driver stopped
        action = policy.unfinished
    if action == SKIP:
        if not trial.is_finished():
            trial.status = T.TERMINATED
        return action
    if action == RESTART:
        trial.checkpoint_dir_name = None
        trial.kept_checkpoints = []
        trial.checkpoint_progress = (0, 0.0)
        trial.last_result = {}
    trial.status = T.PENDING
    trial.error_msg = None
    return action
