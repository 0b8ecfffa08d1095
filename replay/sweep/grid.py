"""`--grid KEY=V1,V2` options into the list of settings points (their cartesian product)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from replay.engine.simulate import Settings
from replay.errors import SettingsError

DEFAULT = "default"  # a grid value meaning "leave the knob at the kernel's (trace's) value"


@dataclass(frozen=True)
class Point:
    """One combination of settings: the knob values (None for default) and its --set items."""

    index: int
    values: tuple[tuple[str, object], ...]  # (knob, parsed value or None), in grid order
    items: tuple[str, ...]  # KEY=VALUE for Settings.parse (default knobs left out)

    @property
    def label(self) -> str:
        """'mobility_grouping=off, pcp_high=64', or 'default'."""
        return ", ".join(self.items) or DEFAULT


def parse_axis(text: str) -> tuple[str, list[tuple[object, str | None]]]:
    """'pcp_high=default,64' -> ('pcp_high', [(None, None), (64, 'pcp_high=64')])."""
    if "=" not in text:
        raise SettingsError(f"--grid {text!r}: expected KEY=V1,V2,...")
    key, raw = (x.strip() for x in text.split("=", 1))
    raws = [v.strip() for v in raw.split(",")]
    if not raw.strip() or any(not v for v in raws):
        raise SettingsError(f"--grid {text!r}: empty value (list values like KEY=V1,V2)")
    values: list[tuple[object, str | None]] = []
    for v in raws:
        if v == DEFAULT:
            values.append((None, None))
            continue
        item = f"{key}={v}"
        values.append((Settings.parse([item]).get(key), item))
    if len({repr(v) for v, _ in values}) != len(values):
        raise SettingsError(f"--grid {text!r}: a value is listed twice")
    return key, values


def parse_grid(axes: list[str] | None) -> list[Point]:
    """Every combination of the --grid axes (one default point when there are none)."""
    parsed = [parse_axis(a) for a in axes or []]
    keys = [k for k, _ in parsed]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SettingsError(f"--grid {dup}: given twice (list its values in one --grid)")
    points = []
    for i, combo in enumerate(itertools.product(*(vals for _, vals in parsed))):
        values = tuple((k, v) for k, (v, _) in zip(keys, combo, strict=True))
        items = tuple(item for _, item in combo if item is not None)
        points.append(Point(i, values, items))
    return points


def knobs(points: list[Point]) -> list[str]:
    """The knobs the grid varies, in grid order."""
    return [k for k, _ in points[0].values] if points else []
