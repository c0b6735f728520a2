"""Ray reads what tunelib writes: Ray's Result.from_path on tunelib's trial dirs.

Ray 2.60's ``ray.train.Result`` is Train V2's, which reads only Train V2 run dirs
(checkpoint_manager_snapshot.json) and fails on Ray Tune's own trial dirs too; the reader
of Tune trial dirs is ``ray.tune.Result`` (``ray.air.result.Result``), used here.

Optional: runs where Ray is importable, by this Python or by the interpreter named in
TUNELIB_RAY_PYTHON (e.g. a separate venv: Ray is a benchmark-only dependency).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import pytest

from tunelib import tune

RAY_PYTHON = os.environ.get("TUNELIB_RAY_PYTHON") or (
    sys.executable if importlib.util.find_spec("ray") else None
)

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(RAY_PYTHON is None, reason="Ray is not installed (set TUNELIB_RAY_PYTHON)"),
    pytest.mark.usefixtures("prefect_server"),
]

READ_WITH_RAY = """
import json, sys
from ray.tune import Result
out = []
for path in sys.argv[1:]:
    r = Result.from_path(path)
    best = r.get_best_checkpoint("loss", "min")
    out.append({"config": r.config, "loss": r.metrics["loss"],
                "iters": len(r.metrics_dataframe), "checkpoint": r.checkpoint.path,
                "best": best.path, "n_ckpts": len(r.best_checkpoints)})
print(json.dumps(out))
"""


def fn(config):
    for i in range(4):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "w.txt"), "w") as f:
                f.write(str(i))
            tune.report({"loss": abs(2 - i) * config["lr"]},
                        checkpoint=tune.Checkpoint.from_directory(d))


class Steps(tune.Trainable):
    def setup(self, config):
        self.i = 0

    def step(self):
        self.i += 1
        return {"loss": abs(2 - self.i) * self.config["lr"]}

    def save_checkpoint(self, d):
        with open(os.path.join(d, "i"), "w") as f:
            f.write(str(self.i))

    def load_checkpoint(self, d):
        pass


@pytest.mark.parametrize("trainable", [fn, Steps])
def test_ray_reads_tunelib_trial_dirs(storage_dir, trainable):
    grid = tune.Tuner(
        trainable, param_space={"lr": tune.grid_search([0.5, 1.0])},
        run_config=tune.RunConfig(
            name="interop", storage_path=storage_dir, verbose=0, stop={"training_iteration": 4},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_frequency=1),
        ),
    ).fit()
    paths = [r.path for r in grid]
    out = subprocess.run([RAY_PYTHON, "-c", READ_WITH_RAY, *paths], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    read = json.loads(out.stdout.strip().splitlines()[-1])
    for ours, theirs in zip(grid, read):
        assert theirs["config"] == ours.config
        assert theirs["loss"] == ours.metrics["loss"]
        assert theirs["iters"] == 4
        assert theirs["checkpoint"] == ours.checkpoint.path
        assert theirs["best"] == ours.get_best_checkpoint("loss", "min").path
        assert theirs["n_ckpts"] == 2
