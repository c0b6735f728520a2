"""Framework backends set up in each training worker before ``train_loop_per_worker``
starts (Ray's ``BackendConfig.backend_cls``)."""

from __future__ import annotations

import datetime
import os
from typing import Any, Dict


class _TorchBackend:
    """A torch.distributed process group over MASTER_ADDR/MASTER_PORT (gloo on CPU,
    NCCL when the workers have GPUs)."""

    def __init__(self, options: Dict[str, Any], session):
        import torch
        import torch.distributed as dist

        backend = options.get("backend") or ("nccl" if options.get("use_gpu") else "gloo")
        if options.get("use_gpu") and torch.cuda.is_available():
            torch.cuda.set_device(session.local_rank % torch.cuda.device_count())
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=session.world_rank,
            world_size=session.world_size,
            timeout=datetime.timedelta(seconds=options.get("timeout_s", 1800)),
        )
        self._dist = dist

    def shutdown(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def setup_backend(options: Dict[str, Any], session):
    name = options.get("name")
    if name == "torch":
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        return _TorchBackend(options, session)
    raise ValueError(f"Unknown training backend {name!r}.")
