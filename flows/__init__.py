"""Prefect flows of tunelib: the experiment flow, the trial flow, and the recorder that
writes an experiment's story into Prefect (``flows.recorder.PrefectRecorder``).

Nothing is imported here, so ``import flows.recorder`` does not pull Prefect in before the
recorder's own thread needs it.
"""
