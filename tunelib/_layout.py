"""Ray 2.60's on-disk layout, owned here and nowhere else.

What an experiment directory holds, how its files are named, how results are encoded
(JSON lines, Ray's flattened ``a/b`` keys) and how a trial's state is written to and read
from ``experiment_state-<session>.json``. Writers (``_trial_writer``, the controller),
readers (``_reader``, ``analysis``, ``resume``) and the Prefect recorder import these
names; none defines its own. Formats are checked against files Ray itself wrote
(``shared/fixtures``). Example::

    from tunelib import _layout

    _layout.flatten_dict({"a": {"b": 1}, "c": 2})      # {"c": 2, "a/b": 1}
    _layout.checkpoint_dir_name(3)                      # "checkpoint_000003"
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

# --------------------------------------------------------------------------- file names
DEFAULT_STORAGE_PATH = "~/ray_results"   # as Ray's; TUNE_RESULT_DIR overrides it
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
PARAMS_FILE = "params.json"
PARAMS_PKL = "params.pkl"
ERROR_FILE = "error.txt"
ERROR_PKL = "error.pkl"
TUNER_FILE = "tuner.pkl"
EXPERIMENT_STATE_PREFIX = "experiment_state-"
EXPERIMENT_STATE_PATTERN = "experiment_state-*.json"
CHECKPOINT_PREFIX = "checkpoint_"
PBT_GLOBAL_FILE = "pbt_global.txt"
DELIMITER = "/"


def experiment_state_file(session_str: str) -> str:
    """``experiment_state-<session>.json``: the newest of them is the experiment's state."""
    return f"{EXPERIMENT_STATE_PREFIX}{session_str}.json"


def pbt_policy_file(trial_id: str) -> str:
    return f"pbt_policy_{trial_id}.txt"


def checkpoint_dir_name(index: int) -> str:
    """``checkpoint_000003`` for index 3."""
    return f"{CHECKPOINT_PREFIX}{index:06d}"


def is_checkpoint_dir_name(name: str) -> bool:
    """``checkpoint_000003``, not a ``checkpoint_000003.tmp-<pid>`` left by a killed copy."""
    return name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX):].isdigit()


def checkpoint_index(name: str) -> int:
    """3 for ``checkpoint_000003`` (a dir found on storage; see is_checkpoint_dir_name)."""
    return int(name[len(CHECKPOINT_PREFIX):])


def session_str(now: Optional[float] = None) -> str:
    """Ray's date stamp in experiment and trial names: ``2026-11-29_11-50-37``."""
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))


# --------------------------------------------------------------------------- dir names
_UNSAFE_IN_DIRNAME = re.compile(r'[/()<>:"\\|?*]')


def safe_dirname(name: str) -> str:
    """Characters Ray replaces in trial dir names (``/``, brackets, quotes...) become ``_``."""
    return _UNSAFE_IN_DIRNAME.sub("_", name)


def default_trial_dirname(trial_name: str, experiment_tag: str, max_len: int = 130) -> str:
    """Ray's trial dir name: ``<trial name>_<experiment tag>[:max_len]_<date>``
    (``TUNE_MAX_LEN_IDENTIFIER`` sets ``max_len``)."""
    return safe_dirname(f"{f'{trial_name}_{experiment_tag}'[:max_len]}_{session_str()}")


# --------------------------------------------------------------------------- flat keys


def flatten_dict(dt: Dict, delimiter: str = DELIMITER, prevent_delimiter: bool = False,
                 flatten_list: bool = False) -> Dict:
    """Flatten nested dicts into ``{"a/b": value}``, exactly as Ray's ``flatten_dict``:
    top-level plain keys keep their place, nested ones follow; empty dicts vanish; lists
    stay whole unless ``flatten_list``.

    >>> flatten_dict({"a": {"b": 1}, "c": 2})
    {'c': 2, 'a/b': 1}
    """

    def check(key: Any) -> None:
        if prevent_delimiter and delimiter in str(key):
            raise ValueError(
                f"Found delimiter `{delimiter}` in key `{key}` when flattening the search "
                f"space. Please avoid `{delimiter}` in parameter names."
            )

    nested = (dict, list) if flatten_list else dict
    # Ray's loop moves each level's nested keys to the end, level by level: the same order,
    # built in one pass per level (this runs once per reported result)
    out: Dict = {}
    level = []
    for key, value in dt.items():
        if prevent_delimiter:
            check(key)
        if isinstance(value, nested):
            level.append((str(key), value))
        else:
            out[key] = value
    while level:
        deeper = []
        for prefix, value in level:
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for subkey, v in items:
                if prevent_delimiter:
                    check(subkey)
                name = f"{prefix}{delimiter}{subkey}"
                if isinstance(v, nested):
                    deeper.append((name, v))
                else:
                    out[name] = v
        level = deeper
    return out


def unflatten_dict(dt: Dict[str, Any], delimiter: str = DELIMITER) -> Dict[str, Any]:
    """Inverse of :func:`flatten_dict` (lists are not rebuilt), as Ray's."""
    out: Dict[str, Any] = {}
    for key, val in dt.items():
        path = key.split(delimiter)
        item = out
        for k in path[:-1]:
            item = item.setdefault(k, {})
            if not isinstance(item, dict):
                raise TypeError(f"Cannot unflatten key '{key}': its parent '{k}' is not a dict.")
        item[path[-1]] = val
    return out


def unflattened_lookup(flat_key: str, lookup: Any, delimiter: str = DELIMITER, **kwargs) -> Any:
    """Look ``"a/0/b"`` up as ``lookup["a"][0]["b"]`` (or ``lookup["a/0/b"]``); Ray's helper.
    Raises KeyError unless a ``default=`` is given."""
    if isinstance(lookup, dict) and flat_key in lookup:
        return lookup[flat_key]
    base = lookup
    for key in flat_key.split(delimiter):
        try:
            if isinstance(base, dict):
                base = base[key]
            elif isinstance(base, (list, tuple)):
                base = base[int(key)]
            else:
                raise KeyError(key)
        except (KeyError, IndexError, ValueError):
            if "default" in kwargs:
                return kwargs["default"]
            raise KeyError(flat_key) from None
    return base


# --------------------------------------------------------------------------- JSON


class JSONEncoder(json.JSONEncoder):
    """Results and configs as Ray writes them: numpy scalars as numbers, arrays as lists,
    anything else as its repr (a trial's log must never break on a value)."""

    def default(self, o):
        if hasattr(o, "item") and callable(o.item):
            try:
                return o.item()
            except (TypeError, ValueError):
                pass
        if hasattr(o, "tolist"):
            return o.tolist()
        return repr(o)


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` with :class:`JSONEncoder` (one line unless ``indent`` is given)."""
    return json.dumps(obj, cls=JSONEncoder, **kwargs)


def to_json_value(value: Any, finite: bool = False) -> Any:
    """A JSON-safe copy of ``value`` (what :func:`dumps` would write, as Python objects).

    ``finite=True`` also turns NaN and infinities into None, for APIs (Prefect's) whose
    JSON has no NaN.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if not finite or math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json_value(v, finite) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json_value(v, finite) for v in value]
    return to_json_value(JSONEncoder().default(value), finite) if _is_scalar_like(value) \
        else repr(value)


def _is_scalar_like(value: Any) -> bool:
    """numpy scalars and arrays (``item`` / ``tolist``): encoded as numbers and lists."""
    return callable(getattr(value, "item", None)) or callable(getattr(value, "tolist", None))


# --------------------------------------------------------------------------- experiment state
#
# ``experiment_state-<session>.json`` is Ray's: ``{"trial_data": [[trial_json, runtime_json],
# ...], "runner_data": {...}, "stats": {...}}``, each pair two JSON *strings*. tunelib writes
# every field Ray does, so that Ray's ExperimentAnalysis (and resume) loads tunelib's trials;
# the fields Ray keeps pickled (resources, storage, checkpoint manager, as hex or as a
# ``CLOUDPICKLE_FALLBACK`` object) are pickles of Ray's classes written by ``_ray_compat``.
# Reading uses the plain JSON fields, plus, from Ray's files, the pickled resources and
# checkpoint manager (read without Ray, by ``_ray_compat``). tunelib's own bookkeeping
# (latest checkpoint, what retention kept, attempts) sits under the runtime's ``"tunelib"``
# key, which Ray keeps as it is.


def find_experiment_state(fs, experiment_path: str) -> Optional[str]:
    """Path of the newest ``experiment_state-*.json`` in the dir, or None (the timestamp
    in the name sorts chronologically)."""
    import fnmatch

    from tunelib import storage

    matching = fnmatch.filter(storage.list_dir(fs, experiment_path), EXPERIMENT_STATE_PATTERN)
    return storage.join(experiment_path, max(matching)) if matching else None


def trial_state(trial, max_failures: int, checkpoint_config) -> List[str]:
    """One ``trial_data`` entry: the trial's (info, runtime) JSON strings.

    Every field of Ray's own is there, so that Ray's ``Trial.from_json_state`` and
    ``restore_run_metadata`` load it (Ray's ExperimentAnalysis reads tunelib's experiments):
    the fields Ray keeps pickled (resources, storage, checkpoint manager) are pickles of
    Ray's classes, written without Ray by ``_ray_compat``; the ones Ray recomputes or never
    fills in from a tunelib trial are Ray's defaults.
    """
    from tunelib import _ray_compat
    from tunelib._lifecycle import TrialStatus
    from tunelib._retention import best_checkpoints

    config = to_json_value(trial.config)
    best = best_checkpoints(trial.kept_checkpoints, checkpoint_config)
    storage_context, manager = _ray_storage_and_checkpoints(trial, best, checkpoint_config)
    info = {
        "stub": False,
        "trainable_name": trial.trainable_name,
        "trial_id": trial.trial_id,
        "storage": _ray_compat.json_fallback(storage_context),
        "config": config,
        "_Trial__unresolved_config": config,
        "evaluated_params": to_json_value(trial.evaluated_params),
        "experiment_tag": trial.experiment_tag,
        "stopping_criterion": {},
        "_setup_default_resource": True,
        "_default_placement_group_factory": _ray_compat.NONE_HEX,
        "placement_group_factory": _ray_compat.placement_group_factory_hex(trial.resources),
        "log_to_file": [None, None],
        "max_failures": max_failures,
        "_default_result_or_future": None,
        "export_formats": [],
        "status": trial.status,
        "relative_logdir": trial.dirname,
        "trial_name_creator": None,
        "trial_dirname_creator": None,
        "custom_trial_name": trial.custom_trial_name,
        "custom_dirname": None,
        "restore_path": trial.restore_path,
        "_restore_checkpoint_result": _ray_compat.json_fallback(_ray_compat.training_result(
            trial.restore_path, {}, "://" not in trial.restore_path)) if trial.restore_path
        else None,
        "_state_json": None,
        "results": _ray_compat.NONE_HEX,
        "extra_arg": _ray_compat.NONE_HEX,
        "_resources": _ray_compat.NONE_HEX,
    }
    failed = trial.status == TrialStatus.ERROR or trial.num_failures
    analysis = getattr(trial, "metric_analysis", None)
    if not isinstance(analysis, MetricAnalysis):
        analysis = MetricAnalysis()
    elif isinstance(analysis, _Later):
        analysis = analysis.read_through()
    runtime = {
        "start_time": trial.start_time,
        "num_failures": trial.num_failures,
        "num_failures_after_restore": 0,
        "error_filename": trial.error_file if failed else None,
        "pickled_error_filename": ERROR_PKL if trial.error_file else None,
        "last_result": to_json_value(trial.last_result),
        "last_result_time": trial.last_result.get("timestamp", float("-inf")),  # Ray's "none"
        "metric_analysis": to_json_value(analysis.stats),
        "_n_steps": list(MetricAnalysis.N_STEPS),
        "metric_n_steps": analysis.ray_windows(),
        "checkpoint_manager": _ray_compat.json_fallback(manager),
        # the checkpoint manager again, as JSON: what Result.best_checkpoints lists (worst
        # first), and the latest checkpoint, kept on storage even when it is not among
        # them; the reader pairs both with the dirs on storage
        "best_checkpoints": [
            {"dir_name": name, "metrics": to_json_value(metrics)} for name, metrics in best
        ],
        "latest_checkpoint_result": (
            {"dir_name": trial.kept_checkpoints[-1][0],
             "metrics": to_json_value(trial.kept_checkpoints[-1][1])}
            if trial.kept_checkpoints else None
        ),
        "tunelib": {
            "checkpoint_dir_name": trial.checkpoint_dir_name,
            "kept_checkpoints": [name for name, _ in trial.kept_checkpoints],
            "next_checkpoint_index": trial.next_checkpoint_index,
            "checkpoint_progress": list(trial.checkpoint_progress),
            "attempts": trial.attempts,
            # the error survives a disk too full for error.txt (the tail is what matters)
            "error_msg": (trial.error_msg or "")[-2000:] or None,
            # the config's objects (tuples, numpy scalars, functions...), which "config"
            # above can only show as JSON; a resume and the results read them from here
            "config_pickle": _config_pickle(trial),
        },
    }
    # one line each (Ray indents them; JSON readers do not care, and it is 3x faster)
    return [dumps(info), dumps(runtime)]


def _ray_storage_and_checkpoints(trial, best, checkpoint_config):
    """Ray's ``StorageContext`` and ``_CheckpointManager`` of ``trial`` (``best``: its
    kept checkpoints, worst first), with the absolute paths Ray's readers rebase when the
    experiment has moved."""
    from tunelib import _ray_compat, storage

    placed = trial.experiment_storage
    experiment_path = placed.experiment_fs_path.rstrip("/") if placed is not None else ""
    local = placed is None or storage.is_local(placed.storage_filesystem)
    storage_fs_path, _, experiment_dir_name = experiment_path.rpartition("/")
    results = {name: _ray_compat.training_result(f"{experiment_path}/{trial.dirname}/{name}",
                                         to_json_value(metrics), local)
               for name, metrics in trial.kept_checkpoints}
    latest = results[trial.kept_checkpoints[-1][0]] if trial.kept_checkpoints else None
    manager = _ray_compat.checkpoint_manager(checkpoint_config,
                                     [results[name] for name, _ in best if name in results],
                                     latest)
    context = _ray_compat.storage_context(storage_fs_path, experiment_dir_name, trial.dirname,
                                  trial.next_checkpoint_index, local,
                                  session_str(trial.start_time))
    return context, manager


class MetricAnalysis:
    """Ray's running statistics of a trial's numeric results (``trial.metric_analysis``):
    for every flattened key, ``max``, ``min``, ``avg``, ``last`` and the averages of the
    last 5 and 10 values, kept by Ray's rules (``avg`` weighs by ``training_iteration``),
    so that Ray's ``ExperimentAnalysis.get_best_trial`` reads a tunelib experiment as its
    own. Example::

        analysis = MetricAnalysis()
        analysis.update({"loss": 3.0, "training_iteration": 1})
        analysis.update({"loss": 1.0, "training_iteration": 2})
        analysis.stats["loss"]["avg"], analysis.stats["loss"]["last-5-avg"]   # 2.0, 2.0
    """

    N_STEPS = (5, 10)
    # Ray's DEBUG_METRICS: reported values that are not metrics
    _NOT_METRICS = ("trial_id", "experiment_id", "date", "timestamp", "pid", "hostname",
                    "node_ip", "config")

    def __init__(self, stats: Optional[Dict[str, Dict[str, Any]]] = None,
                 windows: Optional[Dict[str, Dict[str, List[Any]]]] = None,
                 ray_windows: Optional[Dict[str, Dict[str, Any]]] = None):
        self.stats: Dict[str, Dict[str, Any]] = stats or {}
        # metric -> {"5": last 5 values, "10": last 10 values}; from a saved state they
        # stay Ray's pickled deques until used (reading 10,000 trials back decoded them all)
        self._windows: Optional[Dict[str, Dict[str, List[Any]]]] = (
            windows if windows is not None or ray_windows is not None else {})
        self._ray_windows = ray_windows if windows is None else None

    @property
    def windows(self) -> Dict[str, Dict[str, List[Any]]]:
        if self._windows is None:
            self._windows = self._decode(self._ray_windows or {})
            self._ray_windows = None
        return self._windows

    @windows.setter
    def windows(self, value: Dict[str, Dict[str, List[Any]]]) -> None:
        self._windows, self._ray_windows = value, None

    def update(self, result: Dict[str, Any]) -> None:
        """Take one reported result into the statistics."""
        import numbers

        step = result.get("training_iteration") or 1
        values = {k: v for k, v in result.items() if k not in self._NOT_METRICS}
        for metric, value in flatten_dict(values).items():
            if isinstance(value, numbers.Number):
                self._update(metric, value, step)

    def _update(self, metric: str, value: Any, step: int) -> None:
        stats = self.stats.get(metric)
        if stats is None:
            self.stats[metric] = {"max": value, "min": value, "avg": value, "last": value}
            stats = self.stats[metric]
        else:
            stats.update(max=max(value, stats["max"]), min=min(value, stats["min"]),
                         avg=1 / step * (value + (step - 1) * stats["avg"]), last=value)
        windows = self.windows.get(metric)
        if windows is None:   # a new metric (or statistics read without their windows)
            windows = self.windows[metric] = {str(n): [] for n in self.N_STEPS}
        for n in self.N_STEPS:
            window = windows[str(n)]
            window.append(value)
            del window[:-n]
            stats[f"last-{n}-avg"] = sum(window) / len(window)

    def ray_windows(self) -> Dict[str, Dict[str, Any]]:
        """Ray's ``metric_n_steps``: each window a pickled ``collections.deque``."""
        import collections
        import pickle

        if self._windows is None:   # as read, never used
            return self._ray_windows or {}

        return {metric: {n: {"_type": "CLOUDPICKLE_FALLBACK",
                             "value": pickle.dumps(collections.deque(values, maxlen=int(n)),
                                                   protocol=5).hex()}
                         for n, values in windows.items()}
                for metric, windows in self.windows.items()}

    @classmethod
    def from_runtime(cls, runtime: Dict[str, Any], windows: bool = True) -> "MetricAnalysis":
        """The statistics a runtime state holds (Ray's or tunelib's); the windows are
        decoded when first used (``windows=False``: not kept, for a reader)."""
        stats = runtime.get("metric_analysis")
        raw = runtime.get("metric_n_steps") if windows else None
        return cls(stats if isinstance(stats, dict) else {},
                   ray_windows=raw if isinstance(raw, dict) else {})

    @classmethod
    def read_later(cls, source: Callable[[], Optional[Dict[str, Dict[str, Any]]]]
                   ) -> "MetricAnalysis":
        """The statistics ``source()`` returns, asked for when first read (a read-back
        snapshot, ``_readback``); their windows were not kept."""
        return _Later(lambda: (source() or {}, {}))

    @classmethod
    def packed(cls, analysis: Optional["MetricAnalysis"]) -> Optional["MetricAnalysis"]:
        """``analysis`` (of a finished trial) held as one compressed pickle, unpacked when
        next read: ~7 KB of small dicts a trial -> a few hundred bytes."""
        if analysis is None or (isinstance(analysis, _Later) and analysis.is_packed):
            return analysis
        import pickle
        import zlib

        blob = zlib.compress(pickle.dumps((analysis.stats, analysis.windows), protocol=5), 1)
        return _Later(functools.partial(_unpack, blob))

    @classmethod
    def _decode(cls, ray_windows: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, List[Any]]]:
        from tunelib import _ray_compat

        windows = {}
        for metric, by_n in ray_windows.items():
            try:
                windows[metric] = {n: list(_ray_compat.loads(bytes.fromhex(blob["value"])))
                                   for n, blob in by_n.items()}
            except Exception:  # noqa: BLE001 - a damaged window starts again
                windows[metric] = {str(n): [] for n in cls.N_STEPS}
        return windows


class _Later(MetricAnalysis):
    """A ``MetricAnalysis`` whose statistics and windows come from ``source()`` when
    first read (a snapshot read back, a finished trial's packed form)."""

    _FIELDS = ("stats", "_windows", "_ray_windows")

    def __init__(self, source: Callable[[], Tuple[Dict[str, Any], Dict[str, Any]]]):
        self._source = source   # nothing else: the first read of a field unpacks

    def __getattr__(self, name: str) -> Any:   # only while a field is missing
        if name not in self._FIELDS or "_source" not in self.__dict__:
            raise AttributeError(name)
        stats, windows = self.__dict__.pop("_source")()
        self.__dict__.setdefault("stats", stats)
        self.__dict__.setdefault("_windows", windows)
        self.__dict__.setdefault("_ray_windows", None)
        return self.__dict__[name]

    @property
    def is_packed(self) -> bool:
        """Not read yet: its fields are still where ``source`` finds them."""
        return "_source" in self.__dict__

    def read_through(self) -> MetricAnalysis:
        """The statistics and windows as a plain ``MetricAnalysis``, this one left packed
        (a finished trial's state entry is encoded from it, then the trial keeps only the
        pack)."""
        if not self.is_packed:
            return self
        stats, windows = self._source()
        return MetricAnalysis(stats, windows=windows)

    def __getstate__(self) -> Dict[str, Any]:   # pickled unpacked, not as its source
        return {name: getattr(self, name) for name in self._FIELDS}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)


def _unpack(blob: bytes) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The source of a packed ``MetricAnalysis`` (``MetricAnalysis.packed``)."""
    import pickle
    import zlib

    return pickle.loads(zlib.decompress(blob))


# trial -> (its config, that config pickled): the state is saved every few seconds, and a
# trial's config is replaced (Trial.set_config), never changed in place
_PICKLED_CONFIGS: "weakref.WeakKeyDictionary[Any, Tuple[Any, Optional[str]]]" = \
    weakref.WeakKeyDictionary()


def forget_config_pickle(trial) -> None:
    """Let go of ``trial``'s pickled config (its state entry is encoded for good)."""
    _PICKLED_CONFIGS.pop(trial, None)


def _config_pickle(trial) -> Optional[str]:
    """The trial's config pickled as text, or None when it cannot be (readers then use
    the JSON view)."""
    from tunelib import _pickling

    cached = _PICKLED_CONFIGS.get(trial)
    if cached is not None and cached[0] is trial.config:
        return cached[1]
    try:
        text: Optional[str] = _pickling.to_text(trial.config)
    except Exception:  # noqa: BLE001 - the state must be saved whatever a config holds
        text = None
    _PICKLED_CONFIGS[trial] = (trial.config, text)
    return text


def exact_config_in(result: Dict[str, Any], config: Any,
                    json_view: Any = None) -> Dict[str, Any]:
    """``result`` with its ``config`` (read back as JSON) replaced by ``config``, the
    trial's unpickled objects, when it is that config's JSON view; a result reported
    under an earlier config (before a PBT exploit) keeps its own JSON view.

    ``json_view`` is ``config``'s, when the caller has it. The views are also compared
    without the memory addresses in reprs (``<function <lambda> at 0x7f...>``): the
    result's config is a copy the trial's process made.

    >>> exact_config_in({"loss": 1, "config": {"t": [1, 2]}}, {"t": (1, 2)})
    {'loss': 1, 'config': {'t': (1, 2)}}
    """
    if "config" not in result:
        return result
    view = to_json_value(config) if json_view is None else json_view
    if view != result["config"] and \
            _without_addresses(view) != _without_addresses(result["config"]):
        return result
    return dict(result, config=config)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _without_addresses(value: Any) -> Any:
    if isinstance(value, str):
        return _ADDRESS.sub("", value) if " at 0x" in value else value
    if isinstance(value, dict):
        return {k: _without_addresses(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_addresses(v) for v in value]
    return value


def runner_data(*, metric: Optional[str], mode: Optional[str], name: str, session: str,
                start_time: float, iteration: int, has_errored: bool, should_stop: bool,
                reuse_actors: bool, fail_fast: Any, max_pending_trials: int,
                checkpoint_config: Any, has_stopper: bool) -> Dict[str, Any]:
    """The experiment state's ``runner_data``: Ray's ``TuneController`` attributes (the
    ones Ray's resume restores; tunelib's values, or the defaults of Ray's controller where
    tunelib has no such setting), and tunelib's own under ``_tunelib``."""
    from tunelib import _ray_compat

    data = {
        "_earliest_stopping_actor": float("inf"),  # Ray's "no actor is being stopped"
        "_actor_cleanup_timeout": 600,
        "_actor_force_cleanup_timeout": 10,
        "_reuse_actors": bool(reuse_actors),
        "_buffer_length": 1,
        "_buffer_min_time_s": 0.0,
        "_buffer_max_time_s": 100.0,
        "_max_pending_trials": max_pending_trials,
        "_metric": metric,
        "_total_time": time.time() - start_time,
        "_iteration": iteration,
        "_has_errored": has_errored,
        "_fail_fast": fail_fast,
        "_print_trial_errors": True,
        "_cached_trial_decisions": {},
        "_queued_trial_decisions": {},
        "_should_stop_experiment": should_stop,
        "_start_time": start_time,
        "_session_str": session,
        "_checkpoint_period": "auto",
        "_trial_checkpoint_config": _ray_compat.json_fallback(
            _ray_compat.checkpoint_config(checkpoint_config)),
        "_resumed": False,  # Ray sets it itself once it has loaded the state
        "_tunelib": {"mode": mode, "name": name},
    }
    if not has_stopper:  # Ray's resume would replace the stopper it is given by this one
        data["_stopper"] = _ray_compat.json_fallback(_ray_compat.NOOP_STOPPER)
    return data


def experiment_state(trial_data: List[List[str]], runner_data: Dict[str, Any],
                     start_time: float) -> str:
    """The whole ``experiment_state-*.json`` text."""
    return experiment_state_encoded([encode_trial_entry(e) for e in trial_data], runner_data,
                                    start_time)


def encode_trial_entry(entry: List[str]) -> str:
    """One ``trial_data`` entry as its JSON text (a finished trial's is encoded once and
    reused by every later save: :func:`experiment_state_encoded`)."""
    return dumps(entry)


def experiment_state_encoded(encoded: List[str], runner_data: Dict[str, Any],
                             start_time: float) -> str:
    """:func:`experiment_state` from entries already encoded by :func:`encode_trial_entry`:
    the same text, joined instead of re-encoded (10,000 trials: milliseconds)."""
    return "".join(experiment_state_parts(encoded, runner_data, start_time))


def experiment_state_parts(encoded: Iterable[str], runner_data: Dict[str, Any],
                           start_time: float) -> Iterator[str]:
    """The text of :func:`experiment_state_encoded` in pieces, an entry each: written as
    they come, a save never holds the whole text (88 MB at 10,000 trials, twice)."""
    yield '{"trial_data": ['
    for i, entry in enumerate(encoded):
        yield ", " + entry if i else entry
    yield ('], "runner_data": ' + dumps(runner_data) + ', "stats": '
           + dumps({"start_time": start_time}) + "}")


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value or {}


_WS = r"[ \t\n\r]*"   # JSON's whitespace
_STATE_HEAD = re.compile(_WS + r'\{' + _WS + r'"trial_data"' + _WS + ":" + _WS + r"\[" + _WS)
_NEXT_ENTRY = re.compile(_WS + r"([,\]])" + _WS)


def parse_state(raw: bytes) -> Dict[str, Any]:
    """An ``experiment_state-*.json`` file's content as ``json.loads`` gives it, except
    that ``"trial_data"`` is an iterator that parses its entries one at a time (10,000
    trials: 88 MB of text, held whole by ``json.loads`` beside the bytes and the text
    decoded from them, with every entry's strings on top). The rest of the state is
    checked when the entries are used up. ``json.JSONDecodeError`` (or
    ``UnicodeDecodeError``) where it is not JSON; a state that does not start with its
    ``trial_data`` (keys in another order, a byte-order mark, UTF-16: neither Ray nor
    tunelib writes one) is parsed whole, as ``json.loads`` parses it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(raw)
    head = _STATE_HEAD.match(text)
    if head is None:
        return json.loads(raw)
    state: Dict[str, Any] = {}
    state["trial_data"] = _state_entries(text, head.end(), state)
    return state


def _state_entries(text: str, pos: int, state: Dict[str, Any]) -> Iterator[Any]:
    decode = json.JSONDecoder().raw_decode
    if not text.startswith("]", pos):
        while True:
            entry, pos = decode(text, pos)
            yield entry
            sep = _NEXT_ENTRY.match(text, pos)
            if sep is None:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            pos = sep.end()
            if sep.group(1) == "]":
                break
    else:
        pos += 1
    rest = json.loads('{"trial_data": []' + text[pos:])   # runner_data, stats: small
    rest.pop("trial_data")
    state.update(rest)


def index_from_trial_id(trial_id: str) -> int:
    """``<prefix>_00007`` -> 7 (the trial's number in creation order; 0 when absent)."""
    _, sep, tail = trial_id.rpartition("_")
    return int(tail) if sep and tail.isdigit() else 0  # a searcher's 8-hex id has none


def trials_from_state(state: Dict[str, Any], keep: Optional[Sequence[str]] = None
                      ) -> List[Tuple[Any, Dict[str, Any]]]:
    """Trial records from an experiment state dict (Ray's or tunelib's), with tunelib's
    bookkeeping restored where present; returns ``(trial, runtime)`` pairs.

    ``keep``: only these keys of each runtime are returned, and each entry of
    ``state["trial_data"]`` is let go of once read (reading 10,000 trials held ~20 KB of
    parsed JSON a trial at once otherwise); ``state["trial_data"]`` may be an iterator
    (:func:`parse_state`)."""
    from tunelib import _ray_compat
    from tunelib._lifecycle import TrialStatus
    from tunelib.trial import Trial

    out = []
    unpickled_failures: List[Tuple[str, BaseException]] = []
    entries = state.get("trial_data", [])
    let_go = keep is not None and isinstance(entries, list)
    for i, pair in enumerate(entries):
        if let_go:
            entries[i] = None
        t = _json_field(pair[0])
        rt = _json_field(pair[1]) if len(pair) > 1 else {}
        trial_id = str(t.get("trial_id", ""))
        last_result = rt.get("last_result")
        evaluated = t.get("evaluated_params")
        try:
            status = TrialStatus(t.get("status") or TrialStatus.TERMINATED)
        except ValueError:
            status = TrialStatus.TERMINATED
        trial = Trial(
            trial_id=trial_id,
            config=t.get("config") if isinstance(t.get("config"), dict) else {},
            trainable_name=str(t.get("trainable_name", "")),
            experiment_tag=t.get("experiment_tag") or "",
            evaluated_params=evaluated if isinstance(evaluated, dict) else {},
            dirname=t.get("relative_logdir") or "",
            status=status,
            last_result=last_result if isinstance(last_result, dict) else {},
            num_failures=int(rt.get("num_failures") or 0),
            error_file=rt.get("error_filename"),
            custom_trial_name=t.get("custom_trial_name"),
            start_time=rt.get("start_time"),
            index=index_from_trial_id(trial_id),
            restore_path=t.get("restore_path"),
            resources=(_ray_compat.resources_from_placement_group_factory(
                t.get("placement_group_factory")) or {"cpu": 1.0}),
        )
        trial.checkpoint_dir_name = trial.last_result.get("checkpoint_dir_name")
        # a reader (``keep``) never adds results: Ray's pickled windows stay unread
        trial.metric_analysis = MetricAnalysis.from_runtime(rt, windows=keep is None)
        _restore_bookkeeping(trial, rt)
        _restore_config(trial, rt, t.get("config"), unpickled_failures)
        out.append((trial, rt if keep is None else {k: rt[k] for k in keep if k in rt}))
    if unpickled_failures:
        _warn_json_configs(unpickled_failures)
    return out


def _restore_config(trial, runtime: Dict[str, Any], json_view: Any,
                    failures: List[Tuple[str, BaseException]]) -> None:
    """The trial's config as the objects it was given (tunelib's state pickles it beside
    Ray's JSON view); Ray's files, and pickles that cannot be loaded here, keep the JSON."""
    from tunelib import _pickling

    own = runtime.get("tunelib")
    text = own.get("config_pickle") if isinstance(own, dict) else None
    if not isinstance(text, str):
        return
    try:
        config = _pickling.from_text(text)
    except Exception as exc:  # noqa: BLE001 - a module missing here, a damaged field
        failures.append((trial.trial_id, exc))
        return
    if isinstance(config, dict):
        trial.last_result = exact_config_in(trial.last_result, config, json_view)
        trial.config = config


def _warn_json_configs(failures: List[Tuple[str, BaseException]]) -> None:
    import warnings

    trial_id, exc = failures[0]
    warnings.warn(
        f"The pickled configs of {len(failures)} trial(s) cannot be loaded here (trial "
        f"{trial_id}: {type(exc).__name__}: {exc}); their JSON view in the experiment state is "
        "used instead, where tuples are lists and objects are strings. Make the modules the "
        "config values come from importable, then read the experiment again.",
        RuntimeWarning, stacklevel=3,
    )


def _restore_bookkeeping(trial, runtime: Dict[str, Any]) -> None:
    """tunelib's own fields of a trial's runtime state (absent in Ray's files, where the
    kept checkpoints come from Ray's pickled checkpoint manager)."""
    own = runtime.get("tunelib")
    if not isinstance(own, dict):
        trial.kept_checkpoints = _ray_kept_checkpoints(runtime.get("checkpoint_manager"))
        if trial.kept_checkpoints:
            trial.next_checkpoint_index = checkpoint_index(trial.kept_checkpoints[-1][0]) + 1
        return
    trial.checkpoint_dir_name = own.get("checkpoint_dir_name", trial.checkpoint_dir_name)
    trial.next_checkpoint_index = int(own.get("next_checkpoint_index") or 0)
    progress = own.get("checkpoint_progress") or (0, 0.0)
    trial.checkpoint_progress = (int(progress[0]), float(progress[1]))
    trial.attempts = int(own.get("attempts") or 0)
    trial.error_msg = own.get("error_msg") if trial.status == "ERROR" else None
    recorded = list(runtime.get("best_checkpoints") or [])
    if isinstance(runtime.get("latest_checkpoint_result"), dict):
        recorded.append(runtime["latest_checkpoint_result"])
    metrics = {c["dir_name"]: c.get("metrics") or {} for c in recorded if "dir_name" in c}
    kept = own.get("kept_checkpoints") or list(metrics)
    trial.kept_checkpoints = [(name, metrics.get(name, {})) for name in kept]


def _ray_kept_checkpoints(manager_field: Any) -> List[Tuple[str, Dict[str, Any]]]:
    """``(dir name, metrics)`` of the checkpoints Ray's ``_CheckpointManager`` kept (its
    best ones and the latest), oldest first; ``[]`` when the field cannot be read."""
    from tunelib import _ray_compat

    if not (isinstance(manager_field, dict)
            and manager_field.get("_type") == _ray_compat.CLOUDPICKLE_FALLBACK):
        return []
    try:
        manager = _ray_compat.loads(bytes.fromhex(manager_field["value"]))
    except Exception:  # noqa: BLE001 - an unreadable manager: the dirs on storage tell
        return []
    results = list(getattr(manager, "_checkpoint_results", None) or [])
    results.append(getattr(manager, "_latest_checkpoint_result", None))
    kept: Dict[str, Dict[str, Any]] = {}
    for result in results:
        path = getattr(getattr(result, "checkpoint", None), "path", None)
        name = path.rstrip("/").rsplit("/", 1)[-1] if isinstance(path, str) else ""
        if is_checkpoint_dir_name(name):
            kept[name] = dict(getattr(result, "metrics", None) or {})
    return sorted(kept.items(), key=lambda item: checkpoint_index(item[0]))


# --------------------------------------------------------------------------- PBT policy logs


def append_pbt_policy(fs, experiment_path: str, trial_id: str, donor_id: str,
                      policy: Any) -> None:
    """Ray's PBT files: every exploit in ``pbt_global.txt``; per trial, its donor's
    history followed by the exploit in ``pbt_policy_<trial_id>.txt``."""
    from tunelib import storage

    line = dumps(policy) + "\n"
    global_file = storage.join(experiment_path, PBT_GLOBAL_FILE)
    previous = storage.read_text(fs, global_file) if storage.exists(fs, global_file) else ""
    storage.write_text(fs, global_file, previous + line)
    donor_file = storage.join(experiment_path, pbt_policy_file(donor_id))
    history = storage.read_text(fs, donor_file) if storage.exists(fs, donor_file) else ""
    storage.write_text(fs, storage.join(experiment_path, pbt_policy_file(trial_id)),
                       history + line)
