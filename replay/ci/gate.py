"""Baseline against current, metric by metric: pass, improved, regressed or skipped."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from replay.ci.metrics import ReportMetrics
from replay.ci.thresholds import Threshold, match

PASS, IMPROVED, REGRESSED, SKIPPED = "pass", "improved", "regressed", "skipped"


@dataclass
class Verdict:
    """One gated metric."""

    metric: str
    baseline: float | None
    current: float | None
    threshold: Threshold
    status: str
    note: str = ""

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def relative(self) -> float | None:
        if self.change is None or not self.baseline:
            return None
        return self.change / abs(self.baseline)


@dataclass
class GateResult:
    """Every verdict, and the two reports' sides and settings for the header."""

    baseline: ReportMetrics
    current: ReportMetrics
    verdicts: list[Verdict]

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == REGRESSED]

    @property
    def passed(self) -> bool:
        return not self.regressions


def judge(metric: str, baseline: float, current: float, t: Threshold) -> Verdict:
    """One metric against its threshold."""
    worsening = current - baseline if t.worse == "higher" else baseline - current
    allowed = t.allowed(baseline)
    if worsening > allowed:
        return Verdict(metric, baseline, current, t, REGRESSED,
                       f"{metric} got worse by {worsening:.6g} (allowed {allowed:.6g})")
    if -worsening > allowed:
        return Verdict(metric, baseline, current, t, IMPROVED)
    return Verdict(metric, baseline, current, t, PASS)


def evaluate(baseline: ReportMetrics, current: ReportMetrics,
             thresholds: list[Threshold]) -> GateResult:
    """Gate every metric that has a threshold; a metric one report lacks is skipped with a note,
    and a threshold no metric matches is listed as skipped once."""
    names = sorted(set(baseline.values) | set(current.values))
    verdicts: list[Verdict] = []
    for name in names:
        t = match(thresholds, name)
        if t is None:
            continue
        b, c = baseline.values.get(name), current.values.get(name)
        if b is None or c is None:
            which = "baseline" if b is None else "current"
            verdicts.append(Verdict(name, b, c, t, SKIPPED, f"absent from the {which} report"))
            continue
        verdicts.append(judge(name, b, c, t))
    for t in thresholds:
        if t.enabled and not any(fnmatch.fnmatchcase(n, t.pattern) for n in names):
            verdicts.append(Verdict(t.pattern, None, None, t, SKIPPED,
                                    "absent from both reports"))
    return GateResult(baseline, current, verdicts)
