"""Tune a small classifier on scikit-learn's digits with tunelib (the Ray Tune API on Prefect).

    python examples/quickstart.py [--storage DIR] [--samples N]

Each trial trains an SGD classifier epoch by epoch, reports validation loss and accuracy,
and checkpoints its model every epoch; a trial that fails is retried from its latest
checkpoint (max_failures=2). Every trial is a Prefect flow run, every epoch a task run.
"""

import argparse
import os
import pickle
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from tunelib import tune

EPOCHS = 20


def train_digits(config):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
    classes = np.unique(y)

    model = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=config["lr"],
                          alpha=config["alpha"], random_state=0)
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:  # resuming after a failure: continue where the checkpoint left off
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "model.pkl"), "rb") as f:
                model, start = pickle.load(f)

    for epoch in range(start, EPOCHS):
        model.partial_fit(X_train, y_train, classes=classes)
        proba = model.predict_proba(X_val)
        loss = log_loss(y_val, proba, labels=classes)
        acc = float((proba.argmax(axis=1) == y_val).mean())
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "model.pkl"), "wb") as f:
                pickle.dump((model, epoch + 1), f)
            tune.report({"loss": loss, "acc": acc},
                        checkpoint=tune.Checkpoint.from_directory(d))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=os.path.join(tempfile.gettempdir(), "tunelib-results"))
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()

    tuner = tune.Tuner(
        train_digits,
        param_space={"lr": tune.grid_search([0.1, 0.01]), "alpha": tune.loguniform(1e-6, 1e-3)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=args.samples,
                                    max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="quickstart",
            storage_path=args.storage,
            stop={"training_iteration": 15},
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss",
                                                    checkpoint_score_order="min"),
        ),
    )
    grid = tuner.fit()
    best = grid.get_best_result()
    print(f"trials: {len(grid)}, errors: {grid.num_errors}")
    print(f"best config: {best.config}")
    print(f"best metrics: loss={best.metrics['loss']:.4f} acc={best.metrics['acc']:.4f} "
          f"after {best.metrics['training_iteration']} epochs")
    print(f"best checkpoint: {best.checkpoint}")
    print(best.metrics_dataframe[["training_iteration", "loss", "acc"]].tail(3).to_string(index=False))


if __name__ == "__main__":
    main()
