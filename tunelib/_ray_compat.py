"""Ray's pickles, without Ray: read what Ray pickled, write what Ray unpickles.

Ray keeps parts of an experiment pickled: ``tuner.pkl`` (its TuneConfig and RunConfig),
``basic-variant-state-*.json`` (the variant generator; a pickle, whatever its name says)
and, inside ``experiment_state-*.json``, hex blobs of each trial's resources, storage and
checkpoints. tunelib never imports Ray, so it does both directions itself.

Reading (:func:`loads`): a ``pickle.Unpickler`` whose ``find_class`` maps Ray's names:

- Ray's config dataclasses and ``PlacementGroupFactory`` become tunelib's, rebuilt through
  tunelib's constructors from Ray's fields (so tunelib's validation and defaults apply);
- another ``ray.tune`` / ``ray.train`` name that tunelib has at the same path under
  ``tunelib.`` (search spaces, searchers, schedulers, stoppers, callbacks: tunelib keeps
  Ray's module paths and attribute names) is tunelib's;
- Ray's vendored cloudpickle (``ray.cloudpickle``) is cloudpickle, so classes and functions
  Ray pickled by value load as they would under Ray;
- every other Ray name loads as a :class:`RayStandIn`, which keeps the name, arguments and
  state, so the rest of the file still loads.

Like ``pickle.load`` itself, this runs what the file names: load only experiments you trust.

Writing (:func:`dumps`): Ray unpickles objects of its own classes, which are not
importable here, so ``pickle`` cannot write them. A :class:`RayObject` names one (Ray's
module, class name and the ``__dict__`` Ray's class restores) and :func:`dumps` writes it
with the opcodes Ray's own pickles of such objects consist of: ``STACK_GLOBAL`` of the
class by name, ``NEWOBJ``, ``BUILD`` with the state. Everything else in the stream is
written by ``pickle`` itself. Ray's ``cloudpickle.loads`` reads the result back as the
object it would have pickled.

Example::

    blob = dumps(RayObject("ray.tune.execution.placement_groups", "PlacementGroupFactory",
                           {"_bundles": [{"CPU": 1.0}], "_head_bundle_is_empty": False,
                            "_strategy": "PACK", "_args": (), "_kwargs": {}}))
    loads(blob)      # tunelib's PlacementGroupFactory([{'CPU': 1.0}], strategy='PACK')
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import io
import math
import pickle
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class RayObject:
    """An object of Ray's class ``module.qualname`` whose ``__dict__`` is ``state``."""

    module: str
    qualname: str
    state: Any

    def __reduce_ex__(self, protocol):
        raise TypeError("a RayObject is written by _ray_compat.dumps, not by pickle")


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` (protocol 5, as Ray), writing each :class:`RayObject` as an object of
    Ray's class.

    The stream is assembled here: each RayObject (and each container holding one) from its
    opcodes, every other value as ``pickle`` writes it. Those parts are pickled without a
    memo (``Pickler.fast``) so that they can be put side by side; shared and
    self-referencing values are therefore written as copies (the values here are trees).
    """
    out = bytearray(pickle.PROTO + bytes([5]))
    _write(obj, out)
    out += pickle.STOP
    return bytes(out)


def _write(obj: Any, out: bytearray) -> None:
    if isinstance(obj, RayObject):
        out += _plain(obj.module) + _plain(obj.qualname)
        out += pickle.STACK_GLOBAL + pickle.EMPTY_TUPLE + pickle.NEWOBJ
        _write(obj.state, out)
        out += pickle.BUILD
        return
    try:
        out += _plain(obj)  # most values hold no RayObject: pickle writes them at once
        return
    except TypeError:
        if type(obj) not in (dict, list, tuple):
            raise
    if type(obj) is dict:
        out += pickle.EMPTY_DICT + pickle.MARK
        for key, value in obj.items():
            _write(key, out)
            _write(value, out)
        out += pickle.SETITEMS
    elif type(obj) is list:
        out += pickle.EMPTY_LIST + pickle.MARK
        for item in obj:
            _write(item, out)
        out += pickle.APPENDS
    else:
        out += pickle.MARK
        for item in obj:
            _write(item, out)
        out += pickle.TUPLE


def _plain(obj: Any) -> bytes:
    """``pickle``'s opcodes for ``obj``, without the header, frame and STOP (no memo)."""
    if type(obj) is str:
        return _plain_str(obj)
    if isinstance(obj, _Pickled):
        return obj.opcodes
    return _pickled(obj)


@functools.lru_cache(maxsize=4096)
def _plain_str(text: str) -> bytes:  # the names and keys that every trial's state repeats
    return _pickled(text)


def _pickled(obj: Any) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True
    pickler.dump(obj)
    data = buffer.getbuffer()
    start = 2 + (9 if data[2:3] == pickle.FRAME else 0)
    return bytes(data[start:-1])


@dataclass(frozen=True)
class _Pickled:
    """A value pickled once, written as its opcodes wherever it occurs."""

    opcodes: bytes

    def __reduce_ex__(self, protocol):
        raise TypeError("written by _ray_compat.dumps, not by pickle")


# Ray's objects in an experiment state, under the names Ray 2.60 pickles them by. Their
# fields are what Ray's classes keep in ``__dict__`` (checked against Ray-written states in
# shared/fixtures); anything Ray recomputes on load is left out.
CLOUDPICKLE_FALLBACK = "CLOUDPICKLE_FALLBACK"  # Ray's JSON marker of a pickled value


def to_hex(obj: Any) -> str:
    """``obj`` pickled (:func:`dumps`), as the hex text Ray keeps pickled trial fields in."""
    return dumps(obj).hex()


def json_fallback(obj: Any) -> Dict[str, str]:
    """``obj`` as Ray's JSON encoder writes a value JSON cannot hold."""
    return {"_type": CLOUDPICKLE_FALLBACK, "value": to_hex(obj)}


@functools.lru_cache(maxsize=1)
def _local_filesystem() -> _Pickled:
    import pyarrow.fs

    return _Pickled(_plain(pyarrow.fs.LocalFileSystem()))


def _filesystem(local: bool) -> Any:
    # Ray replaces a trial's filesystem with the one it opens the experiment with, so a
    # remote one (with its credentials) is never written; the local one says "local"
    return _local_filesystem() if local else None


def storage_context(storage_fs_path: str, experiment_dir_name: str, trial_dir_name: str,
                    checkpoint_index: int, local: bool, timestamp: str) -> RayObject:
    """Ray's ``StorageContext`` of one trial (where its files are; the next checkpoint's
    index)."""
    sync = {"sync_period": 300, "sync_timeout": 1800, "sync_artifacts": False,
            "sync_artifacts_on_checkpoint": True}
    filesystem = _filesystem(local)
    return RayObject("ray.train._internal.storage", "StorageContext", {
        "custom_fs_provided": False,
        "experiment_dir_name": experiment_dir_name,
        "trial_dir_name": trial_dir_name,
        "current_checkpoint_index": checkpoint_index,
        "sync_config": RayObject("ray.train", "SyncConfig", sync),
        "storage_filesystem": filesystem,
        "storage_fs_path": storage_fs_path,
        "syncer": RayObject("ray.train._internal.storage", "_FilesystemSyncer", {
            "storage_filesystem": filesystem, "sync_period": 300, "sync_timeout": 1800,
            "last_sync_up_time": float("-inf"), "last_sync_down_time": float("-inf"),
            "_sync_process": None, "_current_cmd": None}),
        "_timestamp": timestamp,
    })


@functools.lru_cache(maxsize=64)
def _placement_group_factory_hex(bundle: tuple) -> str:
    return to_hex(RayObject("ray.tune.execution.placement_groups", "PlacementGroupFactory", {
        "_bundles": [dict(bundle)], "_head_bundle_is_empty": False, "_strategy": "PACK",
        "_args": (), "_kwargs": {}}))


def placement_group_factory_hex(resources: Dict[str, float]) -> str:
    """Ray's ``PlacementGroupFactory`` of a trial's resources (``{"cpu": 1, "gpu": 0.5}``:
    one bundle, Ray's resource names), pickled as hex."""
    names = {"cpu": "CPU", "gpu": "GPU"}
    bundle = {names.get(k, k): float(v) for k, v in resources.items() if v}
    return _placement_group_factory_hex(tuple(sorted((bundle or {"CPU": 1.0}).items())))


def resources_from_placement_group_factory(text: Any) -> Optional[Dict[str, float]]:
    """A trial's resources (tunelib's lower-case names, bundles added up) from Ray's hex
    ``placement_group_factory``; None when ``text`` is not one."""
    try:
        factory = _loads_hex(text)
    except Exception:  # noqa: BLE001 - an unreadable field: the default resources
        return None
    total: Dict[str, float] = {}
    for bundle in getattr(factory, "bundles", None) or []:
        for key, value in bundle.items():
            total[str(key).lower()] = total.get(str(key).lower(), 0.0) + float(value)
    return total or None


@functools.lru_cache(maxsize=256)
def _loads_hex(text: str) -> Any:
    return loads(bytes.fromhex(text))


def checkpoint_config(config: Any) -> RayObject:
    """Ray's ``CheckpointConfig`` with the fields of tunelib's ``config``."""
    return RayObject("ray.tune", "CheckpointConfig",
                     {f.name: getattr(config, f.name) for f in dataclasses.fields(config)})


def training_result(path: str, metrics: Dict[str, Any], local: bool) -> RayObject:
    """Ray's ``_TrainingResult``: a checkpoint (its directory) and the metrics it was
    reported with."""
    import uuid

    checkpoint = RayObject("ray.tune", "Checkpoint", {
        "path": path, "filesystem": _filesystem(local),
        "_uuid": uuid.uuid5(uuid.NAMESPACE_URL, path)})  # stable: the same file each save
    return RayObject("ray.train._internal.session", "_TrainingResult",
                     {"checkpoint": checkpoint, "metrics": metrics})


def checkpoint_manager(config: Any, best: List[RayObject],
                       latest: Optional[RayObject]) -> RayObject:
    """Ray's ``_CheckpointManager`` of a trial: ``best`` its kept checkpoints, worst first
    (:func:`training_result` objects; ``latest`` may be one of them)."""
    return RayObject("ray.train._internal.checkpoint_manager", "_CheckpointManager", {
        "_checkpoint_config": checkpoint_config(config),
        "_checkpoint_results": best,
        "_latest_checkpoint_result": latest,
    })


NOOP_STOPPER = RayObject("ray.tune.stopper.noop", "NoopStopper", {})
NONE_HEX = to_hex(None)


# --------------------------------------------------------------------------- reading


class RayStandIn:
    """An object of a Ray class tunelib has no equivalent for.

    It keeps what the pickle said: ``ray_path`` (Ray's ``module.qualname``), the arguments
    it was called with (when the pickle called it) and its state (as attributes).
    """

    ray_path = "ray"

    def __init__(self, *args, **kwargs):
        self.ray_args = args
        self.ray_kwargs = kwargs

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.ray_state = state

    def __reduce__(self):
        return _stand_in, (self.ray_path,), dict(self.__dict__)

    def __repr__(self) -> str:
        return f"<{self.ray_path} (a Ray object, kept as it was pickled)>"


@functools.lru_cache(maxsize=None)
def _stand_in_class(ray_path: str) -> type:
    name = ray_path.rsplit(".", 1)[-1]
    return type(name, (RayStandIn,), {"ray_path": ray_path, "__module__": __name__,
                                      "__qualname__": f"RayStandIn[{ray_path}]"})


def _stand_in(ray_path: str) -> RayStandIn:
    """A fresh stand-in for ``ray_path`` (how stand-ins pickle again)."""
    cls = _stand_in_class(ray_path)
    return cls.__new__(cls)


def _fields(state: Dict[str, Any], target: type, drop: tuple = ()) -> Dict[str, Any]:
    """``state``'s values for ``target``'s dataclass fields (Ray's private extras dropped)."""
    names = {f.name for f in dataclasses.fields(target) if f.init}
    return {k: v for k, v in state.items() if k in names and k not in drop}


def _is_ray(value: Any) -> bool:
    return isinstance(value, RayStandIn)


def _run_config(state: Dict[str, Any]):
    """Ray's RunConfig as tunelib's: a Ray object tunelib has no equivalent for is left
    out, with a warning; Ray's default SyncConfig, which Ray always sets, is no setting."""
    from tunelib.config import RunConfig

    kwargs = _fields(state, RunConfig)
    if _is_default_sync(kwargs.get("sync_config")):  # Ray always sets one
        kwargs["sync_config"] = None
    callbacks = kwargs.get("callbacks") or []
    kept = [cb for cb in callbacks if not _is_ray(cb)]
    for lost in (cb for cb in callbacks if _is_ray(cb)):
        _warn_dropped(f"RunConfig(callbacks=[{lost.ray_path}])")
    kwargs["callbacks"] = kept or None
    for name in ("stop", "progress_reporter"):
        if _is_ray(kwargs.get(name)):
            _warn_dropped(f"RunConfig({name}={kwargs[name].ray_path})")
            kwargs[name] = None
    if _is_ray(kwargs.get("storage_filesystem")):
        kwargs["storage_filesystem"] = None
    verbose = kwargs.get("verbose")
    if verbose is not None and not isinstance(verbose, int):
        kwargs["verbose"] = None
    return RunConfig(**kwargs)


def _is_default_sync(sync_config: Any) -> bool:
    defaults = {"sync_period": 300, "sync_timeout": 1800, "sync_artifacts": False,
                "sync_artifacts_on_checkpoint": True}
    return sync_config is None or all(getattr(sync_config, k, v) == v
                                      for k, v in defaults.items())


def _tune_config(state: Dict[str, Any]):
    from tunelib.config import TuneConfig

    kwargs = _fields(state, TuneConfig, drop=("chdir_to_trial_dir",))
    for name in ("search_alg", "scheduler", "trial_name_creator", "trial_dirname_creator"):
        if _is_ray(kwargs.get(name)):
            _warn_dropped(f"TuneConfig({name}={kwargs[name].ray_path})")
            kwargs[name] = None
    return TuneConfig(**kwargs)


def _dataclass_of(path: str) -> Callable[[Dict[str, Any]], Any]:
    def build(state: Dict[str, Any]):
        target = _import(path)
        return target(**_fields(state, target))

    return build


def _placement_group_factory(state: Dict[str, Any]):
    from tunelib.tune.execution.placement_groups import PlacementGroupFactory

    bundles = list(state.get("_bundles") or [])
    if state.get("_head_bundle_is_empty"):
        bundles.insert(0, {})
    return PlacementGroupFactory(bundles, strategy=state.get("_strategy", "PACK"))


# Ray's classes rebuilt by a function of Ray's state: (tunelib's class, the function)
_CONFIG = "tunelib.config."
_REBUILT: Dict[str, tuple] = {
    "ray.tune.tune_config.TuneConfig": (_CONFIG + "TuneConfig", _tune_config),
    "ray.tune.TuneConfig": (_CONFIG + "TuneConfig", _tune_config),
    "ray.tune.RunConfig": (_CONFIG + "RunConfig", _run_config),
    "ray.train.RunConfig": (_CONFIG + "RunConfig", _run_config),
    "ray.air.config.RunConfig": (_CONFIG + "RunConfig", _run_config),
    **{f"{where}.{name}": (_CONFIG + name, _dataclass_of(_CONFIG + name))
       for where in ("ray.tune", "ray.train", "ray.air.config")
       for name in ("CheckpointConfig", "FailureConfig")},
    **{path: ("tunelib.tune.execution.placement_groups.PlacementGroupFactory",
              _placement_group_factory)
       for path in ("ray.tune.execution.placement_groups.PlacementGroupFactory",
                    "ray.tune.PlacementGroupFactory")},
}

# Ray names that are a plain Python value here
_PLAIN: Dict[str, Any] = {
    "ray.tune.experimental.output.AirVerbosity": int,  # an IntEnum: its value
}


def _constructed(target: type, ray_path: str, state: Dict[str, Any]) -> Any:
    """tunelib's ``target`` for Ray's object whose ``__dict__`` is ``state``.

    When tunelib's class keeps the same attributes as Ray's (tunelib ports Ray's code),
    the object is Ray's state as it is. Otherwise it is built by tunelib's constructor:
    Ray keeps each argument ``x`` as ``self._x`` (or ``self.x``), and the objects Ray
    pickles beside an experiment are as constructed (Ray saves no scheduler state, and a
    searcher's lives in its own file). One that cannot be built is a
    :class:`RayStandIn`, with a warning.
    """
    kwargs = {**_arguments(target, state), **_ARGUMENTS.get(ray_path, _no_arguments)(state)}
    made = reference = None
    try:
        made = reference = target(**kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever the constructor objects to
        error = exc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # only its attributes are looked at
            try:
                reference = target()
            except Exception:  # noqa: BLE001 - a helper class without defaults
                reference = None
    if reference is None or _kept_by(reference.__dict__, state):
        same = object.__new__(target)
        same.__dict__.update(state)
        return same
    if made is not None:
        return made
    warnings.warn(f"Ray's {ray_path} could not be made tunelib's {target.__name__} "
                  f"({type(error).__name__}: {error}); it is kept as a stand-in.",
                  UserWarning, stacklevel=2)
    stand_in = _stand_in(ray_path)
    stand_in.__setstate__(state)
    return stand_in


def _kept_by(attributes: Dict[str, Any], ray_state: Dict[str, Any], depth: int = 3) -> bool:
    """Whether Ray's object state has every attribute of tunelib's (``attributes``), and
    so do the objects nested in them (in lists, the first item; in dicts, shared keys)."""
    if not set(attributes) <= set(ray_state):
        return False
    return all(_same_shape(value, ray_state[name], depth) for name, value in attributes.items())


def _same_shape(reference: Any, ray_value: Any, depth: int) -> bool:
    if depth == 0:
        return True
    if isinstance(reference, dict) and isinstance(ray_value, dict):
        return all(_same_shape(v, ray_value[k], depth - 1) for k, v in reference.items()
                   if k in ray_value)
    if isinstance(reference, (list, tuple)) and isinstance(ray_value, (list, tuple)):
        return not reference or not ray_value or _same_shape(reference[0], ray_value[0],
                                                             depth - 1)
    if hasattr(reference, "__dict__") and not isinstance(reference, type):
        return type(reference) is type(ray_value) and _kept_by(vars(reference),
                                                                vars(ray_value), depth - 1)
    return True


def _asha_arguments(state: Dict[str, Any]) -> Dict[str, Any]:
    """Ray's ASHA keeps its brackets, not ``grace_period`` and ``brackets``: each bracket's
    rungs are ``(milestone, recorded)``, highest first; the lowest of the first is the
    grace period."""
    brackets = state.get("_brackets")
    if not isinstance(brackets, list) or not brackets:
        return {}
    rungs = getattr(brackets[0], "_rungs", None)
    lowest = rungs[-1] if isinstance(rungs, list) and rungs else None
    grace = {"grace_period": lowest[0]} if isinstance(lowest, tuple) else {}
    return {"brackets": len(brackets), **grace}


def _no_arguments(state: Dict[str, Any]) -> Dict[str, Any]:
    return {}


# constructor arguments Ray keeps in another form than ``self._<argument>``
_ARGUMENTS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
    "ray.tune.schedulers.async_hyperband.AsyncHyperBandScheduler": _asha_arguments,
    "ray.tune.schedulers.async_hyperband.ASHAScheduler": _asha_arguments,
}


def _arguments(target: type, state: Dict[str, Any]) -> Dict[str, Any]:
    import inspect

    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return {}
    kwargs = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        for key in ("_" + parameter.name, parameter.name):
            if key in state:
                kwargs[parameter.name] = state[key]
                break
    return kwargs


@functools.lru_cache(maxsize=None)
def _rebuilding_class(ray_path: str, target: type,
                      build: Callable[[Dict[str, Any]], Any]) -> type:
    """What the unpickler creates Ray's ``ray_path`` objects as: a subclass of tunelib's
    ``target`` that keeps Ray's state until :func:`_finish` turns it into what ``build``
    makes of that state (a user's subclass that Ray pickled by value keeps its state)."""

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    return type(target.__name__, (target,), {
        "__setstate__": __setstate__, "__module__": __name__,
        "__qualname__": f"Rebuilding[{ray_path}]", "_ray_build": staticmethod(build)})


def _finish(obj: Any) -> Any:
    """Turn every object :func:`_rebuilding_class` made in ``obj`` into the tunelib object
    its Ray state describes, innermost first, in place (what refers to it stays valid)."""
    seen = set()

    def visit(value: Any) -> None:
        if id(value) in seen or isinstance(value, (str, bytes, int, float, type(None))):
            return
        seen.add(id(value))
        if isinstance(value, dict):
            children = list(value.keys()) + list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = list(value)
        else:
            children = list(getattr(value, "__dict__", {}).values()) \
                if not isinstance(value, type) else []
        for child in children:
            visit(child)
        build = type(value).__dict__.get("_ray_build")
        if build is not None:
            made = build(dict(value.__dict__))
            value.__class__ = type(made)
            value.__dict__.clear()
            value.__dict__.update(made.__dict__)

    visit(obj)
    return obj


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _tunelib_equivalent(module: str, qualname: str) -> Any:
    """tunelib's object at Ray's path (``ray.tune.x`` -> ``tunelib.tune.x``), or None."""
    if not module.startswith(("ray.tune", "ray.train")):
        return None
    try:
        obj: Any = importlib.import_module("tunelib" + module[len("ray"):])
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    owner = getattr(obj, "__module__", "") or ""
    return obj if owner.startswith("tunelib") else None


class RayUnpickler(pickle.Unpickler):
    """Unpickles Ray's files without Ray (see the module docstring for the mapping)."""

    def find_class(self, module: str, name: str):
        path = f"{module}.{name}"
        if module == "ray" or module.startswith("ray."):
            return _ray_class(module, name)
        try:
            return super().find_class(module, name)
        except ImportError as exc:  # a user's module that imports Ray
            if (exc.name or "").split(".")[0] != "ray":
                raise
            return _stand_in_class(path)


@functools.lru_cache(maxsize=None)
def _ray_class(module: str, name: str) -> Any:
    path = f"{module}.{name}"
    if path in _REBUILT:
        target, build = _REBUILT[path]
        return _rebuilding_class(path, _import(target), build)
    if path in _PLAIN:
        return _PLAIN[path]
    if module.startswith("ray.cloudpickle"):
        if name == "_make_skeleton_class":
            return _make_skeleton_class
        return _import("cloudpickle" + module[len("ray.cloudpickle"):] + "." + name)
    equivalent = _tunelib_equivalent(module, name)
    if equivalent is None:
        return _stand_in_class(path)
    if not isinstance(equivalent, type) or module.startswith(_SAME_STATE):
        return equivalent
    return _rebuilding_class(path, equivalent, functools.partial(_constructed, equivalent, path))


# tunelib's search spaces keep Ray's attributes: their objects load as Ray pickled them
_SAME_STATE = ("ray.tune.search.sample",)


def _make_skeleton_class(type_constructor, name, bases, *args):
    """cloudpickle's, for a class Ray pickled by value (a user's Callback...): its bases
    are tunelib's classes, and a Ray metaclass tunelib does not have (Ray's
    ``_CallbackMeta``) is ``type``."""
    from cloudpickle import cloudpickle

    if isinstance(type_constructor, type) and issubclass(type_constructor, RayStandIn):
        type_constructor = type
    bases = tuple(base.__mro__[1] if "_ray_build" in vars(base) else base for base in bases)
    return cloudpickle._make_skeleton_class(type_constructor, name, bases, *args)


def loads(data: bytes) -> Any:
    """Unpickle ``data``, written by Ray or by tunelib, without importing Ray."""
    return _finish(RayUnpickler(io.BytesIO(data)).load())


def names_ray(data: bytes) -> bool:
    """Whether the pickle ``data`` refers to a class or function of Ray's (Ray wrote it)."""
    import pickletools

    pushed: List[Any] = []
    memo: Dict[int, Any] = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                pushed.append(memo.get(int(arg)))
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = pushed[-1] if pushed else None
            elif op.name in ("STACK_GLOBAL", "GLOBAL"):
                module = pushed[-2] if op.name == "STACK_GLOBAL" else str(arg).split(" ")[0]
                if isinstance(module, str) and (module == "ray" or module.startswith("ray.")):
                    return True
                pushed.append(None)
            else:
                pushed.append(arg if isinstance(arg, str) else None)
    except Exception:  # noqa: BLE001 - not a pickle: not Ray's
        return False
    return False


def _warn_dropped(what: str) -> None:
    warnings.warn(
        f"{what} of the Ray experiment has no tunelib equivalent and is left out: the "
        "restored experiment runs without it (pass your own to the Tuner to replace it).",
        UserWarning, stacklevel=2,
    )


# --------------------------------------------------------------------------- Ray's files


def tuner_state_from_ray(state: Any) -> Optional[Dict[str, Any]]:
    """``{"tune_config", "run_config", "trainable_name"}`` of a ``tuner.pkl`` Ray wrote
    (unpickled by :func:`loads`), or None when ``state`` is not one.

    Ray's ``tuner.pkl`` holds the Tuner's attributes, without the trainable and the
    param space (those come from the caller, or the search state).
    """
    if not isinstance(state, dict) or "_tune_config" not in state:
        return None
    return {
        "tune_config": state.get("_tune_config"),
        "run_config": state.get("_run_config"),
        "trainable_name": state.get("__trainable_name"),
    }


def _unlimited(num_samples_left: Any) -> bool:
    return isinstance(num_samples_left, float) and math.isinf(num_samples_left) or (
        isinstance(num_samples_left, int) and num_samples_left >= 2 ** 62)


@dataclass
class RaySearchState:
    """Ray's variant generator, continued by tunelib's (see :func:`read_search_state`)."""

    generator: Any            # tunelib's BasicVariantGenerator, restored
    param_space: Dict[str, Any]
    file_name: str            # Ray's basic-variant-state file it comes from


def variant_generator_from_ray(state: Dict[str, Any]):
    """tunelib's ``BasicVariantGenerator`` continuing Ray's, and Ray's param space
    (``state``: Ray's ``basic-variant-state`` unpickled by :func:`loads`).

    What Ray had left to do, in Ray's order: the variants of the current sample it had
    generated but not yet turned into trials (exact configs, with the resolved values that
    name them), the ``points_to_evaluate`` not yet used, then the samples not yet drawn.
    Trials keep Ray's numbering.
    """
    from tunelib.search import BasicVariantGenerator

    iterators = [it for it in state.get("_iterators") or [] if isinstance(it, RayStandIn)]
    pending: List[tuple] = []
    points: List[Dict[str, Any]] = []
    counter, samples, param_space = 0, 0, {}
    for it in iterators:
        counter += int(getattr(it, "counter", 0) or 0)
        spec = getattr(it, "unresolved_spec", None) or {}
        param_space = spec.get("config") or param_space
        variants = getattr(it, "variants", None)
        generated = getattr(variants, "iterable", None)
        if not getattr(variants, "lazy_eval", False) and isinstance(generated, list):
            # Ray resolves the whole experiment spec: its paths start with "config"
            pending += [({path[1:]: value for path, value in resolved.items()},
                         variant_spec.get("config") or {})
                        for resolved, variant_spec in generated]
        points += list(getattr(it, "points_to_evaluate", None) or [])
        left = getattr(it, "num_samples_left", 0) or 0
        samples = -1 if samples == -1 or _unlimited(left) else samples + int(left)
    rng = getattr(state.get("_random_state"), "_rng", None)
    generator = BasicVariantGenerator(
        points_to_evaluate=points,
        max_concurrent=int(state.get("max_concurrent") or 0),
        constant_grid_search=bool(state.get("_constant_grid_search")),
        random_state=None if rng is None or _is_ray(rng) else rng,
    )
    finished = bool(state.get("_finished")) or not (pending or points or samples)
    if not finished:
        generator.add_configurations(param_space, -1 if samples == -1 else samples + len(points))
    saved = generator.get_state()
    if not finished:
        saved["_streams"][0].pending[:0] = pending  # before the stream's own next sample
        if saved["_total_samples"] is not None:
            saved["_total_samples"] += len(pending)
    saved.update(_counter=counter, _live_trials=set(state.get("_live_trials") or ()),
                 _finished=finished)
    generator.set_state(saved)
    return generator, param_space


def read_search_state(fs, experiment_path: str) -> Optional[RaySearchState]:
    """Ray's variant generator state, when the experiment's newest search state is Ray's
    (None when tunelib wrote it, or there is none).

    Raises ValueError for a Ray experiment searched by a ``Searcher``: its state is the
    search library's, pickled by Ray's wrapper, and tunelib does not continue it.
    """
    import fnmatch

    from tunelib import storage

    names = storage.list_dir(fs, experiment_path)

    def newest(pattern: str) -> Optional[str]:
        matching = fnmatch.filter(names, pattern)
        return max(matching) if matching else None

    searcher_file = newest("search_gen_state-*.json")
    if searcher_file and names_ray(storage.read_bytes(fs, storage.join(experiment_path,
                                                                       searcher_file))):
        raise ValueError(
            f"Cannot continue the search of the Ray experiment {experiment_path!r}: Ray saved "
            f"its searcher's state ({searcher_file}), which tunelib cannot read. Its results "
            "are readable (Tuner.restore(path).get_results()); to run more trials, start a new "
            "tunelib experiment."
        )
    variant_file = newest("basic-variant-state-*.json")
    if variant_file is None:
        return None
    data = storage.read_bytes(fs, storage.join(experiment_path, variant_file))
    if not names_ray(data):
        return None
    generator, param_space = variant_generator_from_ray(loads(data))
    return RaySearchState(generator, param_space, variant_file)


def import_search_state(fs, experiment_path: str) -> None:
    """Before tunelib continues a Ray experiment: its newest search state, made tunelib's,
    is written beside Ray's under a name that sorts right after it (Ray's files stay as
    they are; tunelib's next state files are newer still)."""
    ray_state = read_search_state(fs, experiment_path)
    if ray_state is None:
        return
    session = ray_state.file_name[len("basic-variant-state-"):-len(".json")]
    ray_state.generator.save_to_dir(experiment_path, session_str=f"{session}_tunelib")
