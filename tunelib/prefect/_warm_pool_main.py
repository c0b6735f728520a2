"""A warm flow-run process of the ``tunelib`` worker (:mod:`tunelib.prefect.warm_worker`).

    python -m tunelib.prefect._warm_pool_main

Started by the worker before any flow run arrives: it imports Prefect, tunelib and the
trial flow once (≈ 3-5 s of a fresh process on 2 cores), then runs flow runs one after
another, each exactly as ``python -m prefect.engine`` runs one (``load_flow_run``,
``load_flow`` from the deployment's entry point and pull steps, ``run_flow`` under
``handle_engine_signals``, on the main thread so that a cancel's SIGTERM reaches the
trial), but without a new interpreter.

Protocol (one JSON object a line): this process writes ``{"ready": pid}`` once imported,
then reads a request ``{"flow_run_id", "env", "working_dir"}`` from stdin and answers
``{"exit": code}`` when that run is over (0, or the code ``python -m prefect.engine``
would exit with). Stdin's end means "stop". Anything that unwinds past the engine (a
cancel's SIGTERM, a KeyboardInterrupt) ends the process without an answer: the worker
sees it die and reports the run crashed or cancelled, as the process worker does. The
protocol has its own pipe (stdout's descriptor); print() and logging go to stderr, the
worker's output.

Per run: the request's environment (``PREFECT__FLOW_RUN_ID`` and the pool's ``env``) is
applied and Prefect's settings are rebuilt from it (a ``SettingsContext`` for the run);
both, and the working directory, are put back afterwards; the run's logs are flushed
before the answer. The trainable loaded for a run stays cached for the next trial of
the same experiment (``tunelib.executor.remote_trial``), unless the driver wrote a
different one since.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from typing import Any, Dict, Optional, TextIO


def _protocol_channel() -> TextIO:
    """Stdout's descriptor for the protocol; fd 1 (print, subprocesses) becomes stderr."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return channel


def _forget_replaced_trainables() -> None:
    """Drop cached trainables whose experiment's ``trainable.pkl`` now holds another key
    (an experiment run again under the same path with a changed trainable). The cache
    knows paths, not filesystems: a trainable from an object store is loaded again."""
    import cloudpickle

    from tunelib.executor import remote_trial

    for path, (key, _) in list(remote_trial._trainables.items()):
        try:
            with open(path, "rb") as f:
                current = cloudpickle.load(f).get("key")
        except Exception:
            current = None
        if current != key:
            remote_trial._trainables.pop(path, None)


def run_one(flow_run_id: str, env: Dict[str, Optional[str]],
            working_dir: Optional[str]) -> int:
    """Run one flow run in this process; the exit code ``python -m prefect.engine`` would
    have. BaseExceptions (a cancel's SIGTERM) propagate."""
    from prefect.context import GLOBAL_SETTINGS_CONTEXT, SettingsContext
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import Settings

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    scratch = None if working_dir else tempfile.mkdtemp(prefix="tunelib-warm-run-")
    os.environ.update({k: v for k, v in env.items() if v is not None})
    os.chdir(working_dir or scratch)
    run_id = uuid.UUID(flow_run_id)
    try:
        _forget_replaced_trainables()
        with SettingsContext(profile=GLOBAL_SETTINGS_CONTEXT.profile, settings=Settings()):
            try:
                with handle_engine_signals(run_id):
                    flow_run = load_flow_run(flow_run_id=run_id)
                    run_logger = flow_run_logger(flow_run=flow_run)
                    try:
                        flow = load_flow(flow_run)
                    except Exception:
                        run_logger.error("Unexpected exception encountered when trying to "
                                         "load flow", exc_info=True)
                        raise
                    run_flow(flow, flow_run=flow_run, error_logger=run_logger)
                return 0
            except SystemExit as exc:  # handle_engine_signals' exit(0) / exit(1)
                return exc.code if isinstance(exc.code, int) else 1
            finally:
                APILogHandler().flush()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    channel = _protocol_channel()
    # what every trial needs, imported before the first request
    import prefect.engine  # noqa: F401
    import prefect.flow_engine  # noqa: F401

    import tunelib.prefect.deployed_trial  # noqa: F401
    import tunelib.prefect.flows  # noqa: F401
    from tunelib.executor import remote_trial  # noqa: F401

    def send(message: Dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    send({"ready": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            code = run_one(request["flow_run_id"], request.get("env") or {},
                           request.get("working_dir"))
        except BaseException:
            # a cancel (SIGTERM) or an interrupt: the interpreter's state is the run's
            # no more; the worker sees the process end and replaces it
            sys.stderr.flush()
            os._exit(1)
        send({"exit": code})
    return 0


if __name__ == "__main__":
    sys.exit(main())
