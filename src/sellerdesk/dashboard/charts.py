"""Bar charts drawn on the server as inline SVG (no chart script): the geometry is computed
here, `_chart.html` draws it with a `<title>`, a `<desc>` and a data table beside it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

Number = int | Decimal

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28
MAX_X_LABELS = 7


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    description: str
    width: int
    height: int
    left: int
    right: float
    zero_y: float
    bars: list[Bar]
    ticks: list[Tick]
    x_labels: list[tuple[float, str]]
    legend: list[str]
    columns: list[str]
    rows: list[list[str]]


def _nice_step(span: float, steps: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) that covers `span` in about `steps`."""
    raw = span / steps if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def bar_chart(
    chart_id: str,
    title: str,
    days: Sequence[date],
    series: Sequence[tuple[str, Sequence[Number]]],
    fmt: Callable[[Number], str],
    unit: str,
) -> Chart:
    """One bar per day, the series stacked (positives up from 0, negatives down)."""
    count = max(len(days), 1)
    ups = [sum((s[1][i] for s in series if s[1][i] > 0), start=0) for i in range(len(days))]
    downs = [sum((s[1][i] for s in series if s[1][i] < 0), start=0) for i in range(len(days))]
    top = float(max([*ups, 0])) or 1.0
    bottom = float(min([*downs, 0]))
    step = _nice_step(top - bottom)
    if all(isinstance(v, int) for _, values in series for v in values):
        step = max(step, 1.0)  # whole units (orders, credits): no half ticks
    top = math.ceil(top / step) * step
    bottom = math.floor(bottom / step) * step
    plot_h = HEIGHT - TOP - BOTTOM
    scale = plot_h / (top - bottom)

    def y_of(value: float) -> float:
        return TOP + (top - value) * scale

    slot = (WIDTH - LEFT - RIGHT) / count
    bar_w = max(slot * 0.72, 1.0)
    bars: list[Bar] = []
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        above, below = 0.0, 0.0
        for index, (name, values) in enumerate(series):
            value = float(values[i])
            if value == 0:
                continue
            if value > 0:
                start, above = above, above + value
                y, height = y_of(above), (above - start) * scale
            else:
                start, below = below, below + value
                y, height = y_of(start), (start - below) * scale
            label = f"{day.isoformat()}: {fmt(values[i])} {unit}, {name}"
            bars.append(
                Bar(round(x, 2), round(y, 2), round(bar_w, 2), round(height, 2), index, label)
            )
    ticks = []
    value = bottom
    while value <= top + step / 2:
        ticks.append(Tick(round(y_of(value), 2), _plain(value)))
        value += step
    every = max(1, math.ceil(count / MAX_X_LABELS))
    x_labels = [
        (round(LEFT + i * slot + slot / 2, 2), day.strftime("%b %d"))
        for i, day in enumerate(days)
        if i % every == 0 or i == count - 1
    ]
    rows = [
        [day.isoformat(), *(fmt(values[i]) for _, values in series)] for i, day in enumerate(days)
    ]
    return Chart(
        id=chart_id,
        title=title,
        description=_describe(title, days, series, fmt, unit),
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        zero_y=round(y_of(0), 2),
        bars=bars,
        ticks=ticks,
        x_labels=x_labels,
        legend=[name for name, _ in series],
        columns=["Date", *(name for name, _ in series)],
        rows=rows,
    )


def _plain(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.1f}"


def _describe(
    title: str,
    days: Sequence[date],
    series: Sequence[tuple[str, Sequence[Number]]],
    fmt: Callable[[Number], str],
    unit: str,
) -> str:
    if not days:
        return f"{title}: no days."
    parts = [f"{title}, one bar per day from {days[0].isoformat()} to {days[-1].isoformat()}."]
    for name, values in series:
        total = sum(values, start=Decimal(0) if any(isinstance(v, Decimal) for v in values) else 0)
        best = max(range(len(values)), key=lambda i: values[i]) if values else 0
        parts.append(
            f"{name}: {fmt(total)} {unit} in total"
            + (f", most on {days[best].isoformat()} ({fmt(values[best])})." if total else ".")
        )
    parts.append("The table below holds every value.")
    return " ".join(parts)
