"""The gate's result as JUnit XML: one test case per metric, a failure element per regression."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from replay.ci.gate import REGRESSED, SKIPPED, GateResult
from replay.ci.text import describe_side, fmt_change, fmt_value


def junit_tree(result: GateResult, suite: str = "pagereplay check") -> ET.ElementTree:
    """<testsuites><testsuite><testcase name=METRIC>[<failure>|<skipped>]</testcase>..."""
    fails = len(result.regressions)
    skips = sum(v.status == SKIPPED for v in result.verdicts)
    root = ET.Element("testsuites", name=suite, tests=str(len(result.verdicts)),
                      failures=str(fails))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(result.verdicts)),
                       failures=str(fails), errors="0", skipped=str(skips))
    props = ET.SubElement(ts, "properties")
    ET.SubElement(props, "property", name="baseline", value=describe_side(result.baseline))
    ET.SubElement(props, "property", name="current", value=describe_side(result.current))
    classname = "pagereplay.check." + result.current.side
    for v in result.verdicts:
        case = ET.SubElement(ts, "testcase", classname=classname, name=v.metric, time="0")
        detail = (f"baseline {fmt_value(v.baseline)}, current {fmt_value(v.current)}, "
                  f"change {fmt_change(v)}; threshold: {v.threshold.describe()}")
        if v.status == REGRESSED:
            failure = ET.SubElement(case, "failure", message=v.note, type="regression")
            failure.text = detail
        elif v.status == SKIPPED:
            ET.SubElement(case, "skipped", message=v.note)
        else:
            ET.SubElement(case, "system-out").text = f"{v.status}: {detail}"
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(result: GateResult, path: Path) -> Path:
    """Write the JUnit XML file (its directory is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(result).write(path, encoding="utf-8", xml_declaration=True)
    return path
