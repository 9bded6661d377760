"""The score histogram as SVG geometry: bars over [0, 1] and a line at each threshold.

The page template draws what ``histogram_chart`` returns; nothing here knows HTML, and no script
runs in the browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 40, 40


@dataclass(frozen=True, kw_only=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    low: float
    high: float
    count: int


@dataclass(frozen=True, kw_only=True)
class ThresholdLine:
    kind: str  # "match" or "review"
    value: float
    x: float
    label_y: float
    anchor: str  # text-anchor of its label


@dataclass(frozen=True, kw_only=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True, kw_only=True)
class HistogramChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bars: tuple[Bar, ...]
    lines: tuple[ThresholdLine, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    total: int


def _nice_step(top: int) -> int:
    """A round step that gives about four ticks up to ``top``."""
    raw = max(top / 4, 1)
    magnitude: int = 10 ** (len(str(int(raw))) - 1)
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude >= raw:
            return multiple * magnitude
    return 10 * magnitude


def histogram_chart(counts: Sequence[int], match: float, review: float) -> HistogramChart:
    """Bars for ``counts`` (equal bins over [0, 1]) and lines at the match and review thresholds."""
    left, right, top, bottom = MARGIN_LEFT, WIDTH - MARGIN_RIGHT, MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    bins = len(counts)
    step = _nice_step(max(counts, default=0))
    y_max = max(step * -(-max(max(counts, default=0), 1) // step), step)

    def x_of(score: float) -> float:
        return round(left + (right - left) * min(max(score, 0.0), 1.0), 1)

    def y_of(count: float) -> float:
        return round(bottom - (bottom - top) * count / y_max, 1)

    bars = []
    for k, count in enumerate(counts):
        low, high = k / bins, (k + 1) / bins
        x0, x1 = x_of(low), x_of(high)
        y = y_of(count)
        bars.append(
            Bar(x=x0 + 1, y=y, width=round(x1 - x0 - 2, 1), height=round(bottom - y, 1), low=low, high=high, count=int(count))
        )
    # Labels sit above the plot, one row each, so that equal thresholds stay readable.
    lines = tuple(
        ThresholdLine(kind=kind, value=value, x=x_of(value), label_y=row, anchor="end" if value > 0.5 else "start")
        for kind, value, row in (("match", match, 14.0), ("review", review, 30.0))
    )
    x_ticks = tuple(Tick(at=x_of(k / 10), label=f"{k / 10:.1f}") for k in range(11))
    y_ticks = tuple(Tick(at=y_of(v), label=f"{v:,}") for v in range(0, y_max + 1, step))
    return HistogramChart(
        width=WIDTH, height=HEIGHT, left=left, right=right, top=top, bottom=bottom, bars=tuple(bars), lines=lines,
        x_ticks=x_ticks, y_ticks=y_ticks, total=int(sum(counts)),
    )  # fmt: skip
