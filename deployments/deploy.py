"""Deploy tunelib's flows to a Prefect work pool (`tunelib` or `process` type), from this checkout.

    python deployments/deploy.py [--pool tunelib] [--name tunelib-trial] [--source DIR]

Creates (or updates) ``trial/<name>`` (one trial = one deployment run, used by
``PrefectWorkers``) and ``experiment/tunelib-experiment`` (a whole experiment from a script,
``parameters={"name": ..., "script": "/path/to/script.py"}``). Workers run the code from
``--source`` (default: the repository root), so it must exist at that path on every worker
machine (or use ``prefect.yaml`` with a git pull step). Same as
``prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --all``, but faster
and without prompts.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def deploy(pool: str = "tunelib", name: str = "tunelib-trial", source: str = ROOT,
           experiment_name: str = "tunelib-experiment") -> list:
    from prefect import flow

    ids = []
    for entrypoint, deployment in (("flows/trial.py:trial", name),
                                   ("flows/experiment.py:experiment", experiment_name)):
        remote = flow.from_source(source=source, entrypoint=entrypoint)
        ids.append(remote.deploy(name=deployment, work_pool_name=pool, build=False, push=False,
                                 print_next_steps=False))
    return ids


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="tunelib")
    parser.add_argument("--name", default="tunelib-trial")
    parser.add_argument("--source", default=ROOT)
    args = parser.parse_args(argv)
    sys.path.insert(0, args.source)
    for dep_id in deploy(args.pool, args.name, args.source):
        print(dep_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
