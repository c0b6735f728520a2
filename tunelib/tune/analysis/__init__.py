"""``tunelib.tune.analysis``: Ray's ``ray.tune.analysis`` (the reader is ``tunelib.analysis``).

Example::

    from tunelib.tune.analysis import ExperimentAnalysis

    analysis = ExperimentAnalysis("~/ray_results/my_exp", default_metric="loss", default_mode="min")
"""

from tunelib.analysis import ExperimentAnalysis

__all__ = ["ExperimentAnalysis"]
