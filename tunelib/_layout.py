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

import json
import math
import re
import time
from typing import Any, Dict, List, Optional, Tuple

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
# ...], "runner_data": {...}, "stats": {...}}``, each pair two JSON *strings*. Only plain
# JSON fields are written and read (Ray's pickled hex blobs are ignored), so Ray's files and
# tunelib's read the same way. tunelib's own bookkeeping (latest checkpoint, what retention
# kept, attempts) sits under the runtime's ``"tunelib"`` key, which Ray ignores.


def find_experiment_state(fs, experiment_path: str) -> Optional[str]:
    """Path of the newest ``experiment_state-*.json`` in the dir, or None (the timestamp
    in the name sorts chronologically)."""
    import fnmatch

    from tunelib import storage

    matching = fnmatch.filter(storage.list_dir(fs, experiment_path), EXPERIMENT_STATE_PATTERN)
    return storage.join(experiment_path, max(matching)) if matching else None


def trial_state(trial, max_failures: int, checkpoint_config) -> List[str]:
    """One ``trial_data`` entry: the trial's (info, runtime) JSON strings."""
    from tunelib._lifecycle import TrialStatus
    from tunelib._retention import best_checkpoints

    info = {
        "stub": False,
        "trainable_name": trial.trainable_name,
        "trial_id": trial.trial_id,
        "config": to_json_value(trial.config),
        "evaluated_params": to_json_value(trial.evaluated_params),
        "experiment_tag": trial.experiment_tag,
        "stopping_criterion": {},
        "max_failures": max_failures,
        "status": trial.status,
        "relative_logdir": trial.dirname,
        "custom_trial_name": trial.custom_trial_name,
        "custom_dirname": None,
        "restore_path": trial.restore_path,
    }
    failed = trial.status == TrialStatus.ERROR or trial.num_failures
    runtime = {
        "start_time": trial.start_time,
        "num_failures": trial.num_failures,
        "num_failures_after_restore": 0,
        "error_filename": trial.error_file if failed else None,
        "pickled_error_filename": ERROR_PKL if trial.error_file else None,
        "last_result": to_json_value(trial.last_result),
        "last_result_time": trial.last_result.get("timestamp"),
        # Ray's checkpoint manager, pickled in Ray's file, as JSON: what Result.best_checkpoints
        # lists (worst first), and the latest checkpoint, kept on storage even when it is
        # not among them; the reader pairs both with the dirs on storage
        "best_checkpoints": [
            {"dir_name": name, "metrics": to_json_value(metrics)}
            for name, metrics in best_checkpoints(trial.kept_checkpoints, checkpoint_config)
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
        },
    }
    return [dumps(info, indent=2), dumps(runtime, indent=2)]


def experiment_state(trial_data: List[List[str]], runner_data: Dict[str, Any],
                     start_time: float) -> str:
    """The whole ``experiment_state-*.json`` text."""
    return dumps({"trial_data": trial_data, "runner_data": runner_data,
                  "stats": {"start_time": start_time}})


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value or {}


def index_from_trial_id(trial_id: str) -> int:
    """``<prefix>_00007`` -> 7 (the trial's number in creation order; 0 when absent)."""
    _, sep, tail = trial_id.rpartition("_")
    return int(tail) if sep and tail.isdigit() else 0  # a searcher's 8-hex id has none


def trials_from_state(state: Dict[str, Any]) -> List[Tuple[Any, Dict[str, Any]]]:
    """Trial records from an experiment state dict (Ray's or tunelib's), with tunelib's
    bookkeeping restored where present; returns ``(trial, runtime)`` pairs."""
    from tunelib._lifecycle import TrialStatus
    from tunelib.trial import Trial

    out = []
    for pair in state.get("trial_data", []):
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
        )
        trial.checkpoint_dir_name = trial.last_result.get("checkpoint_dir_name")
        _restore_bookkeeping(trial, rt)
        out.append((trial, rt))
    return out


def _restore_bookkeeping(trial, runtime: Dict[str, Any]) -> None:
    """tunelib's own fields of a trial's runtime state (absent in Ray's files)."""
    own = runtime.get("tunelib")
    if not isinstance(own, dict):
        return
    trial.checkpoint_dir_name = own.get("checkpoint_dir_name", trial.checkpoint_dir_name)
    trial.next_checkpoint_index = int(own.get("next_checkpoint_index") or 0)
    progress = own.get("checkpoint_progress") or (0, 0.0)
    trial.checkpoint_progress = (int(progress[0]), float(progress[1]))
    trial.attempts = int(own.get("attempts") or 0)
    recorded = list(runtime.get("best_checkpoints") or [])
    if isinstance(runtime.get("latest_checkpoint_result"), dict):
        recorded.append(runtime["latest_checkpoint_result"])
    metrics = {c["dir_name"]: c.get("metrics") or {} for c in recorded if "dir_name" in c}
    kept = own.get("kept_checkpoints") or list(metrics)
    trial.kept_checkpoints = [(name, metrics.get(name, {})) for name in kept]


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
