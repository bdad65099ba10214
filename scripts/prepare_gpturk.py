"""Turn the GPTurk study's raw Mechanical Turk files into delivery files for `auditor audit`.

    python scripts/prepare_gpturk.py [--out out/gpturk]

Writes (texts stay outside the repository):
  batch_2023.csv   the real 2023 batch (Batch_5083843): one row per assignment with the worker,
                   the summary, WorkTimeInSeconds, and paste events / keystrokes counted from
                   the keystroke log the study recorded
  mturk_2018.csv   the 2018 batch of the same task (summaries.csv), before ChatGPT existed
  chatgpt.csv      ChatGPT summaries of the same abstracts (generated_outputs.csv)
  prompts.csv      the task's prompts: each of the 16 abstracts with the HIT's instruction, for
                   `auditor references generate --prompts prompts.csv --prompt-col prompt`
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.corpus import datasets_dir  # noqa: E402

# The HIT asked for a plain-language summary of about 100 words of a medical abstract.
INSTRUCTION = (
    "Summarize the following medical research abstract in about 100 words, in plain language for a general audience."
)
_SUMMARY_2018 = re.compile(r"<QuestionIdentifier>summary</QuestionIdentifier><FreeText>(.*?)</FreeText>", re.S)


def batch_2023(folder: Path) -> pd.DataFrame:
    rows = []
    with (folder / "Batch_5083843_batch_results.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            answer = json.loads(row["Answer.taskAnswers"])[0]
            log = json.loads(answer.get("log_of_what_they_did") or "[]")
            rows.append(
                {
                    "assignment": row["AssignmentId"],
                    "hit": row["HITId"],
                    "worker": row["WorkerId"],
                    "vendor": "mturk-2023",
                    "summary": answer.get("summary", ""),
                    "work_time_s": float(row["WorkTimeInSeconds"]),
                    "paste_events": sum(1 for event in log if event[0] == "paste"),
                    "keystrokes": sum(1 for event in log if event[0] == "key"),
                }
            )
    return pd.DataFrame(rows)


def batch_2018(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "summaries.csv")
    texts = frame["Answer"].map(lambda xml: m.group(1).strip() if (m := _SUMMARY_2018.search(xml)) else None)
    return pd.DataFrame(
        {
            "assignment": frame["AssignmentId"],
            "hit": frame["HITId"],
            "worker": frame["WorkerId"],
            "vendor": "mturk-2018",
            "summary": texts.map(lambda t: t and re.sub(r"&amp;", "&", t)),
            "work_time_s": pd.to_timedelta(frame["TimeSpent"]).dt.total_seconds(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "gpturk")
    args = parser.parse_args()
    folder = datasets_dir() / "gpturk"
    args.out.mkdir(parents=True, exist_ok=True)
    batch_2023(folder).to_csv(args.out / "batch_2023.csv", index=False)
    batch_2018(folder).to_csv(args.out / "mturk_2018.csv", index=False)
    generated = pd.read_csv(folder / "generated_outputs.csv")
    generated[["HITId", "temperature", "text"]].rename(columns={"text": "summary"}).to_csv(
        args.out / "chatgpt.csv", index=False
    )
    abstracts = pd.read_csv(folder / "abstracts_final.csv")["texts"]
    pd.DataFrame({"prompt": [INSTRUCTION + "\n\n" + a.strip() for a in abstracts]}).to_csv(
        args.out / "prompts.csv", index=False
    )
    print(f"wrote batch_2023.csv, mturk_2018.csv, chatgpt.csv and prompts.csv to {args.out}")


if __name__ == "__main__":
    main()
