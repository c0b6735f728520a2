"""``tune.Trainable``: the class-based trainable API of Ray Tune.

Subclass it and implement ``setup``, ``step`` and, for checkpointing, ``save_checkpoint``
and ``load_checkpoint``::

    class MyTrainable(tune.Trainable):
        def setup(self, config):
            self.x = 0

        def step(self):
            self.x += 1
            return {"score": self.x}

        def save_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "x"), "w") as f:
                f.write(str(self.x))

        def load_checkpoint(self, checkpoint_dir):
            with open(os.path.join(checkpoint_dir, "x")) as f:
                self.x = int(f.read())

One ``step()`` is one training iteration (one result). Checkpoints are taken every
``CheckpointConfig.checkpoint_frequency`` iterations and at the end when
``checkpoint_at_end`` is set.

A Trainable also works on its own, as in Ray::

    t = MyTrainable({"lr": 0.1})
    t.train()                           # {"score": 1, "training_iteration": 1, ...}
    saved = t.save("/tmp/ckpt")         # the checkpoint and the last result
    t2 = MyTrainable({"lr": 0.1})
    t2.restore(saved)                   # t2.iteration == 1, t2.x == 1

In a trial, the worker runs it in the trial's working directory (``logdir``), see
``tunelib.executor._trial_dir``.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Optional, Union

from tunelib import session as _session

_DICT_CHECKPOINT_FILE = "_dict_checkpoint.pkl"
# the Ray release whose API tunelib follows (``get_state()["ray_version"]``)
_RAY_API_VERSION = "2.60.0"


@dataclass(frozen=True)
class _TrialStorage:
    """Where a trial's Trainable lives: the part of Ray's ``StorageContext`` (the
    ``storage`` argument of ``Trainable.__init__`` and ``reset``) a Trainable reads."""

    trial_fs_path: str              # the trial's directory on storage
    trial_working_directory: str    # its local working directory: ``Trainable.logdir``


class _TrainingResult:
    """What ``Trainable.save()`` returns and ``restore()`` takes: a checkpoint and the
    result it was taken at (Ray's ``ray.train._internal.session._TrainingResult``)."""

    def __init__(self, checkpoint, metrics: Dict[str, Any]):
        self.checkpoint = checkpoint
        self.metrics = metrics

    def __repr__(self) -> str:
        return f"TrainingResult(checkpoint={self.checkpoint}, metrics={self.metrics})"


class Trainable:
    """Base class for class trainables (Ray's ``ray.tune.Trainable``)."""

    def __init__(self, config: Dict[str, Any] = None, storage: Optional[_TrialStorage] = None):
        self.config = dict(config or {})
        self._storage = storage
        self._bind_trial()
        self._setup_logdir()
        self._reset_progress()
        self._last_result: Optional[Dict[str, Any]] = None
        self._local_ip = _session._NODE_IP
        self.setup(dict(self.config))

    def _bind_trial(self) -> None:
        """Take the running trial's identity (none when used outside Tune)."""
        current = _session._current()
        self._trial_session = current
        spec = current.spec if current is not None else None
        self._trial_id = spec.trial_id if spec else "default"
        self._trial_name = spec.trial_name if spec else "default"
        self._resources = dict(spec.resources) if spec else None

    def _setup_logdir(self) -> None:
        """``logdir``: the trial's working directory; used on its own, as in Ray, a new
        directory under ``~/ray_results``."""
        if self._storage is not None:
            self._logdir = self._storage.trial_working_directory
        else:
            from tunelib._layout import DEFAULT_STORAGE_PATH

            root = os.path.expanduser(DEFAULT_STORAGE_PATH)
            os.makedirs(root, exist_ok=True)
            self._logdir = tempfile.mkdtemp(prefix=datetime.today().strftime("%Y-%m-%d_%H-%M-%S"),
                                            dir=root)
        os.makedirs(self._logdir, exist_ok=True)

    def _reset_progress(self) -> None:
        self._iteration = 0
        self._time_total = 0.0
        self._timesteps_total: Optional[int] = None
        self._episodes_total: Optional[int] = None
        self._time_since_restore = 0.0
        self._timesteps_since_restore = 0
        self._iterations_since_restore = 0
        self._restored = False

    # ------------------------------------------------------------------ Ray's properties
    @property
    def iteration(self) -> int:
        """Training iterations completed so far (continues across restores)."""
        return self._iteration

    @property
    def training_iteration(self) -> int:
        return self._iteration

    @property
    def trial_id(self) -> str:
        return self._trial_id

    @property
    def trial_name(self) -> str:
        return self._trial_name

    @property
    def logdir(self) -> str:
        """The trial's working directory (the current directory while the trial runs,
        unless ``RAY_CHDIR_TO_TRIAL_DIR=0``)."""
        return self._logdir

    @property
    def trial_resources(self) -> Optional[Dict[str, float]]:
        """The trial's resources; None outside Tune."""
        return self._resources

    def get_config(self) -> Dict[str, Any]:
        return self.config

    def is_actor(self) -> bool:
        return self._trial_session is not None

    def get_current_ip_pid(self):
        return self._local_ip, os.getpid()

    @classmethod
    def default_resource_request(cls, config: Dict[str, Any]):
        return None

    @classmethod
    def resource_help(cls, config: Dict) -> str:
        """A help string on configuring this trainable's resources (Ray's default: empty)."""
        return ""

    # ------------------------------------------------------------------ user hooks
    def setup(self, config: Dict[str, Any]) -> None:
        """Called once with the trial's config when the trainable starts."""

    def step(self) -> Dict[str, Any]:
        """Run one training iteration; return its metrics as a dict."""
        raise NotImplementedError(f"{type(self).__name__} must implement step().")

    def save_checkpoint(self, checkpoint_dir: str) -> Optional[Dict]:
        """Write the state into ``checkpoint_dir`` (or return a dict to be pickled there)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement save_checkpoint() to be checkpointed "
            "(checkpoint_frequency / checkpoint_at_end / pause / retry)."
        )

    def load_checkpoint(self, checkpoint: Optional[Dict]) -> None:
        """Restore state from a checkpoint dir (or the dict ``save_checkpoint`` returned)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement load_checkpoint() to be restored."
        )

    def reset_config(self, new_config: Dict) -> bool:
        """Reconfigure for a new trial when actors are reused; return True on success."""
        return False

    def cleanup(self) -> None:
        """Called once when the trainable stops: at the end of its trial, when it is
        paused, and when it failed (before the retry builds a new instance)."""

    def log_result(self, result: Dict) -> None:
        """Hook called with every result."""

    def _export_model(self, export_formats: List[str], export_dir: str) -> Dict:
        """Override to export the model (``tune.run(export_formats=[...])``, called when
        the trial ends); return {format: path exported}."""
        return {}

    # ------------------------------------------------------------------ driving
    def get_auto_filled_metrics(self, now: Optional[datetime] = None,
                                time_this_iter: Optional[float] = None,
                                timestamp: Optional[int] = None,
                                debug_metrics_only: bool = False) -> Dict[str, Any]:
        """The fields ``train()`` adds to every result, in Ray's order.

        Example::

            >>> sorted(MyTrainable({}).get_auto_filled_metrics())[:3]
            ['config', 'date', 'hostname']
        """
        now = now or datetime.today()
        filled = {
            "trial_id": self.trial_id,
            "date": now.strftime("%Y-%m-%d_%H-%M-%S"),
            "timestamp": timestamp if timestamp else int(time.mktime(now.timetuple())),
            "time_this_iter_s": time_this_iter,
            "time_total_s": self._time_total,
            "pid": os.getpid(),
            "hostname": platform.node(),
            "node_ip": self._local_ip,
            "config": self.config,
            "time_since_restore": self._time_since_restore,
            "iterations_since_restore": self._iterations_since_restore,
        }
        if self._timesteps_since_restore:
            filled["timesteps_since_restore"] = self._timesteps_since_restore
        if debug_metrics_only:
            filled = {k: v for k, v in filled.items() if k in _DEBUG_METRICS}
        return filled

    def train(self) -> Dict[str, Any]:
        """Run one ``step()`` and return its result with Ray's automatic fields (a
        ``training_iteration``, ``time_this_iter_s`` or ``timestamp`` the step returned
        is kept, as in Ray)."""
        start = time.time()
        metrics = self.step()
        if not isinstance(metrics, dict):
            raise TypeError(
                f"{type(self).__name__}.step() must return a dict of metrics, "
                f"got {type(metrics).__name__}."
            )
        result = dict(metrics)
        self._iteration += 1
        self._iterations_since_restore += 1
        this_iter = result.get("time_this_iter_s")
        if this_iter is None:
            this_iter = time.time() - start
        self._time_total += this_iter
        self._time_since_restore += this_iter
        result.setdefault("done", False)
        self._count_rl_progress(result)
        result.setdefault("training_iteration", self._iteration)
        result.update(self.get_auto_filled_metrics(
            now=datetime.today(), time_this_iter=this_iter, timestamp=result.get("timestamp")))
        self.log_result(result)
        self._last_result = result
        return result

    def _count_rl_progress(self, result: Dict[str, Any]) -> None:
        """Ray's running totals of ``timesteps_this_iter`` / ``episodes_this_iter``."""
        if result.get("timesteps_this_iter") is not None:
            self._timesteps_total = (self._timesteps_total or 0) + result["timesteps_this_iter"]
            self._timesteps_since_restore += result["timesteps_this_iter"]
        if result.get("episodes_this_iter") is not None:
            self._episodes_total = (self._episodes_total or 0) + result["episodes_this_iter"]
        if self._timesteps_total is not None:
            result.setdefault("timesteps_total", self._timesteps_total)
        if self._episodes_total is not None:
            result.setdefault("episodes_total", self._episodes_total)

    def train_buffered(self, buffer_time_s: float, max_buffer_length: int = 1000) -> List[Dict]:
        """``train()`` repeatedly, for ``buffer_time_s`` seconds (at least once), until a
        result is done or asks for a checkpoint, or ``max_buffer_length`` results."""
        results: List[Dict] = []
        send_at = time.time() + buffer_time_s
        while time.time() < send_at or not results:
            result = self.train()
            results.append(result)
            if (result.get("done") or result.get("should_checkpoint")
                    or len(results) >= max_buffer_length):
                break
        return results

    def get_state(self) -> Dict[str, Any]:
        """The progress counters and last result (what Ray keeps beside a checkpoint)."""
        return {
            "iteration": self._iteration,
            "timesteps_total": self._timesteps_total,
            "time_total": self._time_total,
            "episodes_total": self._episodes_total,
            "last_result": self._last_result,
            "ray_version": _RAY_API_VERSION,
        }

    def save(self, checkpoint_dir: Optional[str] = None) -> _TrainingResult:
        """Save a checkpoint into ``checkpoint_dir`` (a new temp dir by default); returns
        it with the last result, the way ``restore`` takes it."""
        import cloudpickle

        from tunelib.checkpoint import Checkpoint

        checkpoint_dir = checkpoint_dir or tempfile.mkdtemp()
        os.makedirs(checkpoint_dir, exist_ok=True)
        returned = self.save_checkpoint(checkpoint_dir)
        if isinstance(returned, dict):
            with open(os.path.join(checkpoint_dir, _DICT_CHECKPOINT_FILE), "wb") as f:
                cloudpickle.dump(returned, f)
        elif returned is not None and returned != checkpoint_dir:
            raise ValueError(
                f"{type(self).__name__}.save_checkpoint() must return None, a dict, or the "
                f"checkpoint_dir it was given ({checkpoint_dir!r}); got {returned!r}."
            )
        metrics = dict(self._last_result) if self._last_result else {}
        return _TrainingResult(Checkpoint.from_directory(checkpoint_dir), metrics)

    def restore(self, checkpoint_path: Union[str, os.PathLike, Any, _TrainingResult]) -> None:
        """Restore from what ``save()`` returned (state and progress: ``iteration``
        continues), or from a checkpoint directory or ``tune.Checkpoint`` (state only:
        ``iteration`` starts from 0, as in Ray)."""
        import pickle

        from tunelib import storage
        from tunelib.checkpoint import Checkpoint

        saved = checkpoint_path
        if isinstance(saved, Checkpoint):  # first: it looks like a PathLike (__fspath__)
            saved = _TrainingResult(saved, {})
        elif isinstance(saved, (str, os.PathLike)):
            saved = _TrainingResult(Checkpoint.from_directory(saved), {})
        if not isinstance(saved, _TrainingResult):
            raise TypeError(
                "`checkpoint_path` passed to restore() must be what save() returned, a "
                f"checkpoint directory or a tune.Checkpoint, got {type(checkpoint_path).__name__}."
            )
        checkpoint, metrics = saved.checkpoint, saved.metrics
        if not storage.exists(checkpoint.filesystem, checkpoint.path):
            raise ValueError(
                f"Cannot restore {type(self).__name__} from {checkpoint!r}: it does not exist "
                "(any more)."
            )
        self._iteration = metrics.get("training_iteration", 0)
        self._time_total = metrics.get("time_total_s", 0)
        self._time_since_restore = 0.0
        self._iterations_since_restore = 0
        self._timesteps_total = metrics.get("timesteps_total")
        self._timesteps_since_restore = 0
        self._episodes_total = metrics.get("episodes_total")
        with checkpoint.as_directory() as local:
            dict_file = os.path.join(local, _DICT_CHECKPOINT_FILE)
            if os.path.exists(dict_file):
                with open(dict_file, "rb") as f:
                    self.load_checkpoint(pickle.load(f))
            else:
                self.load_checkpoint(local)
        self._restored = True

    def export_model(self, export_formats: Union[List[str], str],
                     export_dir: Optional[str] = None) -> Dict:
        """Export the model in ``export_formats`` into ``export_dir`` (default: ``logdir``)
        through ``_export_model``; returns {format: path exported}."""
        if isinstance(export_formats, str):
            export_formats = [export_formats]
        return self._export_model(list(export_formats), export_dir or self.logdir)

    def reset(self, new_config: Dict, storage: Optional[_TrialStorage] = None) -> bool:
        """Reuse this instance for another trial (``reuse_actors``): False means build a
        new one. On success the progress counters start again from 0, as in Ray."""
        self.config = dict(new_config)
        self._storage = storage
        self._bind_trial()
        self._setup_logdir()
        if not self.reset_config(new_config):
            return False
        self._reset_progress()
        return True

    def stop(self) -> None:
        """Release resources (calls ``cleanup``)."""
        self.cleanup()


# the auto-filled fields that need no iteration (Ray's ``ray.tune.result.DEBUG_METRICS``)
_DEBUG_METRICS = ("trial_id", "experiment_id", "date", "timestamp", "pid", "hostname",
                  "node_ip", "config")
