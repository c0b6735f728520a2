"""``tunelib.tune.experiment``: Ray's ``ray.tune.experiment``: ``Experiment`` (the legacy
API's experiment specification) and ``Trial`` (defined in ``tunelib.trial``).

Example::

    from tunelib.tune.experiment import Experiment, Trial

    trials = tune.run_experiments(Experiment("exp", train_fn, config={"lr": 0.1}))
    assert all(isinstance(t, Trial) for t in trials)
"""

from tunelib.trial import Trial
from tunelib.tune.experiment.experiment import Experiment, _convert_to_experiment_list

__all__ = ["Experiment", "_convert_to_experiment_list", "Trial"]
