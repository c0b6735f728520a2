"""One training worker process: ``python -m tunelib.train._rank_main``.

Started by ``WorkerGroup`` with its ranks in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT...); connects back, receives the group spec, sets up the
framework backend (a torch.distributed process group for TorchTrainer), runs
``train_loop_per_worker`` and says how it ended.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from multiprocessing.connection import Client

from tunelib.train._messages import RankDone, RankFailed, RankHello


def _exit_with_parent() -> None:
    """A rank never outlives the trial process that coordinates it (killed, crashed)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="tunelib-parent-watch").start()


def main() -> None:
    _exit_with_parent()
    rank = int(os.environ["RANK"])
    conn = Client(os.environ["TUNELIB_TRAIN_ADDRESS"], family="AF_UNIX",
                  authkey=bytes.fromhex(os.environ["TUNELIB_TRAIN_AUTHKEY"]))
    conn.send(RankHello(rank, os.getpid()))
    for path in conn.recv():
        if path not in sys.path:
            sys.path.append(path)
    payload = conn.recv_bytes()
    from tunelib import session as _session
    from tunelib.train._worker_group import RankSession, format_exception

    try:
        import cloudpickle

        spec = cloudpickle.loads(payload)
    except BaseException as exc:
        conn.send(RankFailed(rank, "The train_loop_per_worker could not be loaded in the "
                             f"training worker: {format_exception(exc)}"))
        return
    rank_session = RankSession(conn, spec, rank, int(os.environ["LOCAL_RANK"]),
                               int(os.environ["LOCAL_WORLD_SIZE"]),
                               int(os.environ.get("NODE_RANK", "0")))
    _session.set_session(rank_session)
    backend = None
    try:
        if spec.backend:
            from tunelib.train._backend import setup_backend

            backend = setup_backend(spec.backend, rank_session)
        if spec.takes_config:
            spec.train_fn(spec.config)
        else:
            spec.train_fn()
    except _session.TrialInterrupted:
        pass  # the driver stopped the trial: a normal end for this rank
    except BaseException as exc:
        conn.send(RankFailed(rank, format_exception(exc), _picklable(exc)))
        return
    finally:
        if backend is not None:
            backend.shutdown()
    conn.send(RankDone(rank, rank_session.reports))


def _picklable(exc: BaseException):
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return None


if __name__ == "__main__":
    main()
