"""The daily usage chart as server-rendered SVG: no JavaScript, nothing for the CSP to allow.

Bars are unique users per day, the line is launches per day, on one scale
(a day's launches are never fewer than its users). This module only works
out the geometry; ``templates/billing/_chart.html`` draws it, so Jinja's
autoescaping covers every piece of text and nothing is marked safe.
"""

from __future__ import annotations

import datetime as dt
import math

from dataclasses import dataclass, field

from ..services.billing import DayTotal

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

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


def daily_chart(days: list[DayTotal], start: dt.date, end: dt.date, today: dt.date | None = None) -> DailyChart:
    """The chart for the range; days without use are zero, days after ``today`` are not drawn."""
    by_day = {row.day: row for row in days}
    span = (end - start).days + 1
    drawn = span if today is None else max(0, min(span, (today - start).days + 1))
    series = [by_day.get(start + dt.timedelta(days=i)) for i in range(drawn)]
    step, top = _axis(max([row.launches for row in series if row] + [1]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / span
    bar_w = max(slot * 0.7, 1.0)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / top

    chart = DailyChart(
        width=WIDTH, height=HEIGHT, left=LEFT, right_edge=WIDTH - RIGHT,
        description=f"From {start.isoformat()} to {end.isoformat()}, UTC days.",
        dots=span <= 62, label_y=HEIGHT - BOTTOM + 16, legend_y=HEIGHT - 10,
    )
    chart.gridlines = [(value, y(value)) for value in range(0, top + 1, step)]
    label_every = max(1, math.ceil(span / 10))
    for i in range(span):
        day = start + dt.timedelta(days=i)
        if i % label_every == 0:
            chart.day_labels.append((LEFT + slot * i + slot / 2, day.strftime("%d %b")))
        if i >= drawn:
            continue
        row = series[i]
        users = row.unique_users if row else 0
        day_launches = row.launches if row else 0
        chart.bars.append({
            "x": LEFT + slot * i + (slot - bar_w) / 2, "y": y(users), "width": bar_w,
            "height": plot_h - (y(users) - TOP),
            "tip": f"{day.isoformat()}: {users} unique users, {day_launches} launches",
        })
        chart.points.append((LEFT + slot * i + slot / 2, y(day_launches)))
    return chart
