"""Simple bar charts as inline SVG, laid out here and drawn by a template (no JavaScript chart library).

Only geometry and numbers leave this module; labels are escaped by the template.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float
    series: int


@dataclass
class Group:
    label: str
    x: float
    bars: list[Bar]


@dataclass
class Chart:
    width: int
    height: int
    baseline: float
    maximum: float
    groups: list[Group]
    series: list[str]
    label_every: int


def bar_chart(
    *, labels: list[str], series: list[tuple[str, list[float]]], width: int = 720, height: int = 220
) -> Chart:
    """Grouped vertical bars: one group per label, one bar per series."""
    top, bottom = 10.0, 30.0
    plot = height - top - bottom
    maximum = max([value for _name, values in series for value in values] + [1])
    slot = width / max(len(labels), 1)
    bar_width = max(slot * 0.8 / max(len(series), 1), 1.0)
    groups = []
    for index, label in enumerate(labels):
        bars = []
        for number, (_name, values) in enumerate(series):
            value = values[index]
            bar_height = plot * value / maximum
            bars.append(
                Bar(
                    x=round(index * slot + slot * 0.1 + number * bar_width, 2),
                    y=round(top + plot - bar_height, 2),
                    width=round(bar_width, 2),
                    height=round(bar_height, 2),
                    value=value,
                    series=number,
                )
            )
        groups.append(Group(label=label, x=round(index * slot + slot / 2, 2), bars=bars))
    # Keep axis labels legible on long ranges.
    label_every = max(1, round(len(labels) / 12))
    return Chart(
        width=width,
        height=height,
        baseline=top + plot,
        maximum=maximum,
        groups=groups,
        series=[name for name, _values in series],
        label_every=label_every,
    )
