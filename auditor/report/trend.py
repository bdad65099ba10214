"""Vendors across successive audits (``auditor compare``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from auditor.report.models import Report


def load_reports(paths: list[Path]) -> list[tuple[str, Report]]:
    loaded = []
    for path in paths:
        file = path / "report.json" if path.is_dir() else path
        if not file.exists():
            raise FileNotFoundError(f"{file}: no such report")
        try:
            loaded.append((str(path), Report.model_validate(json.loads(file.read_text()))))
        except ValueError as exc:
            raise ValueError(f"{file}: not a report of this tool ({str(exc).splitlines()[0]})") from exc
    return sorted(loaded, key=lambda pair: pair[1].created_at)


def trend_table(reports: list[tuple[str, Report]], vendor: str | None = None) -> pd.DataFrame:
    rows = []
    for name, report in reports:
        for v in report.vendors:
            if vendor is None or v.vendor == vendor:
                rows.append(
                    {
                        "vendor": v.vendor,
                        "audit": name,
                        "created_at": report.created_at,
                        "n_scored": v.n_scored,
                        "flag_rate": v.flag_rate.estimate,
                        "prevalence": v.prevalence.estimate,
                        "ci_low": v.prevalence.ci_low,
                        "ci_high": v.prevalence.ci_high,
                    }
                )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values(["vendor", "created_at"], kind="stable").reset_index(drop=True)
    frame["change"] = [_change(frame, i) for i in range(len(frame))]
    return frame


def _change(frame: pd.DataFrame, i: int) -> str:
    """Against the same vendor's previous audit: 'up'/'down' only when the intervals do not overlap."""
    vendors = frame["vendor"].astype(str).tolist()
    if i == 0 or vendors[i - 1] != vendors[i]:
        return ""
    before, now = frame.iloc[i - 1], frame.iloc[i]
    if now.ci_low > before.ci_high:
        return "up"
    if now.ci_high < before.ci_low:
        return "down"
    return "no clear change"


def write_trend(frame: pd.DataFrame, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".json":
        frame.to_json(path, orient="records", indent=2)
    else:
        header = (
            "| vendor | audit | created | scored | flag rate | prevalence | change |\n|---|---|---|---:|---:|---|---|\n"
        )
        lines = [
            f"| {r.vendor} | {r.audit} | {r.created_at} | {r.n_scored} | {r.flag_rate:.1%} | "
            f"{r.prevalence:.1%} [{r.ci_low:.1%}, {r.ci_high:.1%}] | {r.change} |"
            for r in frame.itertuples()
        ]
        path.write_text(header + "\n".join(lines) + "\n")
