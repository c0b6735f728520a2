"""``tunelib.tune.progress_reporter``: the path of Ray's ``ray.tune.progress_reporter``.

tunelib prints its own progress lines (``verbose=0`` silences them); Ray's reporter
classes (``ProgressReporter``, ``CLIReporter``, ``JupyterNotebookReporter``) are not
provided yet, so importing them fails rather than returning look-alikes that print
nothing. Example::

    from tunelib.tune import progress_reporter   # the module exists
"""

__all__: list = []
