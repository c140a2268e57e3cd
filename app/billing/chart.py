"""The daily usage chart as server-rendered SVG: no JavaScript, nothing for the CSP to allow.

Bars are unique users per day, the line is launches per day, on one scale
(a day's launches are never fewer than its users). Every piece of text is
escaped here, since this markup is handed to the template as safe.
"""

from __future__ import annotations

import datetime as dt
import math

from markupsafe import Markup, escape

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


def daily_chart(days: list[DayTotal], start: dt.date, end: dt.date, today: dt.date | None = None) -> Markup:
    """An inline <svg> for the range; days without use are zero, days after ``today`` are not drawn."""
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

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title chart-desc" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape("Daily unique users and launches")}</title>',
        f'<desc id="chart-desc">{escape(f"From {start.isoformat()} to {end.isoformat()}, UTC days.")}</desc>',
    ]
    for value in range(0, top + 1, step):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value}</text>')
    label_every = max(1, math.ceil(span / 10))
    points = []
    for i in range(span):
        day = start + dt.timedelta(days=i)
        if i % label_every == 0:
            parts.append(f'<text class="axis" x="{LEFT + slot * i + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle">{escape(day.strftime("%d %b"))}</text>')
        if i >= drawn:
            continue
        row = series[i]
        users = row.unique_users if row else 0
        day_launches = row.launches if row else 0
        x = LEFT + slot * i + (slot - bar_w) / 2
        tip = escape(f"{day.isoformat()}: {users} unique users, {day_launches} launches")
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y(users):.1f}" width="{bar_w:.1f}" '
                     f'height="{plot_h - (y(users) - TOP):.1f}"><title>{tip}</title></rect>')
        points.append(f"{LEFT + slot * i + slot / 2:.1f},{y(day_launches):.1f}")
    parts.append(f'<polyline class="line" points="{" ".join(points)}"/>')
    if span <= 62:
        for point in points:
            cx, cy = point.split(",")
            parts.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="2.5"/>')
    legend_y = HEIGHT - 10
    parts.append(f'<rect class="bar" x="{LEFT}" y="{legend_y - 9}" width="12" height="10"/>')
    parts.append(f'<text class="legend" x="{LEFT + 18}" y="{legend_y}">Unique users (distinct per day)</text>')
    parts.append(f'<line class="line" x1="{LEFT + 240}" x2="{LEFT + 262}" y1="{legend_y - 4}" y2="{legend_y - 4}"/>')
    parts.append(f'<text class="legend" x="{LEFT + 268}" y="{legend_y}">Launches</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
