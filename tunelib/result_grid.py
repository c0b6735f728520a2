"""ResultGrid: the Results of every trial of an experiment (``ray.tune.ResultGrid``).

Example::

    grid = tuner.fit()                       # or ResultGrid(ExperimentAnalysis(path))
    best = grid.get_best_result(metric="loss", mode="min")
    best.config, best.checkpoint
    grid.get_dataframe(filter_metric="loss", filter_mode="min")
    if grid.errors: ...
"""

from __future__ import annotations

from typing import List, Optional

import pandas as pd
import pyarrow.fs

from tunelib.analysis import ExperimentAnalysis
from tunelib.result import Result
from tunelib.trial import ERROR, TERMINATED, Trial

__all__ = ["ResultGrid"]


class ResultGrid:
    """A list of :class:`Result`, one per trial, plus experiment-wide queries.

    Args:
        experiment_analysis: the :class:`ExperimentAnalysis` of the experiment.

    Supports ``len(grid)``, ``grid[i]`` and iteration. Each Result is made when first
    asked for (an experiment of 10,000 trials is read back without making 10,000 frames).
    """

    def __init__(self, experiment_analysis: ExperimentAnalysis):
        self._experiment_analysis = experiment_analysis
        self._results: List[Optional[Result]] = [None] * len(experiment_analysis.trials)

    def _result(self, i: int) -> Result:
        result = self._results[i]
        if result is None:
            result = self._results[i] = self._trial_to_result(
                self._experiment_analysis.trials[i])
        return result

    @property
    def experiment_path(self) -> str:
        """The experiment directory, as a path on :attr:`filesystem`."""
        return self._experiment_analysis.experiment_path

    @property
    def filesystem(self) -> pyarrow.fs.FileSystem:
        """The ``pyarrow.fs.FileSystem`` holding the experiment."""
        return self._experiment_analysis._fs

    def get_best_result(
        self,
        metric: Optional[str] = None,
        mode: Optional[str] = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Result:
        """The Result of the best trial by ``metric``/``mode`` over ``scope``.

        Args:
            metric: the metric to compare; defaults to the Tuner's ``TuneConfig.metric``.
            mode: "min" or "max"; defaults to ``TuneConfig.mode``.
            scope: "last", "avg", "last-5-avg", "last-10-avg" or "all".
            filter_nan_and_inf: ignore trials whose score is NaN or infinite.

        Raises:
            ValueError: no metric/mode given and none set on the Tuner; bad mode/scope.
            RuntimeError: no trial reported ``metric``.
        """
        ea = self._experiment_analysis
        if len(ea.trials) == 1:
            return self._result(0)
        if not metric and not ea.default_metric:
            raise ValueError(
                "No metric is provided. Either pass in a `metric` arg to `get_best_result` "
                "or specify a metric in the `TuneConfig` of your `Tuner`."
            )
        if not mode and not ea.default_mode:
            raise ValueError(
                "No mode is provided. Either pass in a `mode` arg to `get_best_result` "
                "or specify a mode in the `TuneConfig` of your `Tuner`."
            )
        best_trial = ea.get_best_trial(
            metric=metric, mode=mode, scope=scope, filter_nan_and_inf=filter_nan_and_inf
        )
        if not best_trial:
            msg = (
                f"No best trial found for the given metric: {metric or ea.default_metric}. "
                "This means that no trial has reported this metric"
            )
            msg += (
                ", or all values reported for this metric are NaN. To not ignore NaN "
                "values, you can set the `filter_nan_and_inf` arg to False."
                if filter_nan_and_inf
                else "."
            )
            raise RuntimeError(msg)
        return self._result(ea.trials.index(best_trial))

    def get_dataframe(
        self,
        filter_metric: Optional[str] = None,
        filter_mode: Optional[str] = None,
    ) -> pd.DataFrame:
        """One row per trial: its last result, or its best by ``filter_metric``/``filter_mode``.

        Example::

            df = grid.get_dataframe(filter_metric="loss", filter_mode="min")
        """
        return self._experiment_analysis.dataframe(metric=filter_metric, mode=filter_mode)

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, i: int) -> Result:
        """The i'th Result."""
        if isinstance(i, slice):
            return [self._result(j) for j in range(*i.indices(len(self._results)))]
        return self._result(range(len(self._results))[i])

    def __iter__(self):
        return (self._result(i) for i in range(len(self._results)))

    @property
    def errors(self) -> List[Exception]:
        """The exceptions of the trials that ended in error."""
        return [result.error for i, t in enumerate(self._experiment_analysis.trials)
                if t.status == ERROR and (result := self._result(i)).error]

    @property
    def num_errors(self) -> int:
        """How many trials ended in ERROR."""
        return sum(1 for t in self._experiment_analysis.trials if t.status == ERROR)

    @property
    def num_terminated(self) -> int:
        """How many trials ended TERMINATED (finished without error)."""
        return sum(1 for t in self._experiment_analysis.trials if t.status == TERMINATED)

    def _trial_to_result(self, trial: Trial) -> Result:
        ea = self._experiment_analysis
        data = ea._trial_data(trial)
        return Result(
            metrics=dict(trial.last_result) if trial.last_result else {},
            checkpoint=data.latest_checkpoint,
            error=ea._error_for(trial),
            path=ea._trial_path(trial),
            metrics_dataframe=data.dataframe,
            best_checkpoints=list(data.checkpoints),
            _storage_filesystem=ea._fs,
        )

    def __repr__(self) -> str:
        inner = ",\n".join(result._repr(indent=2) for result in self)
        return f"ResultGrid<[\n{inner}\n]>"
