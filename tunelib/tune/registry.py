"""``tunelib.tune.registry``: Ray's ``ray.tune.registry`` (defined in ``tunelib.registry``).

Example::

    from tunelib.tune.registry import register_trainable

    register_trainable("lambda_id", lambda config: tune.report({"score": 1}))
    tune.run("lambda_id")
"""

from tunelib.registry import register_trainable

__all__ = ["register_trainable"]
