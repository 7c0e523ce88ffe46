"""Chart geometry for the pages: plain numbers that the templates draw as inline SVG.

The maths lives here (and is unit-tested) so the templates only place rectangles, lines and
text; no JavaScript and no charting library is needed, and the pages work offline.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Sequence

from flask import has_request_context

from .i18n import current_language

THOUSAND = Decimal(1_000)
TEN_THOUSAND = Decimal(10_000)
HUNDRED_MILLION = Decimal(100_000_000)
MILLION = Decimal(1_000_000)
BILLION = Decimal(1_000_000_000)


def _language(language: str | None) -> str:
    """The language to format for: the one given, else the page's (Chinese outside a request)."""
    if language is not None:
        return language
    return current_language() if has_request_context() else "zh"


def money(value: Decimal | None) -> str:
    """Exact yuan with thousands separators: 2288387313.17 -> 2,288,387,313.17."""
    if value is None:
        return "—"
    return f"{value:,.2f}"


def compact_money(value: Decimal | None, language: str | None = None) -> str:
    """Yuan in the units a reader takes in at a glance.

    Chinese (the default) in the units Chinese reports use: 22.88亿, 16,945.97万, 812.00; English in
    thousands, millions and billions: 2.29B, 169.46M, 16.95K, 812.00. ``language`` defaults to the page's.
    """
    if value is None:
        return "—"
    if _language(language) == "en":
        if abs(value) >= BILLION:
            return f"{value / BILLION:,.2f}B"
        if abs(value) >= MILLION:
            return f"{value / MILLION:,.2f}M"
        if abs(value) >= TEN_THOUSAND:
            return f"{value / THOUSAND:,.2f}K"
        return f"{value:,.2f}"
    if abs(value) >= HUNDRED_MILLION:
        return f"{value / HUNDRED_MILLION:,.2f}亿"
    if abs(value) >= TEN_THOUSAND:
        return f"{value / TEN_THOUSAND:,.2f}万"
    return f"{value:,.2f}"


def percent(value: Decimal | None) -> str:
    """A signed percentage (+4.15%), or a dash when there is nothing to compare with."""
    if value is None:
        return "—"
    return f"{value:+.2f}%"


def _tick_text(value: Decimal) -> str:
    """An axis label: compact, without zero decimals (25亿 rather than 25.00亿, 2.5B rather than 2.50B)."""
    return re.sub(r"\.00(?=[亿万BMK]?$)", "", compact_money(value))


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^n at or above ``value`` (axis maxima that read well)."""
    if value <= 0:
        return 1.0
    power = math.pow(10, math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # unreachable: 10 × power always covers value


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: its row, its length and what it stands for."""

    key: str
    label: str
    title: str
    value: Decimal
    text: str
    y: float
    width: float


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars, one row each, labels left and values at the bar's end."""

    width: int
    height: int
    label_width: int
    row_height: int
    bar_height: int
    plot_width: float
    bars: list[Bar] = field(default_factory=list)


@dataclass(frozen=True)
class BarItem:
    """What a bar chart is made from."""

    key: str
    label: str
    title: str
    value: Decimal


def bar_chart(items: Sequence[BarItem], *, width: int = 600, label_width: int = 110, value_width: int = 90,
              row_height: int = 18) -> BarChart:
    """Lay out horizontal bars scaled to the largest value (negative values draw as empty bars)."""
    top = max((float(i.value) for i in items), default=0.0)
    scale_max = top if top > 0 else 1.0
    plot_width = width - label_width - value_width
    bars = [Bar(i.key, i.label, i.title, i.value, compact_money(i.value), n * row_height,
                round(max(float(i.value), 0.0) / scale_max * plot_width, 1))
            for n, i in enumerate(items)]
    return BarChart(width, max(len(bars), 1) * row_height, label_width, row_height, row_height - 5, plot_width, bars)


@dataclass(frozen=True)
class Point:
    """One cycle on the trend line; ``has_data`` is False where no province reported."""

    key: str
    label: str
    value: Decimal
    text: str
    x: float
    y: float
    has_data: bool
    current: bool
    partial_pct: Decimal | None = None  # the share of local networks reported, when not all were


@dataclass(frozen=True)
class Tick:
    """A horizontal grid line with its label."""

    y: float
    text: str


@dataclass(frozen=True)
class LineChart:
    """A line over cycles; segments join only neighbouring cycles that both have data."""

    width: int
    height: int
    left: int
    top: int
    plot_width: float
    plot_height: float
    points: list[Point]
    ticks: list[Tick]
    segments: list[str]


@dataclass(frozen=True)
class LineItem:
    """What a line chart is made from."""

    key: str
    label: str
    value: Decimal
    has_data: bool
    current: bool = False
    partial_pct: Decimal | None = None  # the share of local networks reported, when not all were


def line_chart(items: Sequence[LineItem], *, width: int = 600, height: int = 210, left: int = 70, top: int = 14,
               bottom: int = 26, right: int = 16, ticks: int = 4) -> LineChart:
    """Lay out a line over evenly spaced categories with a zero-based y axis."""
    plot_w = float(width - left - right)
    plot_h = float(height - top - bottom)
    top_value = nice_ceiling(max((float(i.value) for i in items if i.has_data), default=0.0))
    step_x = plot_w / (len(items) - 1) if len(items) > 1 else 0.0
    points = []
    for n, i in enumerate(items):
        x = left + (n * step_x if len(items) > 1 else plot_w / 2)
        y = top + plot_h - (max(float(i.value), 0.0) / top_value * plot_h if i.has_data else 0.0)
        points.append(Point(i.key, i.label, i.value, compact_money(i.value) if i.has_data else "—",
                            round(x, 1), round(y, 1), i.has_data, i.current,
                            i.partial_pct if i.has_data else None))
    grid = [Tick(round(top + plot_h - k / ticks * plot_h, 1), _tick_text(Decimal(str(top_value * k / ticks))))
            for k in range(ticks + 1)]
    segments: list[str] = []
    run: list[Point] = []
    for p in [*points, None]:
        if p is not None and p.has_data:
            run.append(p)
            continue
        if len(run) > 1:
            segments.append(" ".join(f"{q.x},{q.y}" for q in run))
        run = []
    return LineChart(width, height, left, top, plot_w, plot_h, points, grid, segments)
