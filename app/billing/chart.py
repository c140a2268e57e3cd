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

from ..services.billing import DayTotal
from ..services.periods import Period

WIDTH, HEIGHT = 880, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 44


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

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


UNIT_WORDS = {"day": "day", "week": "week", "month": "month"}


def usage_chart(totals: list[DayTotal], parts: list[Period], unit: str,
                today: dt.date | None = None) -> DailyChart:
    """The chart for the range cut into ``parts`` (days, weeks or months).

    ``totals`` carry each used part's figures under its first day; parts
    without use are zero, parts that begin after ``today`` are not drawn.
    """
    by_start = {row.day: row for row in totals}
    span = len(parts)
    drawn = sum(1 for part in parts if today is None or part.start <= today)
    series = [by_start.get(part.start) for part in parts[:drawn]]
    # A day can have more users than launches (a completion reported the day after its launch).
    step, top = _axis(max([max(row.launches, row.unique_users) for row in series if row] + [1]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(span, 1)
    bar_w = max(slot * 0.7, 1.0)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / top

    first, last = parts[0].start, parts[-1].end
    chart = DailyChart(
        width=WIDTH, height=HEIGHT, left=LEFT, right_edge=WIDTH - RIGHT,
        description=f"From {first.isoformat()} to {last.isoformat()}, UTC days, one bar per {UNIT_WORDS[unit]}.",
        dots=span <= 62, label_y=HEIGHT - BOTTOM + 16, legend_y=HEIGHT - 10, unit=unit,
    )
    chart.gridlines = [(value, y(value)) for value in range(0, top + 1, step)]
    label_every = max(1, math.ceil(span / 10))
    label_format = "%b %Y" if unit == "month" else "%d %b"
    for i, part in enumerate(parts):
        if i % label_every == 0:
            chart.day_labels.append((LEFT + slot * i + slot / 2, part.start.strftime(label_format)))
        if i >= drawn:
            continue
        row = series[i]
        users = row.unique_users if row else 0
        part_launches = row.launches if row else 0
        when = part.start.isoformat() if part.days == 1 else f"{part.start.isoformat()} to {part.end.isoformat()}"
        chart.bars.append({
            "x": LEFT + slot * i + (slot - bar_w) / 2, "y": y(users), "width": bar_w,
            "height": plot_h - (y(users) - TOP),
            "tip": f"{when}: {users} unique users, {part_launches} launches",
        })
        chart.points.append((LEFT + slot * i + slot / 2, y(part_launches)))
    return chart
