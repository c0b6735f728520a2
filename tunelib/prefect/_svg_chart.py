"""A line chart as one line of SVG, for markdown artifacts (pure, no dependencies).

Prefect's UI renders a markdown artifact's HTML blocks through DOMPurify with its SVG
profile: ``<svg>`` with shapes, text and presentation attributes is kept, ``style``
attributes and ``<style>`` elements are removed. So the chart uses presentation attributes
only, paints its own white background (the UI may be dark), and has no blank line (a
blank line would end the markdown HTML block it sits in: see :func:`html_block`).

Example::

    >>> svg = line_chart([Series("trial_1", [(1, 0.5), (2, 0.25)], emphasis=True)],
    ...                  x_label="training_iteration", y_label="loss")
    >>> svg.startswith("<svg") and "trial_1" in svg and "\\n" not in svg
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import List, Sequence, Tuple

# matplotlib's tab10, then grey for the curves past the palette
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
MUTED = "#c8c8c8"
MAX_LEGEND = 10


@dataclass(frozen=True)
class Series:
    """One curve: its label, (x, y) points, and whether to draw it emphasised (the best)."""

    label: str
    points: Sequence[Tuple[float, float]]
    emphasis: bool = False


def _ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    """About ``n`` round tick values (steps of 1, 2 or 5 x 10^k) within [lo, hi]."""
    if hi <= lo:
        return [lo]
    span = hi - lo
    magnitude = 10 ** math.floor(math.log10(span / (n - 1)))
    step = min((m * magnitude for m in (1, 2, 5, 10)),
               key=lambda s: abs(span / s - (n - 1)))
    first = math.ceil(lo / step - 1e-9) * step
    count = int((hi - first) / step + 1e-9) + 1
    return [round(first + i * step, 12) for i in range(count)]


def _num(v: float) -> str:
    return f"{v:.4g}"


def _bounds(values: Sequence[float]) -> Tuple[float, float]:
    lo, hi = min(values), max(values)
    if math.isclose(lo, hi):
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def line_chart(series: Sequence[Series], x_label: str, y_label: str, title: str = "",
               width: int = 720, height: int = 320) -> str:
    """``series`` drawn as polylines on shared axes; the first :data:`MAX_LEGEND` series
    are coloured and named in the legend, the rest drawn thin and grey behind them."""
    legend_w = 190
    left, right, top, bottom = 64, width - legend_w, 28 if title else 12, height - 44
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{left}" y="18" font-size="13" fill="#222">{escape(title)}</text>')
    if not xs:
        out.append(f'<text x="{left}" y="{(top + bottom) // 2}" fill="#555">'
                   'no values reported yet</text></svg>')
        return "".join(out)
    x0, x1 = _bounds(xs)
    y0, y1 = _bounds(ys)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#444"/>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{px(t):.1f}" y="{bottom + 14}" text-anchor="middle" '
                   f'fill="#444">{_num(t)}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{right}" y2="{py(t):.1f}" '
                   'stroke="#eeeeee"/>')
        out.append(f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end" '
                   f'fill="#444">{_num(t)}</text>')
    out.append(f'<text x="{(left + right) // 2}" y="{height - 8}" text-anchor="middle" '
               f'fill="#222">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{(top + bottom) // 2}" text-anchor="middle" fill="#222" '
               f'transform="rotate(-90 14 {(top + bottom) // 2})">{escape(y_label)}</text>')

    named = list(series[:MAX_LEGEND])
    # muted curves first, so the named ones (and the emphasised one, last) are on top
    order = [(s, MUTED, 1.0) for s in series[MAX_LEGEND:]]
    order += [(s, PALETTE[i % len(PALETTE)], 1.5) for i, s in enumerate(named)
              if not s.emphasis]
    order += [(s, PALETTE[i % len(PALETTE)], 3.0) for i, s in enumerate(named) if s.emphasis]
    for s, colour, stroke_width in order:
        if len(s.points) == 1:
            (x, y), = s.points
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
            continue
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                   f'stroke-width="{stroke_width}"/>')
    for i, s in enumerate(named):
        y = top + 6 + i * 16
        colour = PALETTE[i % len(PALETTE)]
        label = s.label if len(s.label) <= 26 else s.label[:25] + "…"
        out.append(f'<line x1="{right + 12}" y1="{y}" x2="{right + 30}" y2="{y}" '
                   f'stroke="{colour}" stroke-width="{3 if s.emphasis else 2}"/>')
        weight = ' font-weight="bold"' if s.emphasis else ""
        out.append(f'<text x="{right + 34}" y="{y + 4}" fill="#222"{weight}>'
                   f'{escape(label)}</text>')
    if len(series) > MAX_LEGEND:
        y = top + 6 + MAX_LEGEND * 16
        out.append(f'<text x="{right + 12}" y="{y + 4}" fill="#777">+ {len(series) - MAX_LEGEND}'
                   ' more (grey)</text>')
    out.append("</svg>")
    return "".join(out)


def html_block(svg: str) -> str:
    """``svg`` as a markdown HTML block: a ``<div>`` opens a block that lasts until the
    next blank line, so the one-line SVG inside stays one HTML token."""
    return f"<div>\n{svg}\n</div>"
