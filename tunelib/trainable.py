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
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from typing import Any, Dict, Optional

from tunelib import session as _session

_DICT_CHECKPOINT_FILE = "_dict_checkpoint.pkl"


class Trainable:
    """Base class for class trainables (Ray's ``ray.tune.Trainable``)."""

    def __init__(self, config: Dict[str, Any] = None, storage=None):
        self.config = dict(config or {})
        current = _session._current()
        self._trial_session = current
        spec = current.spec if current is not None else None
        self._trial_id = spec.trial_id if spec else "default"
        self._trial_name = spec.trial_name if spec else "default"
        self._logdir = spec.trial_path if spec else tempfile.mkdtemp(prefix="trainable-")
        self._resources = dict(spec.resources) if spec else {}
        self._iteration = spec.start_iteration if spec else 0
        self._time_total = spec.start_time_total if spec else 0.0
        self._iterations_since_restore = 0
        self._time_since_restore = 0.0
        self.setup(dict(self.config))

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
        """The trial's directory on storage."""
        return self._logdir

    @property
    def trial_resources(self) -> Dict[str, float]:
        return self._resources

    def get_config(self) -> Dict[str, Any]:
        return self.config

    def is_actor(self) -> bool:
        return self._trial_session is not None

    def get_current_ip_pid(self):
        return _session._NODE_IP, os.getpid()

    @classmethod
    def default_resource_request(cls, config: Dict[str, Any]):
        return None

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
        """Called once when the trainable stops."""

    def log_result(self, result: Dict) -> None:
        """Hook called with every result."""

    # ------------------------------------------------------------------ driving
    def train(self) -> Dict[str, Any]:
        """Run one ``step()`` and return its result with Ray's automatic fields."""
        start = time.time()
        metrics = self.step()
        if not isinstance(metrics, dict):
            raise TypeError(
                f"{type(self).__name__}.step() must return a dict of metrics, "
                f"got {type(metrics).__name__}."
            )
        if self._trial_session is not None:
            result = self._trial_session._autofill(metrics, function_style=False)
            self._iteration = self._trial_session.iteration
        else:
            elapsed = time.time() - start
            self._iteration += 1
            self._iterations_since_restore += 1
            self._time_total += elapsed
            self._time_since_restore += elapsed
            result = dict(metrics)
            result.setdefault("done", False)
            result.update(
                training_iteration=self._iteration, trial_id=self._trial_id,
                time_this_iter_s=elapsed, time_total_s=self._time_total,
                config=self.config, iterations_since_restore=self._iterations_since_restore,
                time_since_restore=self._time_since_restore,
            )
        self.log_result(result)
        return result

    def save(self, checkpoint_dir: Optional[str] = None) -> str:
        """Save a checkpoint into ``checkpoint_dir`` (a new temp dir by default)."""
        checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix="checkpoint-")
        os.makedirs(checkpoint_dir, exist_ok=True)
        returned = self.save_checkpoint(checkpoint_dir)
        if isinstance(returned, dict):
            with open(os.path.join(checkpoint_dir, _DICT_CHECKPOINT_FILE), "wb") as f:
                pickle.dump(returned, f)
        elif returned is not None and returned != checkpoint_dir:
            raise ValueError(
                f"{type(self).__name__}.save_checkpoint() must return None or a dict, "
                f"got {type(returned).__name__}."
            )
        return checkpoint_dir

    def restore(self, checkpoint_path) -> None:
        """Restore from a checkpoint directory or a tune.Checkpoint."""
        path = getattr(checkpoint_path, "path", checkpoint_path)
        dict_file = os.path.join(path, _DICT_CHECKPOINT_FILE)
        if os.path.exists(dict_file):
            with open(dict_file, "rb") as f:
                self.load_checkpoint(pickle.load(f))
        else:
            self.load_checkpoint(path)

    def reset(self, new_config: Dict, storage=None) -> bool:
        """Reuse this instance for another trial; False means build a new one."""
        current = _session._current()
        ok = self.reset_config(new_config)
        if ok:
            self.config = dict(new_config)
            self._trial_session = current
            if current is not None:
                self._trial_id = current.spec.trial_id
                self._trial_name = current.spec.trial_name
                self._logdir = current.spec.trial_path
                self._iteration = current.spec.start_iteration
        return bool(ok)

    def stop(self) -> None:
        """Release resources (calls ``cleanup``)."""
        self.cleanup()
