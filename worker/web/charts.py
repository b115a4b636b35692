"""Line charts as inline SVG, drawn on the server.

Why no JavaScript chart library: the page shows a few series over the last hour, refreshed every
couple of seconds; a server-drawn SVG does that with no asset to vendor or update, works with
scripts off and under a strict Content-Security-Policy (presentation attributes only, no inline
style), and is tested like any other function. Values are escaped by Jinja2's autoescape where
the markup is inserted; the numbers written here are formatted floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

__all__ = ["Series", "line_chart"]

WIDTH: Final = 560
HEIGHT: Final = 170
_LEFT, _RIGHT, _TOP, _BOTTOM = 54, 10, 24, 26
COLOURS: Final = ("#2563eb", "#d97706", "#059669", "#dc2626")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]
    """(epoch seconds, value); None leaves a gap."""


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _ago(seconds: float) -> str:
    return f"-{seconds / 3600:g} h" if seconds >= 7200 else f"-{seconds / 60:.0f} min"


def line_chart(title: str, series: Sequence[Series], *, unit: str = "", span_s: float = 3600, now: float) -> str:
    """An SVG line chart of `series` over the last `span_s` seconds up to `now`."""
    widths = [24 + 6.5 * len(one.name) for one in series] if len(series) > 1 else []
    second_row = 7.5 * len(title) + _LEFT + sum(widths) > WIDTH - _RIGHT
    legend_y = 30 if second_row else 6
    plot_top = _TOP + 16 if second_row else _TOP
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - plot_top - _BOTTOM
    start = now - span_s
    values = [v for s in series for t, v in s.points if v is not None and t >= start]
    top = max(values) if values else 0.0
    top = top * 1.1 if top > 0 else 1.0

    def x(t: float) -> float:
        return _LEFT + plot_w * min(1.0, max(0.0, (t - start) / span_s))

    def y(v: float) -> float:
        return plot_top + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img"'
        f' aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{_LEFT}" y="15" font-size="13" font-weight="600" fill="#111827">{escape(title)}</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        level = top * fraction
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}"'
            ' stroke="#e5e7eb" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y(level) + 4:.1f}" font-size="11" text-anchor="end"'
            f' fill="#6b7280">{escape(_format(level, unit))}</text>'
        )
    for offset, label in ((span_s, _ago(span_s)), (span_s / 2, _ago(span_s / 2)), (0, "now")):
        parts.append(
            f'<text x="{x(now - offset):.1f}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle"'
            f' fill="#6b7280">{escape(label)}</text>'
        )
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        for run in _runs(one.points, start):
            if len(run) == 1:
                t, v = run[0]
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>')
            else:
                path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        if len(series) > 1:
            # right-aligned after the title, or on a row of their own below it when they do not fit
            legend_x = WIDTH - _RIGHT - sum(widths[index:])
            parts.append(f'<rect x="{legend_x:.1f}" y="{legend_y}" width="10" height="10" fill="{colour}"/>')
            name = escape(one.name)
            parts.append(
                f'<text x="{legend_x + 14:.1f}" y="{legend_y + 9}" font-size="11" fill="#374151">{name}</text>'
            )
    if not values:
        parts.append(
            f'<text x="{_LEFT + plot_w / 2}" y="{plot_top + plot_h / 2}" font-size="12" text-anchor="middle"'
            ' fill="#9ca3af">no samples yet</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _runs(points: Sequence[tuple[float, float | None]], start: float) -> list[list[tuple[float, float]]]:
    """The points inside the window, split where a value is missing."""
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in sorted(points, key=lambda p: p[0]):
        if t < start:
            continue
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((t, v))
    return [run for run in runs if run]
