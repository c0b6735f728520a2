"""Data-parallel PyTorch training with tunelib: an MLP on scikit-learn's digits, 2 workers
on CPU (gloo DDP), a checkpoint every epoch, and a resume after an injected failure.

Run::

    python examples/train_digits_torch.py                    # fails once at epoch 3, resumes
    python examples/train_digits_torch.py --fail-at-epoch 0  # no failure

The only change from the Ray Train version is the import lines: ``from tunelib import
train`` / ``from tunelib.train.torch import ...`` instead of ``ray.train``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from tunelib import train
from tunelib.train.torch import TorchTrainer, get_device, prepare_data_loader, prepare_model


def load_digits_split(seed: int = 0):
    """The digits as float tensors, 80 % train / 20 % test (the same split on every rank)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=0.2, random_state=seed, stratify=y)

    def tensors(a, b):
        return torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.long)

    return tensors(x_train, y_train), tensors(x_test, y_test)


def build_model(hidden: int = 64):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _unwrap(model):
    return getattr(model, "module", model)


def train_loop_per_worker(config: dict) -> None:
    """One worker: trains its shard, reports each epoch; rank 0 saves the checkpoint."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(config.get("seed", 0))
    ctx = train.get_context()
    rank = ctx.get_world_rank()
    (x_train, y_train), (x_test, y_test) = load_digits_split()
    loader = prepare_data_loader(DataLoader(TensorDataset(x_train, y_train),
                                            batch_size=config.get("batch_size", 32),
                                            shuffle=True))
    model = build_model(config.get("hidden", 64))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.get("lr", 0.1), momentum=0.9)
    start_epoch = 1
    checkpoint = train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "model.pt"))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"] + 1
    model = prepare_model(model)
    device = get_device()
    loss_fn = torch.nn.CrossEntropyLoss()

    for epoch in range(start_epoch, config.get("epochs", 5) + 1):
        if (epoch == config.get("fail_at_epoch") and rank == config.get("fail_rank", 1)
                and not os.path.exists(config["failure_marker"])):
            open(config["failure_marker"], "w").close()
            raise RuntimeError(f"injected failure at epoch {epoch} on rank {rank}")
        if ctx.get_world_size() > 1:
            loader.sampler.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            count += len(yb)
        model.eval()
        with torch.no_grad():
            logits = model(x_test.to(device))
            accuracy = (logits.argmax(dim=1) == y_test.to(device)).float().mean().item()
            test_loss = loss_fn(logits, y_test.to(device)).item()
        metrics = {"epoch": epoch, "loss": total / max(count, 1), "test_loss": test_loss,
                   "accuracy": accuracy, "rank": rank}
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:
                torch.save({"model": _unwrap(model).state_dict(),
                            "optimizer": optimizer.state_dict(), "epoch": epoch},
                           os.path.join(d, "model.pt"))
                ckpt = train.Checkpoint.from_directory(d)
            train.report(metrics, checkpoint=ckpt)


def make_trainer(*, epochs: int = 5, fail_at_epoch: int = 0, failure_marker: str = "",
                 storage_path=None, name=None, num_workers: int = 2, max_failures: int = 1,
                 lr: float = 0.1) -> TorchTrainer:
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"epochs": epochs, "lr": lr, "batch_size": 32,
                           "fail_at_epoch": fail_at_epoch, "failure_marker": failure_marker},
        scaling_config=train.ScalingConfig(num_workers=num_workers, use_gpu=False),
        run_config=train.RunConfig(
            name=name, storage_path=storage_path,
            failure_config=train.FailureConfig(max_failures=max_failures),
            checkpoint_config=train.CheckpointConfig(num_to_keep=2),
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fail-at-epoch", type=int,
                        default=int(os.environ.get("TUNELIB_EXAMPLE_FAIL_AT_EPOCH", "3")),
                        help="inject one failure (rank 1) at this epoch; 0: none")
    parser.add_argument("--storage-path", default=None)
    args = parser.parse_args()
    marker = os.path.join(tempfile.mkdtemp(prefix="digits-"), "failed_once")
    result = make_trainer(epochs=args.epochs, fail_at_epoch=args.fail_at_epoch,
                          failure_marker=marker, storage_path=args.storage_path).fit()
    df = result.metrics_dataframe
    print(df[["epoch", "loss", "accuracy"]].to_string(index=False))
    print(f"final accuracy {result.metrics['accuracy']:.3f}; checkpoint {result.checkpoint}")
    print(f"results in {result.path}")


if __name__ == "__main__":
    main()
