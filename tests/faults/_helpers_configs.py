"""Helpers of the config and full-disk fault tests: non-JSON config values, trainables that
say what they were given, a tiny tmpfs, and checks that files hold whole lines only.

Trainables and config classes live here, in an importable module, so that worker
processes and the killed driver script find them by reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator

import numpy as np
import pytest

from tunelib import tune

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class Point:
    """A config value JSON has no word for."""

    a: int
    b: int


def non_json_space(n_values=(1, 2, 3, 4)) -> Dict[str, Any]:
    """A param space whose configs are not plain JSON: a tuple, numpy integers (from a
    grid over ``np.arange``), a numpy ufunc and a dataclass instance."""
    return {
        "n": tune.grid_search(list(np.array(n_values, dtype=np.int64))),
        "t": (1, 2),
        "fn": np.tanh,
        "p": Point(1, 2),
    }


def expected_config(n: int) -> Dict[str, Any]:
    return {"n": np.int64(n), "t": (1, 2), "fn": np.tanh, "p": Point(1, 2)}


def describe(config: Dict[str, Any]) -> str:
    """``"fn=ufunc n=int64 p=Point t=tuple"``: the types a trial was given."""
    return " ".join(f"{k}={type(v).__name__}" for k, v in sorted(config.items()))


def assert_same_config(seen: Dict[str, Any], expected: Dict[str, Any]) -> None:
    """Equal, and of the same types, value by value."""
    assert seen == expected
    assert describe(seen) == describe(expected)


def _load_step() -> int:
    ckpt = tune.get_checkpoint()
    if not ckpt:
        return 0
    with ckpt.as_directory() as d, open(os.path.join(d, "step.json")) as f:
        return json.load(f)["step"]


def _report_step(metrics: Dict[str, Any], step: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "step.json"), "w") as f:
            json.dump({"step": step}, f)
        tune.report(dict(metrics, step=step), checkpoint=tune.Checkpoint.from_directory(d))


def seeing(config: Dict[str, Any]) -> None:
    """Uses every value (``fn`` must be callable) and reports the types it was given."""
    for step in range(_load_step(), int(config.get("steps", 3))):
        time.sleep(config.get("sleep", 0))
        _report_step({"seen": describe(config), "score": float(config["fn"](config["n"]))},
                     step + 1)


def filling_the_disk(config: Dict[str, Any]) -> None:
    """30 steps; the first 3 checkpointed. After step 3 of its first run it fills its disk
    with ``filler.bin`` in its working directory (the trial dir), as a trainable saving a
    large model would: a report after that finds no room for its line."""
    resumed = tune.get_checkpoint() is not None
    for step in range(_load_step(), 30):
        if step < 3:
            _report_step({"pad": "x" * 1000}, step + 1)
            continue
        if step == 3 and not resumed:
            fill_disk("filler.bin")
        tune.report({"pad": "x" * 1000, "step": step + 1})


def fill_disk(path: str) -> None:
    """Write ``path`` until the filesystem has no space left."""
    block = b"\0" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(block)
        with contextlib.suppress(OSError):
            while True:  # the last bytes, smaller than a block
                f.write(b"\0" * 512)


@contextlib.contextmanager
def tiny_tmpfs(path: str, size: str) -> Iterator[str]:
    """A tmpfs of ``size`` mounted at ``path`` for the block; skips the test where
    mounting is not allowed (needs root or CAP_SYS_ADMIN, and Linux)."""
    os.makedirs(path, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command here: a full disk is simulated with a tiny tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                    f"{proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


def json_lines(path: str) -> list:
    """Every line of a JSON-lines file, parsed; fails on a line that is not whole."""
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n"), f"{path} ends in the middle of a line"
    return [json.loads(line) for line in data.splitlines()]


def leftovers(directory: str) -> list:
    """Temporary files or dirs a failed write left behind."""
    return [n for n in os.listdir(directory) if ".tmp" in n]
