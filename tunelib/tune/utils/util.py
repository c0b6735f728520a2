"""Ray's ``ray.tune.utils.util`` helpers, without Ray: dict merging, the date stamp, GPU
waiting, and checks that a trainable pickles and a Trainable saves and restores.

Example::

    from tunelib.tune.utils import merge_dicts, validate_save_restore

    merge_dicts({"a": {"b": 1}}, {"a": {"c": 2}})    # {"a": {"b": 1, "c": 2}}
    validate_save_restore(MyTrainable, config={"lr": 0.1})
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Type, Union

from tunelib import _layout

logger = logging.getLogger(__name__)

__all__ = [
    "date_str", "deep_update", "diagnose_serialization", "merge_dicts",
    "validate_save_restore", "wait_for_gpu",
]


def date_str() -> str:
    """The date stamp Ray puts in experiment and trial names: ``2026-11-29_11-50-37``."""
    return _layout.session_str()


def merge_dicts(d1: dict, d2: dict) -> dict:
    """A new dict: ``d1`` deep-merged with ``d2`` (``d2`` wins; new keys allowed).

    >>> merge_dicts({"a": {"b": 1}, "x": 1}, {"a": {"c": 2}})
    {'a': {'b': 1, 'c': 2}, 'x': 1}
    """
    merged = copy.deepcopy(d1)
    deep_update(merged, d2, True, [])
    return merged


def deep_update(
    original: dict,
    new_dict: dict,
    new_keys_allowed: bool = False,
    allow_new_subkey_list: Optional[List[str]] = None,
    override_all_if_type_changes: Optional[List[str]] = None,
    override_all_key_list: Optional[List[str]] = None,
) -> dict:
    """Update ``original`` in place with ``new_dict``, recursing into dicts; Ray's rules.

    A key of ``new_dict`` missing from ``original`` raises unless ``new_keys_allowed``
    (or, one level down, unless its parent key is in ``allow_new_subkey_list``). A dict
    value listed in ``override_all_if_type_changes`` is replaced whole when its "type"
    changes; one listed in ``override_all_key_list`` is always replaced whole.

    >>> deep_update({"a": {"b": 1}}, {"a": {"b": 2}})
    {'a': {'b': 2}}
    """
    allow_new_subkey_list = allow_new_subkey_list or []
    override_all_if_type_changes = override_all_if_type_changes or []
    override_all_key_list = override_all_key_list or []
    for key, value in new_dict.items():
        if key not in original and not new_keys_allowed:
            raise Exception(f"Unknown config parameter `{key}` ")
        if (isinstance(original.get(key), dict) and isinstance(value, dict)
                and key not in override_all_key_list):
            if (key in override_all_if_type_changes and "type" in value
                    and "type" in original[key] and value["type"] != original[key]["type"]):
                original[key] = value
            else:
                deep_update(original[key], value,
                            True if key in allow_new_subkey_list else new_keys_allowed,
                            override_all_key_list=override_all_key_list)
        else:
            original[key] = value
    return original


# --------------------------------------------------------------------------- GPUs


@dataclass(frozen=True)
class _GPU:
    index: int
    uuid: str
    memory_util: float


def _query_gpus() -> List[_GPU]:
    """Every GPU ``nvidia-smi`` sees (physical indices, as CUDA_VISIBLE_DEVICES names them)."""
    if shutil.which("nvidia-smi") is None:
        raise RuntimeError("`wait_for_gpu` needs `nvidia-smi` on the PATH to read GPU memory.")
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,memory.used,memory.total",
         "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    gpus = []
    for line in out.splitlines():
        if line.strip():
            index, uuid, used, total = (part.strip() for part in line.split(","))
            gpus.append(_GPU(int(index), uuid, float(used) / float(total) if float(total) else 0.0))
    return gpus


def wait_for_gpu(
    gpu_id: Optional[Union[int, str]] = None,
    target_util: float = 0.01,
    retry: int = 20,
    delay_s: int = 5,
    gpu_memory_limit: Optional[float] = None,
) -> bool:
    """Block until the GPU's memory use is at most ``target_util`` (a fraction); True then.

    Called inside a trial, it waits for the trial's GPU (the first of
    ``CUDA_VISIBLE_DEVICES``, which tunelib sets from ``resources_per_trial``). ``gpu_id``
    is an ordinal (``0``, ``"0"``) or a UUID (``"GPU-0454..."``). Ray reads the GPUs with
    GPUtil; tunelib asks ``nvidia-smi`` directly.

    Raises ``RuntimeError`` when the memory is still in use after ``retry`` checks
    ``delay_s`` seconds apart, or when the trial has no GPU; ``ValueError`` for an unknown
    ``gpu_id``.

    Example::

        def train_fn(config):
            tune.utils.wait_for_gpu()   # the previous trial's memory is freed
            ...
    """
    if gpu_memory_limit is not None:
        warnings.warn("`gpu_memory_limit` is deprecated and ignored (as in Ray); use "
                      "`target_util`.", DeprecationWarning, stacklevel=2)
    if gpu_id is None:
        visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
        if not visible:
            raise RuntimeError(
                "No GPU ids found in CUDA_VISIBLE_DEVICES. Did you set Tune resources "
                "correctly, e.g. resources_per_trial={'gpu': 1}?"
            )
        gpu_id = visible[0].strip()
    attr = "index"
    if isinstance(gpu_id, str):
        if gpu_id.isdigit():
            gpu_id = int(gpu_id)
        else:
            attr = "uuid"
    elif isinstance(gpu_id, bool) or not isinstance(gpu_id, int):
        raise ValueError(f"gpu_id ({type(gpu_id)}) must be type str/int.")
    known = {getattr(g, attr) for g in _query_gpus()}
    if gpu_id not in known:
        raise ValueError(
            f"{gpu_id} not found in set of available GPUs: {known}. `wait_for_gpu` takes "
            "either GPU ordinal ID (e.g., '0') or UUID (e.g., "
            "'GPU-04546190-b68d-65ac-101b-035f8faed77d')."
        )
    for _ in range(int(retry)):
        gpu = next(g for g in _query_gpus() if getattr(g, attr) == gpu_id)
        if gpu.memory_util <= target_util:
            return True
        logger.info(f"Waiting for GPU util to reach {target_util}. Util: {gpu.memory_util:0.3f}")
        time.sleep(delay_s)
    raise RuntimeError("GPU memory was not freed.")


# --------------------------------------------------------------------------- trainables


def validate_save_restore(trainable_cls: Type, config: Optional[Dict] = None,
                          num_gpus: int = 0) -> bool:
    """Check that a Trainable class resumes correctly: train one instance 3 iterations,
    save it, restore a second instance from that and train it twice (iterations 4, 5).

    Both instances run in this process (Ray runs them as actors); ``num_gpus`` reserves
    nothing here, so it warns when set. Raises ``AssertionError`` when the round trip
    loses the iteration count.

    Example::

        assert validate_save_restore(MyTrainable, config={"lr": 0.1})
    """
    if num_gpus:
        warnings.warn("validate_save_restore(num_gpus=...) reserves no GPU in tunelib: both "
                      "instances run in this process, with its GPUs.", UserWarning, stacklevel=2)
    first, second = trainable_cls(config=config), trainable_cls(config=config)
    try:
        for _ in range(3):
            result = first.train()
        assert result.get("training_iteration"), (
            "Validation will not pass because it requires `training_iteration` to be returned."
        )
        with tempfile.TemporaryDirectory(prefix="tunelib-validate-") as checkpoint_dir:
            second.restore(first.save(checkpoint_dir))
        assert second.train()["training_iteration"] == 4
        assert second.train()["training_iteration"] == 5
    finally:
        first.stop()
        second.stop()
    return True


def diagnose_serialization(trainable: Callable) -> Union[bool, set]:
    """Find out why a trainable cannot be pickled (and so cannot reach a worker).

    Returns True when it pickles; otherwise the set of names of the globals and closure
    variables that fail to pickle (printing what it checked, as Ray does).

    Example::

        lock = threading.Lock()

        def train_fn(config):
            with lock: ...

        diagnose_serialization(train_fn)   # {'lock'}: create it inside train_fn
    """
    import cloudpickle

    def check(objects: Dict[str, Any], failures: set) -> None:
        for var_name, variable in objects.items():
            try:
                cloudpickle.dumps(variable)
                status, message = "PASSED", None
            except Exception as exc:  # noqa: BLE001 - any pickling failure is the answer
                status, message = "FAILED", f"{exc.__class__.__name__}: {exc}"
                failures.add(var_name)
            print(f"   {variable}[name='{var_name}'']... {status}")
            if message:
                print(f"   {message}")

    print(f"Trying to serialize {trainable}...")
    try:
        cloudpickle.dumps(trainable)
        print("Serialization succeeded!")
        return True
    except Exception as exc:  # noqa: BLE001
        print(f"Serialization failed: {exc}")
    print("Inspecting the scope of the trainable by running "
          f"`inspect.getclosurevars({trainable})`...")
    closure = inspect.getclosurevars(trainable)
    failures: set = set()
    if closure.globals:
        print(f"Detected {len(closure.globals)} global variables. Checking serializability...")
        check(closure.globals, failures)
    if closure.nonlocals:
        print(f"Detected {len(closure.nonlocals)} nonlocal variables. Checking "
              "serializability...")
        check(closure.nonlocals, failures)
    if not failures:
        print("Nothing was found to have failed the diagnostic test, though serialization "
              "did not succeed.")
    else:
        print(f"Variable(s) {failures} was found to be non-serializable. Consider either "
              "removing the instantiation/imports of these objects or moving them into the "
              "scope of the trainable. ")
    return failures
