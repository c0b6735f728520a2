"""``train.report()``, ``train.get_context()``, ``train.get_checkpoint()`` and
``train.get_dataset_shard()``: what a training worker says and knows about itself (its
ranks, the checkpoint it resumes from, its data shard) and the trial it belongs to.
Outside a worker or a Tune trial they raise, as Ray Train's do."""

from __future__ import annotations

from typing import Any, Dict, Optional

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


def _require_worker(api: str):
    """The running worker's (or Tune trial's) session; Ray's RuntimeError outside one."""
    session = _session._current()
    if session is None:
        raise RuntimeError(
            f"`{api}` cannot be used outside of a Ray Train training function. You are "
            "calling this API from the driver or another non-training process. These "
            "utilities are only available within a function launched by `trainer.fit()` "
            "(or inside a Tune trainable)."
        )
    return session


def get_context() -> TrainContext:
    """The context of the running training worker (or Tune trial): ranks, trial name/id,
    experiment name, storage.

    Raises:
        RuntimeError: called outside ``train_loop_per_worker`` (e.g. in the driver), as
            in Ray Train.

    Example::

        rank = train.get_context().get_world_rank()
    """
    return TrainContext(_require_worker("get_context"))


def get_checkpoint():
    """The checkpoint to resume from inside ``train_loop_per_worker``: None on a fresh
    start, the latest checkpoint after a restart (``FailureConfig(max_failures)``).

    Raises:
        RuntimeError: called outside ``train_loop_per_worker`` (e.g. in the driver), as
            in Ray Train (``tune.get_checkpoint()`` returns None there instead).

    Example::

        checkpoint = train.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as d:
                state = torch.load(os.path.join(d, "model.pt"))
    """
    return _require_worker("get_checkpoint").latest_checkpoint


def report(metrics: Dict[str, Any], *, checkpoint=None, **ignored) -> None:
    """Report rank ``metrics`` (and this rank's part of a ``checkpoint``) for this round;
    see ``tune.report`` for inside a Tune trial.

    Raises:
        RuntimeError: called outside ``train_loop_per_worker`` or a Tune trial, as in Ray
            Train.

    Example::

        train.report({"loss": loss}, checkpoint=train.Checkpoint.from_directory(d))
    """
    if ignored:
        _session.warn_ignored_keywords("report", ignored)
    _require_worker("report")
    _session.report(metrics, checkpoint=checkpoint)


def get_dataset_shard(dataset_name: Optional[str] = None) -> Any:
    """This worker's shard of a dataset passed as ``Trainer(datasets={name: data})``.

    Sequences (lists, tuples, arrays, anything sliceable) are split round-robin by world
    rank (``data[rank::world_size]``); other objects are returned whole.
    """
    session = _require_worker("get_dataset_shard")
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
