"""Ray Train's ScalingConfig and the errors ``Trainer.fit()`` raises."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from tunelib._validation import check_class_keywords

_PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _visible_gpus() -> list:
    from tunelib.runner import _detect_gpus

    return _detect_gpus()


@check_class_keywords
@dataclass
class ScalingConfig:
    """How many training workers a trainer runs, and what each one gets.

    Args:
        trainer_resources: resources of the coordinating process (default: none).
        num_workers: how many data-parallel worker processes (>= 1).
        use_gpu: give each worker one GPU (NCCL process group); needs a visible GPU.
        resources_per_worker: e.g. ``{"CPU": 2}``; defaults to 1 CPU (+1 GPU with use_gpu).
        placement_strategy: accepted for compatibility ("PACK", "SPREAD", ...); every
            worker runs on this machine.

    Example::

        ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1})
    """

    trainer_resources: Optional[dict] = None
    num_workers: Union[int, Tuple[int, int]] = 1
    use_gpu: bool = False
    resources_per_worker: Optional[Dict] = None
    placement_strategy: str = "PACK"
    accelerator_type: Optional[str] = None
    label_selector: Any = None
    use_tpu: bool = False
    topology: Optional[str] = None
    elastic_resize_monitor_interval_s: float = 60.0

    def __post_init__(self):
        if isinstance(self.num_workers, tuple):
            raise ValueError(
                f"`num_workers` must be a positive integer; elastic ranges such as "
                f"{self.num_workers!r} are not supported by tunelib."
            )
        if (not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool)
                or self.num_workers < 1):
            raise ValueError(
                f"`num_workers` must be an integer >= 1, got {self.num_workers!r}."
            )
        if not isinstance(self.use_gpu, bool):
            raise TypeError(f"`use_gpu` must be True or False, got {self.use_gpu!r}.")
        if self.use_tpu:
            raise ValueError("`use_tpu=True` is not supported by tunelib (no TPU backend).")
        if self.placement_strategy not in _PLACEMENT_STRATEGIES:
            raise ValueError(
                f"`placement_strategy` must be one of {_PLACEMENT_STRATEGIES}, "
                f"got {self.placement_strategy!r}."
            )
        for name in ("trainer_resources", "resources_per_worker"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise TypeError(f"`{name}` must be a dict such as {{'CPU': 1}}, got {value!r}.")
            for key, amount in value.items():
                if (not isinstance(amount, (int, float)) or isinstance(amount, bool)
                        or amount < 0):
                    raise ValueError(
                        f"`{name}[{key!r}]` must be a non-negative number, got {amount!r}."
                    )
        if self.use_gpu:
            gpus = _visible_gpus()
            needed = self.num_workers * self._per_worker("gpu", 1.0)
            if not gpus:
                raise ValueError(
                    "`use_gpu=True` but no GPU is visible on this machine (nvidia-smi found "
                    "none and CUDA_VISIBLE_DEVICES is empty or unset). Use `use_gpu=False` to "
                    "train on CPU."
                )
            if needed > len(gpus):
                raise ValueError(
                    f"`use_gpu=True` with num_workers={self.num_workers} needs {needed:g} GPUs "
                    f"but only {len(gpus)} are visible."
                )

    def _per_worker(self, key: str, default: float) -> float:
        for name, amount in (self.resources_per_worker or {}).items():
            if name.lower() == key:
                return float(amount)
        return default

    @property
    def num_cpus_per_worker(self) -> float:
        return self._per_worker("cpu", 1.0)

    @property
    def num_gpus_per_worker(self) -> float:
        return self._per_worker("gpu", 1.0 if self.use_gpu else 0.0)

    def _trial_resources(self) -> Dict[str, float]:
        """The resources one trainer run (one trial) holds on this machine."""
        trainer = {str(k).lower(): float(v) for k, v in (self.trainer_resources or {}).items()}
        cpu = trainer.get("cpu", 0.0) + self.num_workers * self.num_cpus_per_worker
        gpu = trainer.get("gpu", 0.0) + self.num_workers * self.num_gpus_per_worker
        # Workers may oversubscribe a small machine (processes share cores) rather than the
        # run being refused: cap the trial's CPU claim at what the machine has.
        cpu = min(max(cpu, 1.0), float(os.cpu_count() or 1))
        out = {"cpu": cpu}
        if gpu:
            out["gpu"] = gpu
        return out


class TrainingFailedError(RuntimeError):
    """``Trainer.fit()`` failed: the training run errored after its retries
    (``FailureConfig(max_failures)``)."""


class WorkerGroupError(TrainingFailedError):
    """One or more training workers failed (raised, died, or broke the report protocol).

    Attributes:
        worker_failures: ``{world_rank: exception}`` for the ranks that failed.
    """

    def __init__(self, error_message: str, worker_failures: Optional[Dict[int, Exception]] = None):
        super().__init__(error_message)
        self.error_message = error_message
        self.worker_failures = dict(worker_failures or {})

    def __reduce__(self):
        return (type(self), (self.error_message, self.worker_failures))
