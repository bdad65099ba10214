"""Build the example delivery in examples/ from the public corpus (deterministic: fixed seed).

    python scripts/make_example.py [--source ../shared/datasets] [--out examples]

One task, one permissively licensed source: short social-media posts with a sentiment label, the
SemEval tweet-sentiment task of Worker vs GPT (MIT; github.com/AndersGiovanni/worker_vs_gpt), whose
human posts are crowd-labelled tweets and whose LLM posts GPT-4 and Llama-2-70B-chat wrote to carry
a given sentiment. Three vendors deliver 110 posts each through six workers, with known LLM shares
(0%, about 15%, 50%), the LLM posts concentrated on some workers. The source has no time-on-task or
paste columns, so the delivery has none.

* ``delivery.csv``: item_id, vendor, worker_id, sentiment, text (what an auditor receives);
* ``truth.csv``: item_id, vendor, worker_id, llm_written, generator, source_id (the public
  corpus's row id, ``worker_vs_gpt:<line>``), kept apart from the delivery;
* ``references/human.csv``, ``references/machine.csv``: 100 human and 100 LLM posts of the same
  task for ``auditor audit --human-reference ... --machine-reference ...``.

Nothing here was trained on by the shipped models: the delivery is the public corpus's ``test``
split (its LLM posts one per pairing group, the group of a crowd post and the LLM posts written
from it), topped up with crowd posts of the ``calibration`` split that have no group; the
references are the ``calibration`` split's other posts, so no reference shares a text or a
pairing group with a delivered post.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.corpus import load_corpus  # noqa: E402

SEED = 24
DATASET, DOMAIN = "worker_vs_gpt", "tweet_sentiment_semeval"
# vendor -> workers: (worker id, posts delivered, of which LLM-written)
VENDORS: dict[str, list[tuple[str, int, int]]] = {
    "Northwind Annotations": [("nw-01", 20, 0), ("nw-02", 20, 0), ("nw-03", 18, 0), ("nw-04", 18, 0), ("nw-05", 17, 0), ("nw-06", 17, 0)],
    "Bluepeak Data": [("bp-01", 20, 14), ("bp-02", 20, 3), ("bp-03", 18, 0), ("bp-04", 18, 0), ("bp-05", 17, 0), ("bp-06", 17, 0)],
    "Quickscale Crowd": [("qs-01", 20, 19), ("qs-02", 20, 18), ("qs-03", 18, 15), ("qs-04", 18, 2), ("qs-05", 17, 1), ("qs-06", 17, 0)],
}  # fmt: skip
REFERENCES = 100
UNPAIRED = f"{DATASET}:{DATASET}:"  # the group of a crowd post no LLM post was written from


def one_per_group(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One row of each pairing group, in a random order."""
    shuffled = frame.sample(frac=1.0, random_state=int(rng.integers(2**31)))
    return shuffled.drop_duplicates("group").drop_duplicates("text")


def build(corpus: pd.DataFrame, sentiment: dict[str, str]) -> tuple[pd.DataFrame, ...]:
    """The delivery, its truth, and the human and LLM references; ``sentiment``: row id -> task label."""
    rng = np.random.default_rng(SEED)
    task = corpus[(corpus.dataset == DATASET) & (corpus.domain == DOMAIN)]
    task = task.assign(sentiment=task["id"].map(sentiment))
    test, calibration = task[task.split == "test"], task[task.split == "calibration"]
    n_llm = sum(k for workers in VENDORS.values() for _, _, k in workers)
    n_items = sum(n for workers in VENDORS.values() for _, n, _ in workers)
    # LLM posts: one per pairing group of the test split; human posts: the test split's others (crowd
    # posts of their own, and seeds of groups no delivered LLM post comes from), then crowd posts of
    # the calibration split that belong to no group
    machines = one_per_group(test[test.label == 1], rng).head(n_llm)
    humans = pd.concat(
        [
            one_per_group(test[(test.label == 0) & ~test.group.isin(machines.group)], rng),
            one_per_group(calibration[(calibration.label == 0) & calibration.group.str.startswith(UNPAIRED)], rng),
        ]
    ).head(n_items - n_llm)
    if len(humans) + len(machines) < n_items:
        raise SystemExit(f"only {len(humans)} human and {len(machines)} LLM posts of {DOMAIN} for the delivery")

    rows, h, m = [], iter(humans.itertuples()), iter(machines.itertuples())
    for vendor, workers in VENDORS.items():
        for worker, n, k in workers:
            for source in [next(m) for _ in range(k)] + [next(h) for _ in range(n - k)]:
                rows.append(
                    {
                        "vendor": vendor,
                        "worker_id": worker,
                        "sentiment": source.sentiment,
                        "text": source.text,
                        "llm_written": 1 if source.label == 1 else 0,
                        "generator": source.raw_generator,
                        "source_id": source.id,
                    }
                )
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    frame.insert(0, "item_id", [f"item-{i:04d}" for i in range(1, len(frame) + 1)])
    delivery = frame[["item_id", "vendor", "worker_id", "sentiment", "text"]]
    truth = frame[["item_id", "vendor", "worker_id", "llm_written", "generator", "source_id"]]

    # references: the calibration split's other groups; LLM posts at most two per group
    references = calibration[~calibration.group.isin(humans.group) & ~calibration.text.isin(set(frame.text))]
    human = one_per_group(references[references.label == 0], rng).head(REFERENCES)
    machine = references[references.label == 1].sample(frac=1.0, random_state=int(rng.integers(2**31)))
    machine = machine.drop_duplicates("text").groupby("group", sort=False).head(2).head(REFERENCES)
    return delivery, truth, human[["sentiment", "text"]], machine[["sentiment", "text"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "examples")
    args = parser.parse_args()
    corpus = load_corpus(args.source)
    # the task label (the sentiment the post carries) is a field of the source rows, not of the corpus table
    raw = pd.read_json(args.source / DATASET / f"{DATASET}.jsonl", lines=True)
    sentiment = {f"{DATASET}:{line}": label for line, label in enumerate(raw["task_label"])}
    delivery, truth, human, machine = build(corpus, sentiment)
    (args.out / "references").mkdir(parents=True, exist_ok=True)
    delivery.to_csv(args.out / "delivery.csv", index=False)
    truth.to_csv(args.out / "truth.csv", index=False)
    human.to_csv(args.out / "references" / "human.csv", index=False)
    machine.to_csv(args.out / "references" / "machine.csv", index=False)
    shares = truth.groupby("vendor", sort=False)["llm_written"].agg(["size", "sum", "mean"])
    for vendor, (size, llm, share) in shares.iterrows():
        print(f"{vendor}: {int(size)} posts, {int(llm)} LLM-written ({share:.1%})")
    print(f"-> {args.out}: delivery.csv, truth.csv, references/ ({len(human)} human, {len(machine)} LLM posts)")


if __name__ == "__main__":
    main()
