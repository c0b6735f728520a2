"""The interface the experiment controller drives: ``SearchAlgorithm`` and its ``Suggestion``.

Ray's ``SearchAlgorithm.next_trial()`` returns a ``Trial``; here the controller owns trials,
so ``next_suggestion(trial_id)`` returns the config, the evaluated params and the tag.

Example::

    alg = BasicVariantGenerator()
    alg.set_search_properties("loss", "min", param_space)
    alg.add_configurations(param_space, num_samples=4)
    while not alg.is_finished():
        s = alg.next_suggestion(trial_id)
        if s is None:
            break           # nothing now (e.g. concurrency limit): ask again later
        ...                 # run a trial with s.config; on_trial_result / on_trial_complete
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


@dataclass
class Suggestion:
    """One trial's worth of search output.

    Example::

        Suggestion(config={"lr": 0.01}, evaluated_params={"lr": 0.01}, experiment_tag="1_lr=0.0100")
    """

    config: dict
    """Fully resolved config for the trial."""
    evaluated_params: dict
    """Flattened ``"a/b" -> value`` of the sampled/grid params only."""
    experiment_tag: str
    """E.g. ``"3_lr=0.0100,wd=0.0004"``: index prefix and formatted params, as Ray."""


class SearchAlgorithm:
    """Interface for hyperparameter search driven by the experiment controller.

    Call order: ``set_search_properties`` (optional), ``add_configurations``, then
    ``next_suggestion`` while ``not is_finished()``, reporting results back with
    ``on_trial_result`` / ``on_trial_complete``. To resume: ``restore_from_dir`` instead of
    ``add_configurations`` (a later ``add_configurations`` is then ignored).

    Example::

        class Fixed(SearchAlgorithm):
            def add_configurations(self, param_space, num_samples):
                self._left = [param_space]
            def next_suggestion(self, trial_id):
                if not self._left:
                    self.set_finished(); return None
                return Suggestion(self._left.pop(), {}, "0")
    """

    _finished = False
    _metric = None

    @property
    def metric(self) -> Optional[str]:
        """The metric being optimised, if known."""
        return self._metric

    def set_search_properties(
        self, metric: Optional[str], mode: Optional[str], config: Dict, **spec
    ) -> bool:
        """Pass metric, mode and the param space; True if the algorithm took them.

        Example::

            alg.set_search_properties("loss", "min", {"lr": tune.uniform(0, 1)})
        """
        if self._metric and metric:
            return False
        if metric:
            self._metric = metric
        return True

    @property
    def total_samples(self) -> Optional[int]:
        """Number of trials when known in advance (grid x num_samples), else None."""
        return 0

    def add_configurations(self, param_space: Dict, num_samples: int) -> None:
        """Register the param space to search; ``num_samples == -1`` means no limit.

        Example::

            alg.add_configurations({"lr": tune.uniform(0, 1)}, num_samples=10)
        """
        raise NotImplementedError

    def next_suggestion(self, trial_id: str) -> Optional[Suggestion]:
        """The next config for trial ``trial_id``, or None if there is none right now.

        Example::

            s = alg.next_suggestion("a1b2c_00000")
        """
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        """An intermediate result of a running trial.

        Example::

            alg.on_trial_result("a1b2c_00000", {"loss": 0.3, "training_iteration": 1})
        """

    def on_trial_complete(
        self, trial_id: str, result: Optional[Dict] = None, error: bool = False
    ) -> None:
        """A trial ended: ``result`` is its last result (None if unknown), ``error`` if it failed.

        Example::

            alg.on_trial_complete("a1b2c_00000", {"loss": 0.2})
        """

    def is_finished(self) -> bool:
        """True when no more suggestions will ever come.

        Example::

            while not alg.is_finished(): ...
        """
        return self._finished

    def set_finished(self) -> None:
        """Mark the search as finished."""
        self._finished = True

    def has_checkpoint(self, dirpath: str) -> bool:
        """Whether ``dirpath`` holds a state saved by :meth:`save_to_dir`.

        Example::

            if alg.has_checkpoint(exp_dir): alg.restore_from_dir(exp_dir)
        """
        return False

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        """Save the search state into ``dirpath`` (one file per ``session_str``).

        Example::

            alg.save_to_dir(exp_dir, session_str="2026-11-23_08-44-53")
        """

    def restore_from_dir(self, dirpath: str) -> None:
        """Restore the newest state saved in ``dirpath``; the search then continues.

        Example::

            alg.restore_from_dir(exp_dir)
        """
