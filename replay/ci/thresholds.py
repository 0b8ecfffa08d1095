"""Regression thresholds: per metric, which direction is worse and how much worse is allowed.

A thresholds file is TOML (read with tomllib). Each table under `[metrics]` is keyed by a metric
name or an fnmatch pattern over metric names (`"unusable_index_pb.*"`: every zone and the worst
zone):

    [metrics.fallbacks_per_1000]
    worse = "higher"      # or "lower"
    relative = 0.10       # allowed worsening, as a share of the baseline
    absolute = 0.05       # allowed worsening, in the metric's own unit

A metric regresses when it moves the worse way by more than every limit given (both, when both
are given: the absolute limit is a noise floor for small baselines). The file's entries are laid
over the defaults below field by field; `enabled = false` drops one (or one zone of a
pattern), and a top-level `inherit_defaults = false` starts from none.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from replay.errors import InputError, SettingsError


@dataclass(frozen=True)
class Threshold:
    """How one metric (or a pattern of metrics) is gated."""

    pattern: str
    worse: str = "higher"
    relative: float | None = None
    absolute: float | None = None
    enabled: bool = True

    def describe(self) -> str:
        """E.g. 'worse if higher by > 0.05 and > 10%'."""
        limits = []
        if self.absolute is not None:
            limits.append(f"> {self.absolute:g}")
        if self.relative is not None:
            limits.append(f"> {100 * self.relative:g}%")
        return f"worse if {self.worse} by " + (" and ".join(limits) if limits else "> 0")

    def short(self) -> str:
        """E.g. 'higher >0.05 >10%' (for narrow consoles)."""
        limits = [f">{self.absolute:g}"] if self.absolute is not None else []
        if self.relative is not None:
            limits.append(f">{100 * self.relative:g}%")
        return " ".join([self.worse, *(limits or [">0"])])

    def allowed(self, baseline: float) -> float:
        """The largest worsening that still passes, for this baseline."""
        limits = [self.absolute] if self.absolute is not None else []
        if self.relative is not None:
            limits.append(self.relative * abs(baseline))
        return max(limits) if limits else 0.0


DEFAULTS: tuple[Threshold, ...] = (
    Threshold("fallbacks_per_1000", "higher", relative=0.10, absolute=0.05),
    Threshold("fragmenting_per_1000", "higher", relative=0.10, absolute=0.05),
    Threshold("unusable_index_pb.*", "higher", relative=0.05, absolute=10),
    Threshold("free_pageblocks.total", "lower", relative=0.02, absolute=2),
    Threshold("mixed_pageblocks.total", "higher", relative=0.10, absolute=2),
    Threshold("agreement_rate", "lower", absolute=0.001),
)

_FIELDS = {"worse", "relative", "absolute", "enabled"}


def load_thresholds(path: Path | None) -> list[Threshold]:
    """The defaults, with a thresholds file (if any) laid over them."""
    if path is None:
        return list(DEFAULTS)
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such thresholds file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read thresholds: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    return merge_thresholds(doc, str(path))


def merge_thresholds(doc: dict, where: str = "thresholds") -> list[Threshold]:
    """Thresholds from a parsed TOML document, over the defaults unless it says otherwise."""
    unknown = set(doc) - {"metrics", "inherit_defaults"}
    if unknown:
        raise SettingsError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                            "expected metrics.NAME tables and inherit_defaults")
    inherit = doc.get("inherit_defaults", True)
    if not isinstance(inherit, bool):
        raise SettingsError(f"{where}: inherit_defaults must be true or false")
    table = doc.get("metrics", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: metrics must be a table of metrics.NAME tables")
    by_pattern = {t.pattern: t for t in DEFAULTS} if inherit else {}
    for pattern, fields in _flatten(table):
        base = by_pattern.get(pattern, Threshold(pattern))
        by_pattern[pattern] = _apply(base, fields, f"{where}: metrics.{pattern}")
    return list(by_pattern.values())


def _flatten(table: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Dotted TOML keys back into metric names: [metrics.free_pageblocks.total] is the table
    {"free_pageblocks": {"total": {...}}}; a table's plain values are its own fields."""
    out: list[tuple[str, object]] = []
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if not isinstance(value, dict):
            out.append((name, value))  # not a table: _apply reports it
            continue
        fields = {k: v for k, v in value.items() if not isinstance(v, dict)}
        children = {k: v for k, v in value.items() if isinstance(v, dict)}
        if fields or not children:
            out.append((name, fields))
        out += _flatten(children, name)
    return out


def _apply(base: Threshold, fields: object, where: str) -> Threshold:
    if not isinstance(fields, dict):
        raise SettingsError(f"{where}: expected a table (worse, relative, absolute, enabled)")
    unknown = set(fields) - _FIELDS
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(_FIELDS))}")
    t = base
    if "worse" in fields:
        if fields["worse"] not in ("higher", "lower"):
            raise SettingsError(f"{where}: worse must be \"higher\" or \"lower\"")
        t = replace(t, worse=fields["worse"])
    for key in ("relative", "absolute"):
        if key in fields:
            v = fields[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise SettingsError(f"{where}: {key} must be a number >= 0")
            t = replace(t, **{key: float(v)})
    if "enabled" in fields:
        if not isinstance(fields["enabled"], bool):
            raise SettingsError(f"{where}: enabled must be true or false")
        t = replace(t, enabled=fields["enabled"])
    return t


def match(thresholds: list[Threshold], metric: str) -> Threshold | None:
    """The threshold for a metric: an exact name first, else the longest matching pattern;
    None when nothing matches or the best match is disabled."""
    best = next((t for t in thresholds if t.pattern == metric), None)
    if best is None:
        hits = [t for t in thresholds if fnmatch.fnmatchcase(metric, t.pattern)]
        best = max(hits, key=lambda t: len(t.pattern)) if hits else None
    return best if best is not None and best.enabled else None
