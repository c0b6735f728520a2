"""``PopulationBasedTrainingReplay``: train one trial along a finished PBT run's schedule.

PBT's result is a schedule of configs, not one config. With ``log_config=True`` (the
default) PBT writes each exploit to ``pbt_policy_<trial_id>.txt`` (one JSON list a line:
``[tag, donor tag, iteration, donor iteration, donor config, new config]``); this scheduler
reads such a file and, at each recorded iteration, pauses the trial (checkpointing it),
swaps in the recorded config and resumes it from that checkpoint — Ray's semantics.

Example::

    from tunelib.schedulers import PopulationBasedTrainingReplay
    replay = PopulationBasedTrainingReplay("~/ray_results/pbt_test/pbt_policy_a1b2c_00001.txt")
    tune.Tuner(train_fn, tune_config=tune.TuneConfig(scheduler=replay)).fit()
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tunelib.schedulers import _util
from tunelib.schedulers.pbt import _make_experiment_tag
from tunelib.schedulers.trial_scheduler import FIFOScheduler, SchedulerController, TrialScheduler
from tunelib.trial import Trial

logger = logging.getLogger(__name__)

TRAINING_ITERATION = "training_iteration"


def load_policy(policy_file: str) -> Tuple[Optional[Dict], List[Tuple[int, Dict]]]:
    """Read a PBT policy file into (initial config, [(iteration, config from then on)]).

    The file lists a trial's exploits oldest first, each one's donor history included;
    walking back from the last line, the chain of donors ends where a line's trial is
    not the next line's donor — older changes were overwritten by a later exploit.

    Example::

        initial, changes = load_policy("pbt_policy_a1b2c_00001.txt")
        # ({'lr': 0.01}, [(4, {'lr': 0.012}), (8, {'lr': 0.0096})])
    """
    raw_policy = []
    with open(policy_file, "rt") as fp:
        for row in fp.readlines():
            try:
                raw_policy.append(tuple(json.loads(row)))
            except json.JSONDecodeError:
                raise ValueError(f"Could not read PBT policy file: {policy_file}.") from None
    policy = []
    last_new_tag = None
    last_old_conf = None
    for old_tag, new_tag, _old_step, new_step, old_conf, new_conf in reversed(raw_policy):
        if last_new_tag and old_tag != last_new_tag:
            break
        last_new_tag = new_tag
        last_old_conf = old_conf
        policy.append((new_step, new_conf))
    return last_old_conf, list(reversed(policy))


class PopulationBasedTrainingReplay(FIFOScheduler):
    """Replays a Population Based Training run's schedule of configs on one trial.

    The scheduler accepts a single trial. It starts with the initial config of the
    replayed trial; when the trial's ``training_iteration`` reaches the next recorded
    change, the trial is paused with a checkpoint and resumed from it with the new
    config (its experiment tag becomes ``replay_<file>@perturbed[...]``).

    Args:
        policy_file: The PBT policy file, usually
            ``<storage_path>/<experiment>/pbt_policy_<trial_id>.txt``.

    Example::

        replay = PopulationBasedTrainingReplay("~/ray_results/pbt_test/pbt_policy_xxx.txt")
        tuner = tune.Tuner(MyTrainable, tune_config=tune.TuneConfig(scheduler=replay),
                           run_config=tune.RunConfig(stop={"training_iteration": 100}))
    """

    def __init__(self, policy_file: str):
        super().__init__()
        path = Path(policy_file).expanduser()
        if not path.exists():
            raise ValueError(f"Policy file not found: {path.as_posix()}")
        self.policy_file = path.as_posix()
        initial_config, self._policy = load_policy(self.policy_file)
        self.experiment_tag = f"replay_{os.path.basename(self.policy_file)}"
        self.config = initial_config
        self.current_config = self.config
        self._trial: Optional[Trial] = None
        self._current_step = 0
        self._num_perturbations = 0
        self._next_index = 0

    @property
    def _next_policy(self) -> Optional[Tuple[int, Dict]]:
        # an index, not Ray's iterator: the scheduler's state stays picklable
        if self._next_index < len(self._policy):
            return self._policy[self._next_index]
        return None

    def on_trial_add(self, tune_controller: SchedulerController, trial: Trial) -> None:
        if self._trial:
            raise ValueError(
                "More than one trial added to PBT replay run. This means the same schedule "
                "will be trained multiple times. Do you want to set `num_samples=1`?"
            )
        self._trial = trial
        if trial.config and self._policy:
            logger.warning(
                "Trial was initialized with a config, which was overwritten. "
                "Did you start the PBT replay with a `config` parameter?"
            )
        elif trial.config and not self._policy:
            self.config = trial.config  # no change recorded: train the given config
        elif not trial.config and not self._policy:
            raise ValueError(
                "No replay policy found and trial initialized without a valid config. Either "
                "pass a `param_space` to `tune.Tuner()` or consider not using PBT replay for "
                "this run."
            )
        trial.set_config(self.config)

    def on_trial_result(
        self, tune_controller: SchedulerController, trial: Trial, result: Dict
    ) -> str:
        if TRAINING_ITERATION not in result or self._next_policy is None:
            return TrialScheduler.CONTINUE
        step = result[TRAINING_ITERATION]
        self._current_step = step
        change_at, new_config = self._next_policy
        if step < change_at:
            return TrialScheduler.CONTINUE
        logger.info(
            "Population Based Training replay is now at step %s. Configuration will be "
            "changed to %s.",
            step,
            new_config,
        )
        # PAUSE checkpoints the trial at this result; it resumes from there with the new config
        trial.set_experiment_tag(_make_experiment_tag(self.experiment_tag, new_config, new_config))
        trial.set_config(new_config)
        self.current_config = new_config
        self._num_perturbations += 1
        self._next_index += 1
        return TrialScheduler.PAUSE

    def save(self, checkpoint_path: str) -> None:
        _util.pickle_state(self, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        _util.unpickle_state(self, checkpoint_path)

    def debug_string(self) -> str:
        return "PopulationBasedTraining replay: Step {}, perturb {}".format(
            self._current_step, self._num_perturbations
        )
