"""Print the demo's audits beside the truth: per vendor, its true LLM share and each audit's verdict.

    python scripts/demo_summary.py examples/truth.csv out/demo [out/demo-references ...]

``truth.csv`` (examples/README.md) says which delivered item is LLM-written; each audit directory
holds the ``report.json`` and ``report.html`` of ``auditor audit``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path


def main(truth_path: str, *audits: str) -> None:
    with open(truth_path, newline="", encoding="utf-8") as handle:
        truth = list(csv.DictReader(handle))
    items: dict[str, int] = defaultdict(int)
    written: dict[str, int] = defaultdict(int)
    for row in truth:
        items[row["vendor"]] += 1
        written[row["vendor"]] += int(row["llm_written"])
    reports = {audit: json.loads((Path(audit) / "report.json").read_text(encoding="utf-8")) for audit in audits}
    for vendor in items:
        print(
            f"{vendor}: truly {written[vendor]} of {items[vendor]} items LLM-written ({written[vendor] / items[vendor]:.0%})"
        )
        for audit, report in reports.items():
            found = next((v for v in report["vendors"] if v["vendor"] == vendor), None)
            if found is None:
                print(f"  {audit}: not in the report")
                continue
            p, verdict = found["prevalence"], found.get("verdict") or {}
            print(
                f"  {audit}: {verdict.get('headline', 'no verdict')} "
                f"(estimate {p['estimate']:.0%}, interval {p['ci_low']:.0%}-{p['ci_high']:.0%})"
            )
    for audit in audits:
        print(f"report: {Path(audit) / 'report.html'}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
