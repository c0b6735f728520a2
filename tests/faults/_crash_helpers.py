"""Helpers of the interrupt and crash fault tests: the trainable, a driver process to signal
or kill, and the checks that nothing was lost.

The trainable keeps a ledger (one file per trial, appended after every ``report()``
returned), so the tests compare what storage holds with what the trial was told had been
saved. Its score is deterministic, ``step * (1 - |x - 0.79|)``, so the best config of a
complete run is known without running one: the x closest to 0.79 (0.7971 among
``XS``), and a trial cut short (the bug of issue 14, item 1) loses to a complete one
(0.7757 at step 20 beats 0.7971 at step 12).

Lives in an importable module, so that worker processes and the driver script find the
trainable by reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import pytest

from tunelib import tune

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "_crash_driver.py")

# no TensorBoard files: they are not the point, and tensorboardX imports torch (seconds)
QUIET = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}

XS = [0.1, 0.4, 0.7757, 0.7971]
BEST_X = 0.7971
ITERS = 20
NAME = "faulty"


def score(x: float, step: int) -> float:
    return step * (1.0 - abs(x - 0.79))


def counting(config: Dict[str, Any]) -> None:
    """``iters`` steps of ``sleep`` s; a checkpoint every ``ckpt_every`` steps, resumed
    from. ``hold_gil_s`` > 0: the first step is a C call that holds the GIL that long;
    ``gate``: a file whose existence step 3 waits for."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "step.json")) as f:
                start = json.load(f)["step"]
    ledger = os.path.join(config["ledger"], f"x={config['x']}.jsonl")
    _append(ledger, {"event": "start", "pid": os.getpid(), "from": start})
    if config.get("hold_gil_s"):
        import ctypes

        ctypes.PyDLL(None).sleep(int(config["hold_gil_s"]))  # PyDLL: the GIL stays held
    for step in range(start, config["iters"]):
        while config.get("gate") and step == 2 and not os.path.exists(config["gate"]):
            time.sleep(0.02)  # held at step 2 until the test opens the gate
        time.sleep(config["sleep"])
        metrics = {"score": score(config["x"], step + 1), "step": step + 1}
        if (step + 1) % config["ckpt_every"] == 0:
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "step.json"), "w") as f:
                    json.dump({"step": step + 1}, f)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
            _append(ledger, {"iteration": step + 1, "checkpoint": True})
        else:
            tune.report(metrics)
            _append(ledger, {"iteration": step + 1, "checkpoint": False})


def _append(path: str, record: Dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def space(ledger: str, xs=XS, iters: int = ITERS, sleep: float = 0.05, ckpt_every: int = 3,
          **extra) -> Dict[str, Any]:
    return {"x": tune.grid_search(list(xs)), "iters": iters, "sleep": sleep,
            "ckpt_every": ckpt_every, "ledger": ledger, **extra}


# --------------------------------------------------------------------------- the driver


class Driver:
    """``_crash_driver.py`` in a process of its own, to signal or kill; Prefect recording
    off unless ``prefect`` (then to PREFECT_API_URL's server)."""

    def __init__(self, tmp_path, prefect: bool = False, **options):
        self.storage = str(tmp_path / "results")
        self.ledger = str(tmp_path / "ledger")
        os.makedirs(self.storage, exist_ok=True)
        os.makedirs(self.ledger, exist_ok=True)
        self.exp_dir = os.path.join(self.storage, options.get("name", NAME))
        self.log_path = str(tmp_path / f"driver-{time.monotonic_ns()}.log")
        options = {"storage": self.storage, "ledger": self.ledger, "name": NAME, **options}
        env = dict(os.environ, TUNELIB_DISABLE_PREFECT="0" if prefect else "1",
                   PYTHONUNBUFFERED="1", **QUIET)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, DRIVER, json.dumps(options)], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        _started.append(self)

    @property
    def output(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def wait_for_rows(self, rows: int, timeout: float = 90.0) -> int:
        """Until the trials have written ``rows`` result rows in all; returns the count."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = count_rows(self.exp_dir)
            if got >= rows:
                return got
            assert self.proc.poll() is None, f"the driver ended early:\n{self.output}"
            time.sleep(0.02)
        raise AssertionError(f"no {rows} rows within {timeout} s:\n{self.output}")

    def workers(self) -> List[int]:
        return children_of(self.proc.pid)

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            self._log.close()
        return code

    def result(self) -> Dict[str, Any]:
        """The JSON line the driver prints once ``fit()`` / ``tune.run()`` returned."""
        for line in self.output.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise AssertionError(f"the driver printed no result:\n{self.output}")

    def kill(self) -> None:
        """kill -9 of the driver alone: its workers must go by themselves."""
        workers = self.workers()
        self.proc.kill()
        self.wait()
        assert_gone(workers, within_s=2.0)


_started: List[Driver] = []


@pytest.fixture(autouse=True)
def no_driver_left():
    """A test that failed midway (a driver held at a gate, waiting for a signal) leaves no
    driver running: it is killed, and its workers go with it."""
    yield
    while _started:
        driver = _started.pop()
        if driver.proc.poll() is None:
            driver.proc.kill()
            driver.wait()


def children_of(pid: int) -> List[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_gone(pids: List[int], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    assert not left, f"processes {left} outlived their driver by {within_s} s"


# --------------------------------------------------------------------------- storage


def trial_dirs(exp_dir: str) -> List[str]:
    return sorted(os.path.join(exp_dir, n) for n in os.listdir(exp_dir)
                  if os.path.isfile(os.path.join(exp_dir, n, "params.json")))


def read_rows(trial_dir: str) -> List[Dict[str, Any]]:
    path = os.path.join(trial_dir, "result.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def count_rows(exp_dir: str) -> int:
    if not os.path.isdir(exp_dir):
        return 0
    return sum(len(read_rows(d)) for d in trial_dirs(exp_dir))


def read_ledger(ledger: str, x: float) -> List[Dict[str, Any]]:
    path = os.path.join(ledger, f"x={x}.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def state_statuses(exp_dir: str) -> Dict[float, str]:
    """x -> the trial's status in the newest experiment_state-*.json."""
    names = sorted(n for n in os.listdir(exp_dir) if n.startswith("experiment_state-"))
    with open(os.path.join(exp_dir, names[-1])) as f:
        state = json.load(f)
    out = {}
    for info, _runtime in state["trial_data"]:
        info = json.loads(info)
        out[info["config"]["x"]] = info["status"]
    return out


def assert_nothing_lost(exp_dir: str, ledger: str, xs=XS, all_started: bool = False,
                        keep: Optional[int] = None) -> Dict[float, List[Dict]]:
    """Every report that returned has its row, every checkpoint it persisted is on storage
    with its step (the newest ``keep`` with ``num_to_keep``), and there is one trial dir
    per trial (none started over elsewhere); ``all_started``: one for each of ``xs``.
    Returns each trial's rows, by x."""
    dirs = trial_dirs(exp_dir)
    rows_by_x: Dict[float, List[Dict]] = {}
    for d in dirs:
        rows = read_rows(d)
        with open(os.path.join(d, "params.json")) as f:
            x = json.load(f)["x"]
        assert x not in rows_by_x, f"two trial dirs for x={x}: an orphan dir"
        assert len({r["trial_id"] for r in rows}) <= 1, f"rows of several trials in {d}"
        rows_by_x[x] = rows
        reported = {r["training_iteration"] for r in rows}
        told = read_ledger(ledger, x)
        for entry in told:
            if "iteration" not in entry:
                continue
            assert entry["iteration"] in reported, f"x={x}: report {entry} has no row"
        named = {r["checkpoint_dir_name"]: r["training_iteration"] for r in rows
                 if r.get("checkpoint_dir_name")}
        on_disk = {n for n in os.listdir(d) if n.startswith("checkpoint_") and "." not in n}
        for name, iteration in named.items():
            if name in on_disk:
                with open(os.path.join(d, name, "step.json")) as f:
                    assert json.load(f)["step"] == iteration, f"{d}/{name} is not its row's"
        if keep:  # retention's choice: the newest ``keep`` (no score attribute)
            assert sorted(named)[-keep:] == sorted(on_disk), f"{d}: {sorted(on_disk)}"
            continue
        for iteration in sorted({e["iteration"] for e in told if e.get("checkpoint")}):
            names = [n for n, i in named.items() if i == iteration]
            assert names and any(n in on_disk for n in names), \
                f"x={x}: checkpoint of iteration {iteration} is not on storage"
    if all_started:
        assert sorted(rows_by_x) == sorted(xs), f"trial dirs {dirs} for {xs}"
    else:
        assert set(rows_by_x) <= set(xs), f"trial dirs {dirs} for {xs}"
    return rows_by_x


def assert_complete(exp_dir: str, ledger: str, iters: int = ITERS, xs=XS,
                    keep: Optional[int] = None, failed_xs=()) -> None:
    """After the resumed run: every trial ran to ``iters``, each iteration has a row,
    and no trial dir holds an error (but those of ``failed_xs``, which failed and were
    retried: their error.txt stays, as in Ray)."""
    from tunelib.result import Result

    rows_by_x = assert_nothing_lost(exp_dir, ledger, xs, all_started=True, keep=keep)
    for x, rows in rows_by_x.items():
        iterations = [r["training_iteration"] for r in rows]
        assert iterations[-1] == iters and set(iterations) == set(range(1, iters + 1)), \
            f"x={x}: iterations {iterations}"
        assert rows[-1]["score"] == score(x, iters)
    for d in trial_dirs(exp_dir):
        with open(os.path.join(d, "params.json")) as f:
            if json.load(f)["x"] in failed_xs:
                continue
        assert not os.path.exists(os.path.join(d, "error.txt")), f"{d} has an error.txt"
        assert Result.from_path(d).error is None


def assert_same_answer(grid, iters: int = ITERS) -> None:
    """The ResultGrid of the resumed run: what an uninterrupted run returns."""
    assert grid.num_errors == 0
    best = grid.get_best_result(metric="score", mode="max")
    assert best.config["x"] == BEST_X
    assert best.metrics["training_iteration"] == iters
    assert sorted(r.metrics["training_iteration"] for r in grid) == [iters] * len(grid)


def restore_and_fit(exp_dir: str) -> Any:
    """``Tuner.restore(path, trainable).fit()`` in this process, Prefect off."""
    return tune.Tuner.restore(exp_dir, trainable=counting).fit()


def resume_with_tune_run(driver: "Driver", **options) -> Any:
    return tune.run(counting, name=NAME, storage_path=driver.storage, resume=True,
                    config=space(driver.ledger, **options), metric="score", mode="max",
                    verbose=0)


def wait_until(predicate, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")

