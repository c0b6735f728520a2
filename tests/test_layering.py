"""The layers of DESIGN.md, checked on the source (ast, milliseconds): Prefect is imported
only under tunelib/prefect/, that package builds on a few lower modules only, only the top
layer imports it, and no import cycle runs through it."""

from __future__ import annotations

import ast
import os
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tunelib")
PREFECT_LAYER = "tunelib.prefect"

# What tunelib.prefect may import of tunelib: the recording protocol it implements, the
# life-cycle vocabularies and the JSON encoding of results (the records' content), and what a deployed trial flow runs on a worker: the
# workers executor's trial side (remote_trial), its storage channel and message types, and
# the executor's event vocabulary. None of these imports tunelib.prefect back.
LOWER = {
    "tunelib._layout", "tunelib._lifecycle", "tunelib.recording",
    "tunelib.storage", "tunelib.executor.base", "tunelib.executor._messages",
    "tunelib.executor._storage_channel", "tunelib.executor.remote_trial",
}
# The layer above: the runner (creates the recorder), the workers executor (its client
# calls), the façade and the command line.
TOP = ("tunelib.runner", "tunelib.executor.prefect_workers", "tunelib.tune", "tunelib.train",
       "tunelib.cli")

# Known upward imports outside this layer's code, left out of the cycle check.
KNOWN_UPWARD: set = {
    # A prefect-block:// storage path, or a Prefect block as storage_filesystem, is resolved
    # by the Prefect layer (lazily, inside a function: only for such a path or block).
    ("tunelib.storage", "tunelib.prefect.storage_blocks"),
    # A local-executor worker whose trainable imported Prefect runs it inside the trial's
    # flow run (a user's @task there becomes a task run of the trial): the worker imports
    # trial_context lazily, only when "prefect" is in sys.modules already. Through
    # flows.trial's body it reaches remote_trial, which reuses the worker's trial runner.
    ("tunelib.executor.worker", "tunelib.prefect.trial_context"),
}
# Modules below the top layer allowed to import the Prefect layer: exactly these edges.
BELOW_TOP_EDGES = {("tunelib.executor.worker", "tunelib.prefect.trial_context"),
                   ("tunelib.storage", "tunelib.prefect.storage_blocks")}


def _modules() -> Dict[str, str]:
    """Dotted module name -> file, for every module of the tunelib package."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(path: str) -> Iterator[Tuple[str, Optional[str]]]:
    """(module, name imported from it) for every import in the file, at any depth."""
    dotted = [m for m, p in MODULES.items() if p == path][0]
    package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                yield base, alias.name


def _resolve(name: str) -> Optional[str]:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> Dict[str, Set[str]]:
    """tunelib module -> the tunelib modules it imports (module- and function-level)."""
    graph: Dict[str, Set[str]] = {}
    for module, path in MODULES.items():
        targets = set()
        for base, name in _imports(path):
            if base.split(".")[0] != "tunelib":
                continue
            sub = f"{base}.{name}" if name else None
            targets.add(sub if sub in MODULES else _resolve(base))
        targets.discard(module)
        targets.discard(None)
        graph[module] = targets
    return graph


def _in_layer(module: str) -> bool:
    return module == PREFECT_LAYER or module.startswith(PREFECT_LAYER + ".")


def test_only_the_prefect_layer_imports_prefect():
    offenders = []
    for module, path in MODULES.items():
        if _in_layer(module):
            continue
        for base, _ in _imports(path):
            if base == "prefect" or base.startswith("prefect."):
                offenders.append(f"{module} imports {base}")
    assert offenders == []


def test_the_prefect_layer_builds_only_on_lower_modules():
    graph = _graph()
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if _in_layer(m)
                    for t in targets if not _in_layer(t) and t not in LOWER)
    assert upward == []


def test_only_the_top_layer_imports_the_prefect_layer():
    graph = _graph()
    importers = sorted(m for m, targets in graph.items()
                       if not _in_layer(m) and any(_in_layer(t) for t in targets))
    below_top = [f"{m} -> {t}" for m in importers
                 if not any(m == top or m.startswith(top + ".") for top in TOP)
                 for t in sorted(graph[m]) if _in_layer(t) and (m, t) not in BELOW_TOP_EDGES]
    assert "tunelib.runner" in importers and below_top == []


def test_no_import_cycle_runs_through_the_prefect_layer():
    graph = _graph()
    for source, target in KNOWN_UPWARD:
        graph[source].discard(target)
    cycles = [c for c in _cycles(graph) if any(_in_layer(m) for m in c)]
    assert cycles == []


def test_lower_modules_do_not_import_the_prefect_layer():
    graph = _graph()
    back = sorted(f"{m} -> {t}" for m in LOWER for t in graph[m]
                  if _in_layer(t) and (m, t) not in BELOW_TOP_EDGES)
    assert back == []


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
