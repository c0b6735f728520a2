"""``tunelib``: see experiments from the command line (also ``python -m tunelib.cli``).

Commands:

* ``tunelib ls [STORAGE]`` the experiments of a storage directory: name, start, trials,
  status counts, best value (default STORAGE: ``TUNE_RESULT_DIR`` or ``~/ray_results``);
* ``tunelib show EXPERIMENT`` Ray's trial status table, from storage alone (tunelib's and
  Ray's experiment directories);
* ``tunelib plot EXPERIMENT --metric loss [--out curves.png]`` every trial's learning
  curve, the best one highlighted (needs the ``plot`` extra: matplotlib);
* ``tunelib ui`` the Prefect UI on the database the experiments were recorded in.

A mistake the user can fix (a missing path, a metric no trial reported) exits with code 2
and a message naming it and the valid choices. Prefect is never imported to list or show
experiments; ``ui`` runs ``prefect server start`` as a subprocess.

Example::

    $ tunelib ls /tmp/results
    $ tunelib show /tmp/results/my_exp --mode min
    $ tunelib plot my_exp --metric loss --out curves.png
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Literal, Optional

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="tunelib",
    help="See tunelib and Ray Tune experiments: list them, show their trials, plot their "
         "learning curves, open the Prefect UI they were recorded in.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

Mode = Literal["min", "max"]


def _reports_errors(command):
    """Print a :class:`CliError` or :class:`MissingExtraError` without a traceback and exit
    with its code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from tunelib.cli._errors import CliError, MissingExtraError
        from tunelib.cli._render import make_console

        try:
            return command(*args, **kwargs)
        except (CliError, MissingExtraError) as exc:
            _say(make_console(stderr=True), f"Error: {exc}")
            raise typer.Exit(exc.exit_code) from None

    return wrapper


_EXPERIMENT_HELP = ("An experiment directory (path or URI), or the name of one in the default "
                    "storage.")
_MODE_HELP = ("min or max (default: the experiment's own when METRIC is the metric it "
              "optimised; Ray's experiment state does not record the mode).")


@app.command("ls")
@_reports_errors
def ls(
    storage: Annotated[Optional[str], typer.Argument(
        help="A storage directory (local path or URI). Default: TUNE_RESULT_DIR, else "
             "~/ray_results.", show_default=False)] = None,
) -> None:
    """List the experiments of a storage directory: started, trials, statuses, best."""
    from tunelib.cli._experiments import summarize_storage
    from tunelib.cli._render import make_console, print_experiments

    location, summaries = summarize_storage(storage)
    print_experiments(make_console(), location, summaries)


@app.command("show")
@_reports_errors
def show(
    experiment: Annotated[str, typer.Argument(help=_EXPERIMENT_HELP)],
    metric: Annotated[Optional[str], typer.Option(
        help="Rank trials by this metric (default: the experiment's own).",
        show_default=False)] = None,
    mode: Annotated[Optional[Mode], typer.Option(help=_MODE_HELP, show_default=False)] = None,
) -> None:
    """Ray's trial status table of an experiment, read from storage."""
    from tunelib._status_table import status_table
    from tunelib.cli._experiments import open_experiment, require_metric, resolve_mode
    from tunelib.cli._render import make_console, print_status

    exp = open_experiment(experiment)
    if metric is not None:
        require_metric(exp, metric)
    metric = metric or exp.metric
    table = status_table(exp.trials(), metric=metric, mode=resolve_mode(exp, metric, mode),
                         experiment_path=exp.location)
    print_status(make_console(), exp.name, exp.location, exp.search.start_time, table)


@app.command("plot")
@_reports_errors
def plot(
    experiment: Annotated[str, typer.Argument(help=_EXPERIMENT_HELP)],
    metric: Annotated[str, typer.Option(help="The reported metric to plot, e.g. loss.")],
    out: Annotated[Optional[str], typer.Option(
        help="The image to write; its extension picks the format (png, svg, pdf). "
             "Default: ./<experiment>-<metric>.png.", show_default=False)] = None,
    mode: Annotated[Optional[Mode], typer.Option(help=_MODE_HELP, show_default=False)] = None,
    x: Annotated[str, typer.Option(help="The result key on the x axis.")] = "training_iteration",
    log_y: Annotated[bool, typer.Option("--log-y", help="A logarithmic y axis.")] = False,
) -> None:
    """Plot every trial's learning curve of METRIC, the best trial highlighted."""
    from tunelib._status_table import current_best_trial
    from tunelib.cli._errors import CliError
    from tunelib.cli._experiments import open_experiment, require_metric, resolve_mode
    from tunelib.cli._plot import default_out, import_matplotlib, learning_curves, save_plot
    from tunelib.cli._render import make_console

    import_matplotlib()  # before reading: a missing extra fails fast
    exp = open_experiment(experiment)
    require_metric(exp, metric)
    if x != "training_iteration":  # Ray and tunelib add that one to every result
        require_metric(exp, x, what="the x axis key")
    mode = resolve_mode(exp, metric, mode)
    trials = exp.trials()
    best = current_best_trial(trials, metric, mode)
    curves = learning_curves(trials, exp.analysis.trial_dataframes, metric, x=x,
                             best_trial_id=best.trial.trial_id if best else None)
    out = out or default_out(exp.name, metric)
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise CliError(f"Cannot write {out}: the directory {parent} does not exist.")
    try:
        save_plot(curves, out, metric=metric, title=exp.name, x_label=x, mode=mode,
                  log_y=log_y)
    except ValueError as exc:  # an extension matplotlib cannot write
        raise CliError(f"Cannot write {out}: {exc}") from None
    _say(make_console(), f"Wrote {out}: {metric} of {len(curves)} trials")
    if best is None:
        _say(make_console(stderr=True), f"Best trial not highlighted: the mode of {metric!r} "
                                        "is unknown (pass --mode min or --mode max).")


@app.command("ui")
@_reports_errors
def ui(
    port: Annotated[Optional[int], typer.Option(
        min=1, max=65535, help="Serve on this port (default: a free one).",
        show_default=False)] = None,
    host: Annotated[str, typer.Option(help="The address to serve on.")] = "127.0.0.1",
    timeout: Annotated[float, typer.Option(
        min=1, help="Seconds to wait for the server to start (a fresh database migrates "
                    "first).")] = 300.0,
) -> None:
    """Serve the Prefect UI on the database the experiments were recorded in.

    With PREFECT_API_URL set (environment or Prefect profile), experiments were recorded in
    that server: its UI address is printed and nothing is started. Otherwise
    `prefect server start` runs on the database under PREFECT_HOME until Ctrl-C.
    """
    from tunelib.cli import _ui
    from tunelib.cli._errors import CliError
    from tunelib.cli._render import make_console

    out, err = make_console(), make_console(stderr=True)
    api_url = _ui.configured_api_url()
    if api_url:
        if port is not None:
            raise CliError(f"--port {port} would start a server, but PREFECT_API_URL is set "
                           f"({api_url}): experiments were recorded there. Unset it to serve "
                           "the local database instead.")
        _say(out, f"Prefect UI: {_ui.ui_url(api_url)}")
        _say(err, f"(the server PREFECT_API_URL names: {api_url})")
        return
    if port is None:
        port = _ui.free_port(host)
    elif not _ui.port_is_free(host, port):
        raise CliError(f"Port {port} on {host} is in use: pass another --port, or none for a "
                       "free one.")

    def announce(url: str, api: str) -> None:
        # the URL last: once it is out, everything is
        _say(err, f"To record experiments into this server: export PREFECT_API_URL={api}")
        _say(out, f"Prefect UI: {url}")

    _say(err, f"Starting the Prefect server on {_ui.database_description()} "
              "(Ctrl-C stops it) ...")
    try:
        code = _ui.serve(_ui.server_command(host, port), host, port, announce=announce,
                         timeout=timeout)
    except _ui.ServerError as exc:
        _say(err, f"Error: {exc}")
        raise typer.Exit(1) from None
    if code not in (0, 130, 143, -15):
        _say(err, f"The Prefect server exited with code {code}.")
        raise typer.Exit(1)


def _say(console, text: str) -> None:
    """One line, as is: no rich markup, no highlighting, never wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """The ``tunelib`` console script."""
    app(prog_name="tunelib")
