"""Learning curves of an experiment's trials, best highlighted (matplotlib: the ``plot``
extra, ``pip install 'tunelib[plot]'``).

:func:`learning_curves` turns trial dataframes into curves (pandas only);
:func:`save_plot` draws them with matplotlib's object API (no pyplot, no GUI backend,
so it works on a headless machine).

Example::

    from tunelib.cli._plot import learning_curves, save_plot

    curves = learning_curves(trials, analysis.trial_dataframes, "loss", best_trial_id="1a2b3_00000")
    save_plot(curves, "loss.png", metric="loss", title="my_exp")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Mapping, Optional, Sequence

from tunelib._lifecycle import TrialStatus
from tunelib._status_table import format_cell
from tunelib.cli._errors import MissingExtraError
from tunelib.trial import Trial

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Curve", "default_out", "import_matplotlib", "learning_curves", "save_plot"]

# Beyond this many trials only the best one is named; the others are drawn in grey.
MAX_LEGEND_TRIALS = 12
MISSING_MATPLOTLIB = ("`tunelib plot` needs matplotlib, which is not installed: "
                      "pip install 'tunelib[plot]' (or pip install matplotlib).")


def import_matplotlib():
    """The ``matplotlib`` module; :class:`MissingExtraError` naming the ``plot`` extra when
    it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(MISSING_MATPLOTLIB) from None
    return matplotlib


@dataclass
class Curve:
    """One trial's ``metric`` against the x key, ready to draw."""

    trial_id: str
    label: str
    x: List[float]
    y: List[float]
    errored: bool = False
    best: bool = False


def _label(trial: Trial) -> str:
    params = " ".join(f"{k}={format_cell(v)}" for k, v in (trial.evaluated_params or {}).items())
    return f"{trial.trial_id} {params}".strip()


def learning_curves(trials: Sequence[Trial], dataframes: Mapping[str, "pd.DataFrame"], metric: str,
                    x: str = "training_iteration",
                    best_trial_id: Optional[str] = None) -> List[Curve]:
    """A curve per trial that reported ``metric`` (non-numeric values dropped), in the
    order of ``trials``; the ``x`` key, or the report number where a trial lacks it."""
    import pandas as pd

    curves = []
    for trial in trials:
        df = dataframes.get(trial.trial_id)
        if df is None or metric not in df.columns:
            continue
        y = pd.to_numeric(df[metric], errors="coerce")
        xs = pd.to_numeric(df[x], errors="coerce") if x in df.columns \
            else pd.Series(range(1, len(df) + 1), index=df.index)
        keep = y.notna() & xs.notna()
        if not keep.any():
            continue
        curves.append(Curve(
            trial_id=trial.trial_id, label=_label(trial),
            x=[float(v) for v in xs[keep]], y=[float(v) for v in y[keep]],
            errored=trial.status == TrialStatus.ERROR, best=trial.trial_id == best_trial_id,
        ))
    return curves


def save_plot(curves: Sequence[Curve], out: str, *, metric: str, title: str,
              x_label: str = "training_iteration", mode: Optional[str] = None,
              log_y: bool = False) -> None:
    """Draw ``curves`` (the best one thick and black, errored ones dashed) to ``out``;
    the format follows its extension (png, svg, pdf...)."""
    import_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    many = len(curves) > MAX_LEGEND_TRIALS
    others = 0
    color_index = 0
    for curve in curves:
        if curve.best:
            continue
        suffix = " [ERROR]" if curve.errored else ""
        if many:
            color, label = "0.6", None
            others += 1
        else:
            color, label = f"C{color_index % 10}", curve.label + suffix
            color_index += 1
        ax.plot(curve.x, curve.y, color=color, linewidth=1.3, alpha=0.75, label=label,
                linestyle="--" if curve.errored else "-", marker="." if len(curve.x) < 40 else None)
        if curve.errored:
            ax.plot(curve.x[-1:], curve.y[-1:], color=color, marker="x", markersize=9,
                    linestyle="none")
    if many and others:
        ax.plot([], [], color="0.6", linewidth=1.3, label=f"{others} other trials")
    best = next((c for c in curves if c.best), None)
    if best is not None:
        ax.plot(best.x, best.y, color="black", linewidth=3.0, zorder=10, marker="o",
                markersize=4, label=f"best: {best.label} ({metric}={format_cell(best.y[-1])})")
        ax.annotate(format_cell(best.y[-1]), (best.x[-1], best.y[-1]), xytext=(6, 6),
                    textcoords="offset points", fontsize=9, fontweight="bold", zorder=11)
    if log_y and all(v > 0 for c in curves for v in c.y):
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric)
    if best is not None:
        subtitle = f"best trial {best.trial_id} by last {metric} ({mode})"
    else:
        subtitle = "best trial not highlighted: the mode is unknown (pass --mode min|max)"
    ax.set_title(f"{title}: {metric} of {len(curves)} trials\n{subtitle}", fontsize=11)
    ax.grid(True, alpha=0.3)
    if all(float(v).is_integer() for c in curves for v in c.x):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="trial", title_fontsize=9)
    fig.savefig(out)


def default_out(experiment_name: str, metric: str) -> str:
    """``<experiment>-<metric>.png`` (``/`` in nested metric names becomes ``_``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in metric)
    return f"{experiment_name}-{safe}.png"
