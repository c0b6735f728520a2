"""``train.get_context()`` and ``train.get_dataset_shard()``: what a training worker knows
about itself (its ranks) and the trial it belongs to."""

from __future__ import annotations

from typing import Any, Optional

from tunelib import session as _session


class TrainContext(_session.TuneContext):
    """The running training worker's context (Ray's ``ray.train.TrainContext``).

    Inside a data-parallel worker the rank methods give that worker's ranks; inside a
    plain Tune trial it is a world of one.

    Example::

        def train_loop_per_worker(config):
            ctx = train.get_context()
            print(ctx.get_world_rank(), "of", ctx.get_world_size(), ctx.get_trial_name())
    """


def get_context() -> TrainContext:
    """The context of the running training worker (or Tune trial): ranks, trial name/id,
    experiment name, storage.

    Example::

        rank = train.get_context().get_world_rank()
    """
    return TrainContext(_session._current())


def get_dataset_shard(dataset_name: Optional[str] = None) -> Any:
    """This worker's shard of a dataset passed as ``Trainer(datasets={name: data})``.

    Sequences (lists, tuples, arrays, anything sliceable) are split round-robin by world
    rank (``data[rank::world_size]``); other objects are returned whole.
    """
    session = _session._current()
    datasets = getattr(session, "datasets", None)
    if not datasets:
        raise RuntimeError(
            "`get_dataset_shard` found no datasets: pass `datasets={...}` to the trainer and "
            "call it from inside train_loop_per_worker."
        )
    if dataset_name is None:
        if len(datasets) != 1:
            raise ValueError(
                f"`dataset_name` is required when the trainer has several datasets "
                f"({sorted(datasets)})."
            )
        dataset_name = next(iter(datasets))
    if dataset_name not in datasets:
        raise KeyError(f"No dataset named {dataset_name!r}; the trainer has {sorted(datasets)}.")
    data = datasets[dataset_name]
    rank, size = session.world_rank, session.world_size
    try:
        return data[rank::size]
    except TypeError:
        return data
