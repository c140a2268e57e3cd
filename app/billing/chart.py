"""The usage chart as server-rendered SVG: no JavaScript, nothing for the CSP to allow.

One bar per day, or per week or month on long ranges (unique users distinct
over each bar's days), and a line for launches, on one scale (launches are
never fewer than users). This module only works out the geometry; ``templates/billing/_chart.html`` draws it, so Jinja's
autoescaping covers every piece of text and nothing is marked safe.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from app.billing.figures import DayTotal
from app.licensing.periods import Period

WIDTH, HEIGHT = 880, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 44


@dataclass(frozen=True)
class Layout:
    """A chart's size in SVG user units and how many date labels it has room for."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    labels: int          # at most this many date labels
    dots_up_to: int      # launch dots only when there are at most this many bars
    legend_gap: int      # where "Launches" starts in the legend, from the left edge


WIDE = Layout(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM, labels=10, dots_up_to=62, legend_gap=240)
# A phone (390 px): drawn near 1:1, so 11-unit text stays about 10 px; four date labels, a short legend.
NARROW = Layout(340, 230, 34, 8, 12, 44, labels=4, dots_up_to=16, legend_gap=104)


def _axis(largest: int) -> tuple[int, int]:
    """(step, top) for the value axis: a 1-2-5 step giving at most five gridlines above zero."""
    step = 1
    while largest > step * 5:
        for factor in (2, 2.5, 2):   # 1 -> 2 -> 5 -> 10 -> 20 -> 50 ...
            step = int(step * factor)
            if largest <= step * 5:
                break
    top = step * max(1, math.ceil(largest / step))
    return step, top


@dataclass
class DailyChart:
    """Everything the SVG template needs, in SVG user units."""

    width: int
    height: int
    left: int
    right_edge: int
    description: str
    gridlines: list[tuple[int, float]] = field(default_factory=list)   # (value, y)
    day_labels: list[tuple[float, str]] = field(default_factory=list)  # (x, "01 Nov")
    bars: list[dict] = field(default_factory=list)                     # x, y, width, height, tip
    points: list[tuple[float, float]] = field(default_factory=list)    # launches line
    dots: bool = True
    label_y: int = 0
    legend_y: int = 0
    unit: str = "day"
    legend_gap: int = 240
    narrow_legend: bool = False
    # The same figures drawn for a phone (see NARROW); the template shows one or the other by width.
    narrow: DailyChart | None = None

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


UNIT_WORDS = {"day": "day", "week": "week", "month": "month"}


def usage_chart(totals: list[DayTotal], parts: list[Period], unit: str,
                today: dt.date | None = None, layout: Layout = WIDE) -> DailyChart:
    """The chart for the range cut into ``parts`` (days, weeks or months).

    ``totals`` carry each used part's figures under its first day; parts
    without use are zero, parts that begin after ``today`` are not drawn.
    """
    by_start = {row.day: row for row in totals}
    span = len(parts)
    drawn = sum(1 for part in parts if today is None or part.start <= today)
    series = [by_start.get(part.start) for part in parts[:drawn]]
    # A day can have more users than launches (a completion reported the day after its launch).
    step, axis_top = _axis(max([max(row.launches, row.unique_users) for row in series if row] + [1]))
    width, height, left, top = layout.width, layout.height, layout.left, layout.top
    plot_w, plot_h = width - left - layout.right, height - top - layout.bottom
    slot = plot_w / max(span, 1)
    bar_w = max(slot * 0.7, 1.0)

    def y(value: int) -> float:
        return top + plot_h - plot_h * value / axis_top

    first, last = parts[0].start, parts[-1].end
    chart = DailyChart(
        width=width, height=height, left=left, right_edge=width - layout.right,
        description=f"From {first.isoformat()} to {last.isoformat()}, UTC days, one bar per {UNIT_WORDS[unit]}.",
        dots=span <= layout.dots_up_to, label_y=height - layout.bottom + 16, legend_y=height - 10, unit=unit,
        legend_gap=layout.legend_gap, narrow_legend=layout is NARROW,
    )
    chart.gridlines = [(value, y(value)) for value in range(0, axis_top + 1, step)]
    label_every = max(1, math.ceil(span / layout.labels))
    label_format = "%b %Y" if unit == "month" else "%d %b"
    for i, part in enumerate(parts):
        if i % label_every == 0:
            chart.day_labels.append((left + slot * i + slot / 2, part.start.strftime(label_format)))
        if i >= drawn:
            continue
        row = series[i]
        users = row.unique_users if row else 0
        part_launches = row.launches if row else 0
        when = part.start.isoformat() if part.days == 1 else f"{part.start.isoformat()} to {part.end.isoformat()}"
        chart.bars.append({
            "x": left + slot * i + (slot - bar_w) / 2, "y": y(users), "width": bar_w,
            "height": plot_h - (y(users) - top),
            "tip": f"{when}: {users} unique users, {part_launches} launches",
        })
        chart.points.append((left + slot * i + slot / 2, y(part_launches)))
    if layout is WIDE:
        chart.narrow = usage_chart(totals, parts, unit, today, NARROW)
    return chart
