"""``from tunelib.train.torch import TorchTrainer``: data-parallel PyTorch training
(Ray's ``ray.train.torch``).

Each worker joins a ``torch.distributed`` process group (gloo on CPU, NCCL with GPUs)
before ``train_loop_per_worker`` starts; ``prepare_model`` wraps the model in
DistributedDataParallel and ``prepare_data_loader`` gives each worker its shard.

Example::

    def train_loop_per_worker(config):
        model = prepare_model(torch.nn.Linear(4, 1))
        loader = prepare_data_loader(DataLoader(dataset, batch_size=32, shuffle=True))
        for epoch in range(config["epochs"]):
            ...
            train.report({"loss": loss})

    TorchTrainer(train_loop_per_worker, train_loop_config={"epochs": 5},
                 scaling_config=ScalingConfig(num_workers=2)).fit()
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union

from tunelib.checkpoint import Checkpoint
from tunelib.train._context import get_context
from tunelib.train.trainer import DataParallelTrainer

__all__ = [
    "TorchConfig", "TorchTrainer", "TorchCheckpoint", "get_device", "get_devices",
    "prepare_model", "prepare_data_loader", "prepare_optimizer", "backward",
    "enable_reproducibility",
]


@dataclass
class TorchConfig:
    """How the workers' process group is set up.

    Args:
        backend: "gloo" or "nccl"; default: nccl when the workers have GPUs, else gloo.
        init_method: only "env" (MASTER_ADDR / MASTER_PORT) is supported.
        timeout_s: timeout of the process group's collective operations.
    """

    backend: Optional[str] = None
    init_method: str = "env"
    timeout_s: int = 1800

    def __post_init__(self):
        if self.backend not in (None, "gloo", "nccl"):
            raise ValueError(f"`backend` must be None, 'gloo' or 'nccl', got {self.backend!r}.")
        if self.init_method != "env":
            raise ValueError(f"`init_method` must be 'env', got {self.init_method!r}.")


class TorchTrainer(DataParallelTrainer):
    """A DataParallelTrainer whose workers form a torch.distributed process group.

    Args: as DataParallelTrainer, plus ``torch_config`` (a TorchConfig).
    """

    def __init__(
        self,
        train_loop_per_worker: Union[Callable[[], None], Callable[[Dict], None]],
        *,
        train_loop_config: Optional[Dict] = None,
        torch_config: Optional[TorchConfig] = None,
        scaling_config=None,
        run_config=None,
        datasets: Optional[Dict[str, Any]] = None,
        dataset_config: Any = None,
        metadata: Optional[Dict[str, Any]] = None,
        resume_from_checkpoint: Any = None,
    ):
        if torch_config is None:
            torch_config = TorchConfig()
        if not isinstance(torch_config, TorchConfig):
            raise TypeError(
                f"`torch_config` must be a train.torch.TorchConfig, got {type(torch_config).__name__}."
            )
        super().__init__(
            train_loop_per_worker,
            train_loop_config=train_loop_config,
            backend_config=torch_config,
            scaling_config=scaling_config,
            run_config=run_config,
            datasets=datasets,
            dataset_config=dataset_config,
            resume_from_checkpoint=resume_from_checkpoint,
            metadata=metadata,
        )
        if torch_config.backend == "nccl" and not self.scaling_config.use_gpu:
            raise ValueError("`TorchConfig(backend='nccl')` needs `ScalingConfig(use_gpu=True)`.")

    def _backend_options(self) -> Optional[Dict[str, Any]]:
        cfg: TorchConfig = self.backend_config
        return {"name": "torch", "backend": cfg.backend, "timeout_s": cfg.timeout_s,
                "use_gpu": self.scaling_config.use_gpu}


# --------------------------------------------------------------------------- helpers


def get_device():
    """The torch device of this worker: ``cuda:<local rank>`` with GPUs, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return torch.device(f"cuda:{get_context().get_local_rank() % torch.cuda.device_count()}")
    return torch.device("cpu")


def get_devices():
    """This worker's devices, as a list (one device per worker in tunelib)."""
    return [get_device()]


def prepare_model(model, move_to_device: Union[bool, Any] = True,
                  parallel_strategy: Optional[str] = "ddp",
                  parallel_strategy_kwargs: Optional[Dict[str, Any]] = None):
    """Move ``model`` to this worker's device and wrap it in DistributedDataParallel when
    there is more than one worker (``parallel_strategy="ddp"``; None leaves it unwrapped)."""
    import torch

    if parallel_strategy not in ("ddp", "fsdp", None):
        raise ValueError(
            f"`parallel_strategy` must be 'ddp', 'fsdp' or None, got {parallel_strategy!r}."
        )
    kwargs = dict(parallel_strategy_kwargs or {})
    device = move_to_device if isinstance(move_to_device, torch.device) else get_device()
    if move_to_device:
        model = model.to(device)
    if parallel_strategy and get_context().get_world_size() > 1:
        if parallel_strategy == "fsdp":
            if not torch.cuda.is_available():
                raise RuntimeError("FSDP needs GPUs: set ScalingConfig(use_gpu=True).")
            from torch.distributed.fsdp import FullyShardedDataParallel

            return FullyShardedDataParallel(model, **kwargs)
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            kwargs = {"device_ids": [device], "output_device": device, **kwargs}
        model = DistributedDataParallel(model, **kwargs)
    return model


def prepare_data_loader(data_loader, add_dist_sampler: bool = True, move_to_device: bool = True,
                        auto_transfer: bool = True):
    """Give this worker its shard of ``data_loader`` (a DistributedSampler, shuffling as the
    original loader did) and move its batches to this worker's device.

    With more than one worker, call ``loader.sampler.set_epoch(epoch)`` each epoch to
    reshuffle, as with any DistributedSampler.
    """
    from torch.utils.data import DataLoader, IterableDataset, SequentialSampler
    from torch.utils.data.distributed import DistributedSampler

    ctx = get_context()
    if (add_dist_sampler and ctx.get_world_size() > 1
            and not isinstance(data_loader.sampler, DistributedSampler)
            and not isinstance(data_loader.dataset, IterableDataset)):
        shuffle = not isinstance(data_loader.sampler, SequentialSampler)
        data_loader = DataLoader(
            data_loader.dataset,
            batch_size=data_loader.batch_size,
            shuffle=False,
            sampler=DistributedSampler(data_loader.dataset, num_replicas=ctx.get_world_size(),
                                       rank=ctx.get_world_rank(), shuffle=shuffle),
            num_workers=data_loader.num_workers,
            collate_fn=data_loader.collate_fn,
            pin_memory=data_loader.pin_memory,
            drop_last=data_loader.drop_last,
            timeout=data_loader.timeout,
            worker_init_fn=data_loader.worker_init_fn,
            generator=data_loader.generator,
        )
    device = get_device()
    if move_to_device and device.type != "cpu":
        return _DeviceDataLoader(data_loader, device)
    return data_loader


class _DeviceDataLoader:
    """Yields the wrapped loader's batches moved to ``device``."""

    def __init__(self, loader, device):
        self._loader = loader
        self._device = device
        self.sampler = getattr(loader, "sampler", None)
        self.dataset = getattr(loader, "dataset", None)

    def __len__(self):
        return len(self._loader)

    def _move(self, item):
        if hasattr(item, "to"):
            return item.to(self._device, non_blocking=True)
        if isinstance(item, (list, tuple)):
            return type(item)(self._move(i) for i in item)
        if isinstance(item, dict):
            return {k: self._move(v) for k, v in item.items()}
        return item

    def __iter__(self):
        for batch in self._loader:
            yield self._move(batch)


def prepare_optimizer(optimizer):
    """Returns ``optimizer`` unchanged (Ray's AMP wrapper is deprecated)."""
    return optimizer


def backward(tensor) -> None:
    """``tensor.backward()`` (Ray's AMP-aware helper, deprecated there)."""
    tensor.backward()


def enable_reproducibility(seed: int = 0) -> None:
    """Seed torch, random and numpy, and make torch choose deterministic algorithms."""
    import random

    import numpy as np
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------- checkpoints


class TorchCheckpoint(Checkpoint):
    """A Checkpoint holding a torch model or its state dict in ``model.pt`` (Ray's
    ``ray.train.torch.TorchCheckpoint``; deprecated there, and it warns here too: use
    ``train.Checkpoint`` directly).

    Example::

        checkpoint = TorchCheckpoint.from_state_dict(model.state_dict())
        model = checkpoint.get_model(create_model())   # the weights loaded into it
    """

    MODEL_FILENAME = "model.pt"

    def __init__(self, *args, **kwargs):
        warnings.warn(
            "`TorchCheckpoint` is deprecated and will be removed in a future release. Use "
            "`tunelib.train.Checkpoint` directly instead.", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)

    @staticmethod
    def _check_preprocessor(preprocessor) -> None:
        if preprocessor is not None:
            raise ValueError("`preprocessor` is not supported by tunelib (Ray Data "
                             "preprocessors are not provided); pass preprocessor=None.")

    @classmethod
    def _from_model_file(cls, obj) -> "TorchCheckpoint":
        import torch

        tempdir = tempfile.mkdtemp(prefix="tunelib-torch-ckpt-")
        torch.save(obj, os.path.join(tempdir, cls.MODEL_FILENAME))
        return cls.from_directory(tempdir)

    @classmethod
    def from_state_dict(cls, state_dict: Dict[str, Any], *,
                        preprocessor=None) -> "TorchCheckpoint":
        """A checkpoint of a model's state dict (DistributedDataParallel's ``module.``
        key prefix removed, so it loads into the plain model)."""
        cls._check_preprocessor(preprocessor)
        prefix = "module."
        stripped = type(state_dict)(
            (k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state_dict.items())
        metadata = getattr(state_dict, "_metadata", None)
        if metadata is not None:
            stripped._metadata = type(metadata)(
                (k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in metadata.items())
        return cls._from_model_file(stripped)

    @classmethod
    def from_model(cls, model, *, preprocessor=None) -> "TorchCheckpoint":
        """A checkpoint of a whole ``torch.nn.Module`` (pickled: load only trusted ones;
        Ray deprecates this in favour of ``from_state_dict``)."""
        warnings.warn("`TorchCheckpoint.from_model()` is deprecated: it pickles the whole "
                      "module. Use `TorchCheckpoint.from_state_dict()`.", DeprecationWarning,
                      stacklevel=2)
        cls._check_preprocessor(preprocessor)
        return cls._from_model_file(model)

    def get_model(self, model=None):
        """The stored model: the saved module itself, or the state dict loaded into
        ``model``. Unpickles ``model.pt``: the checkpoint must come from a trusted source.

        Raises:
            RuntimeError: the checkpoint has no ``model.pt``.
            ValueError: it holds a state dict and no ``model`` was given.
        """
        import torch

        with self.as_directory() as tempdir:
            model_path = os.path.join(tempdir, self.MODEL_FILENAME)
            if not os.path.exists(model_path):
                raise RuntimeError(
                    "`model.pt` not found within this checkpoint. Make sure you created this "
                    "`TorchCheckpoint` from one of its public constructors (`from_state_dict` "
                    "or `from_model`)."
                )
            saved = torch.load(model_path, map_location="cpu", weights_only=False)
        if isinstance(saved, torch.nn.Module):
            if model:
                warnings.warn("TorchCheckpoint already contains all information needed. "
                              "Discarding provided `model` argument.", stacklevel=2)
            return saved
        if isinstance(saved, dict):
            if not model:
                raise ValueError("Attempting to load torch model from a state_dict, but no "
                                 "`model_definition` was provided.")
            model.load_state_dict(saved)
            return model
        raise ValueError(f"Saved model is of type {type(saved)}. The model saved in the "
                         "checkpoint is expected to be of type `torch.nn.Module`, or a model "
                         "state dict of type dict.")
