"""``tunelib.tune.callback``: Ray's ``ray.tune.callback`` (defined in ``tunelib._callbacks``).

Example::

    from tunelib.tune.callback import Callback

    class PrintResults(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            print(trial, result["training_iteration"])
"""

from tunelib._callbacks import Callback, CallbackList

__all__ = ["Callback", "CallbackList"]
