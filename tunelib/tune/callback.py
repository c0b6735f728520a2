"""``tunelib.tune.callback``: Ray's ``ray.tune.callback``.

Example::

    from tunelib.tune.callback import Callback

    class PrintResults(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            print(trial, result["training_iteration"])
"""

from tunelib.tune._wrappers import Callback

__all__ = ["Callback"]
