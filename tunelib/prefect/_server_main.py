"""Runs Prefect's embedded server (uvicorn) for one experiment, and ends it when the driver
that started it is gone: a driver killed with SIGKILL cannot stop its server itself.

    python -m tunelib.prefect._server_main <uvicorn arguments>     (TUNELIB_PARENT_PID set)
"""

import os
import sys

from tunelib._lifeline import exit_with_parent


def main() -> None:
    exit_with_parent(int(os.environ.get("TUNELIB_PARENT_PID", os.getppid())))
    from uvicorn.main import main as uvicorn_main

    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn_main()


if __name__ == "__main__":
    main()
