"""A user's script, run by the fault tests in a process of its own to be signalled or killed.

    python _crash_driver.py '{"storage": ..., "ledger": ..., "api": "tuner"|"run", ...}'

Runs the ``counting`` experiment of ``_crash_helpers`` and prints one line
``RESULT {json}`` when ``fit()`` / ``tune.run()`` returned; an exception goes out as it
would in a user's script.
"""

import json
import os
import signal
import sys
import time

from _crash_helpers import counting, space

from tunelib import tune


class SlowEnd:
    """A callback whose on_experiment_end takes ``seconds`` (a slow final step to
    interrupt, as a Prefect drain can be) in this process only: ``tuner.pkl`` carries it
    to the resumed run, which must not wait."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.pid = os.getpid()

    def on_experiment_end(self, trials, **info):
        if os.getpid() == self.pid:
            print("EXPERIMENT END", flush=True)
            time.sleep(self.seconds)


class Cancelled(BaseException):
    """What Prefect's SIGTERM handler raises in a flow run being cancelled
    (``prefect.exceptions.TerminationSignal``)."""


def _raise_cancelled(signum, frame):
    raise Cancelled()


def main() -> None:
    options = json.loads(sys.argv[1])
    if options.get("in_flow"):  # the user's Prefect flow calls fit()
        from prefect import flow

        flow(name="user-flow")(run)(options)
        return
    if options.get("term_handler"):  # as inside a Prefect flow run
        signal.signal(signal.SIGTERM, _raise_cancelled)
        try:
            run(options)
        except Cancelled:
            print("CANCELLED", flush=True)
            sys.exit(3)
        return
    run(options)


def run(options) -> None:
    callbacks = [SlowEnd(options["slow_end_s"])] if options.get("slow_end_s") else None
    param_space = space(options["ledger"], **options.get("space", {}))
    stop = options.get("stop")
    checkpoint_config = tune.CheckpointConfig(num_to_keep=options.get("num_to_keep"))
    if options.get("api", "tuner") == "run":
        analysis = tune.run(counting, name=options["name"], storage_path=options["storage"],
                            config=param_space, metric="score", mode="max", stop=stop,
                            checkpoint_config=checkpoint_config, verbose=0,
                            max_failures=options.get("max_failures", 0))
        trials = [{"x": t.config["x"], "status": t.status,
                   "iteration": t.last_result.get("training_iteration")}
                  for t in analysis.trials]
        print("RESULT " + json.dumps({"trials": trials}), flush=True)
        return
    grid = tune.Tuner(
        counting,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(
            name=options["name"], storage_path=options["storage"], stop=stop, verbose=0,
            checkpoint_config=checkpoint_config, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=options.get("max_failures", 0))),
    ).fit()
    # a trial that had not started has no config in its Result (nor in Ray's)
    trials = [{"x": (r.config or {}).get("x"), "iteration": r.metrics.get("training_iteration"),
               "error": None if r.error is None else repr(r.error)} for r in grid]
    print("RESULT " + json.dumps({"trials": trials}), flush=True)


if __name__ == "__main__":
    main()
