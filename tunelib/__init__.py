"""tunelib: the Ray Tune / Ray Train API on the Prefect workflow engine.

Use it as you use Ray::

    from tunelib import tune, train
"""

__version__ = "0.1.0"
