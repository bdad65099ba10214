"""Detection quality on real data: each signal, the combined classifier, the previous
classifier configuration and a TF-IDF baseline.

    # generalisation over ../shared/datasets: leave-one-data-set-out (a whole source), leave-one-
    # generator-out, leave-one-domain-out (every model is retrained per fold), TOEFL false
    # positives, GPTurk, and flag rates per source and per edit kind at the operating threshold
    python benchmarks/detection.py [--cap 30] [--kinds source generator domain evaluation operating] [--out FILE.md]

    # the same folds for the alternative classifier configurations in VARIANTS
    python benchmarks/detection.py --variants   # -> benchmarks/results/detection_variants.md

The sample is the default model's training sample (``auditor.corpus.training_sample``).
Every model trains on the train split of the folds that remain, classes balanced (variants
marked "source weights" weight by ``auditor.corpus.training_weights``), with the label policy
for edited text (light and moderate polish are in no fold;
the per-edit table reports them). Held-out sets without human texts are tested against the
test split of their human counterparts (``auditor.corpus.COUNTERPARTS``).

    # the shipped model on any JSONL file with the shared schema (text, label, generator, domain)
    python benchmarks/detection.py --data FILE.jsonl

AUROC is threshold-free. "TPR@1%" is the true-positive rate at the threshold where 1% of
that set's human texts score higher (an oracle threshold, the usual ROC summary).
"FPR/TPR op." are measured at the operating threshold chosen the way `auditor calibrate`
chooses it: on human texts of the *training* domains' calibration split, never on the
held-out fold. LM features are cached (auditor.features), so re-runs are fast.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.calibration import conformal_threshold  # noqa: E402
from auditor.config import Settings  # noqa: E402
from auditor.corpus import (  # noqa: E402
    COUNTERPARTS,
    counterpart_humans,
    load_corpus,
    normalise_generator,
    strip_artefacts,
    training_sample,
    training_weights,
)
from auditor.features import FeatureStore, text_key  # noqa: E402
from auditor.training import feature_detector  # noqa: E402
from detectors.bundle import load_bundle  # noqa: E402
from detectors.classifier import SHIPPED_LAYERS, LMTextClassifier  # noqa: E402
from detectors.perplexity import MACHINE_DIRECTION  # noqa: E402

ZERO_SHOT = [s for s in MACHINE_DIRECTION if s != "ll_std"]
TARGET_FPR = 0.01
warnings.filterwarnings("ignore", category=UserWarning)


def tpr_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float = TARGET_FPR) -> float:
    human = np.sort(s[y == 0])
    if len(human) == 0 or (y == 1).sum() == 0:
        return float("nan")
    threshold = human[min(len(human) - 1, int(np.ceil((1 - fpr) * len(human))) - 1)]
    return float((s[y == 1] > threshold).mean())


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


def baseline() -> object:
    """The plain baseline the issue names: word uni+bigram TF-IDF and logistic regression."""
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True),
        LogisticRegression(C=4.0, max_iter=3000, class_weight="balanced"),
    )


def _lm_classifier(weighted: bool = True, **params):
    """A combined-classifier configuration: ``LMTextClassifier(**params)`` on the LM features,
    trained with ``training_weights`` (or plain class balance when not ``weighted``)."""

    def fit(bench: Bench, train: np.ndarray):
        rows = train & bench.trainable
        weight = training_weights(bench.sample[rows]) if weighted else None
        model = LMTextClassifier(lm=bench.detector, **params).fit_features(
            bench.features(rows), bench.y[rows], sample_weight=weight
        )
        return lambda rows: model.predict_proba_features(bench.features(rows))[:, 1]

    return fit


def _tfidf(bench: Bench, train: np.ndarray):
    rows = train & bench.trainable
    model = baseline()
    model.fit(bench.texts[rows], bench.y[rows], logisticregression__sample_weight=training_weights(bench.sample[rows]))
    return lambda rows: model.predict_proba(bench.texts[rows])[:, 1]


def _mean_of(*fits):
    """Average of several models' probabilities (a simple stacking-free ensemble)."""

    def fit(bench: Bench, train: np.ndarray):
        predictors = [f(bench, train) for f in fits]
        return lambda rows: np.mean([p(rows) for p in predictors], axis=0)

    return fit


# The shipped configuration (classifier v2: scalars, token histograms, layers 16 and last), the
# previous one (v1: no histograms) retrained on the same folds, and the baseline the issue names.
MODELS = {
    "combined": _lm_classifier(weighted=False, layers=SHIPPED_LAYERS),
    "v1 config": _lm_classifier(weighted=False, layers=SHIPPED_LAYERS, histograms=False),
    "tfidf_lr": _tfidf,
}
# Alternatives measured with --variants on the same folds (benchmarks/results/detection_variants.md).
VARIANTS = {
    "combined, source weights": _lm_classifier(layers=SHIPPED_LAYERS),
    "combined, every fourth layer": _lm_classifier(weighted=False),
    "combined, every fourth layer, source weights": _lm_classifier(),
    "logistic (all features)": _lm_classifier(weighted=False, layers=SHIPPED_LAYERS, model="logistic"),
    "logistic, scalars + histograms": _lm_classifier(weighted=False, layers=(), model="logistic", C=1.0),
    "combined + logistic scalars/histograms (mean)": _mean_of(
        _lm_classifier(weighted=False, layers=SHIPPED_LAYERS),
        _lm_classifier(weighted=False, layers=(), model="logistic", C=1.0),
    ),
}
MIN_FOLD = 20  # texts of each class a held-out fold needs


class Bench:
    def __init__(self, sample: pd.DataFrame, signals: pd.DataFrame, detector, models: dict | None = None):
        scored = signals["skip_reason"].isna().to_numpy()
        print(f"{int((~scored).sum())} texts too short to score are left out", flush=True)
        self.sample, self.signals = sample[scored].reset_index(drop=True), signals[scored].reset_index(drop=True)
        self.detector = detector
        self.models = models or MODELS
        self.y = self.sample["label"].to_numpy()
        # light and moderate polish are neither class (auditor.corpus): reported per edit kind only
        self.trainable = self.sample["train_label"].notna().to_numpy()
        self.in_pool = self.trainable & ~self.sample["split"].eq("eval").to_numpy()
        self.texts = self.sample["text"].to_numpy(dtype=object)
        self.split = {name: self.sample["split"].eq(name).to_numpy() for name in ("train", "calibration", "test")}
        train = self.split["train"] & self.trainable
        # Orient each zero-shot signal once, on training rows, so that higher = more LLM-like.
        self.orientation = {
            s: (1.0 if auroc(self.y[train], self.signals.loc[train, s].to_numpy()) >= 0.5 else -1.0) for s in ZERO_SHOT
        }

    def features(self, rows: np.ndarray) -> pd.DataFrame:
        return self.signals[rows].reset_index(drop=True)

    def counterparts(self, machine: np.ndarray) -> np.ndarray:
        """Test-split human stand-ins for the machine-only cells among ``machine`` rows."""
        mask = np.zeros(len(self.sample), bool)
        cells = self.sample.loc[machine, ["dataset", "domain"]].drop_duplicates().itertuples(index=False)
        for dataset, domain in cells:
            for key in ((dataset, domain), (dataset, None)):
                if key in COUNTERPARTS:
                    mask |= counterpart_humans(self.sample, *key).to_numpy()
        return mask & self.split["test"] & self.trainable

    def fold(self, train: np.ndarray, test: np.ndarray, calibration: np.ndarray) -> dict[str, dict[str, float]] | None:
        """Train every model on ``train``; threshold on ``calibration`` humans; score ``test``."""
        y_test = self.y[test]
        if min((y_test == 0).sum(), (y_test == 1).sum()) < MIN_FOLD:
            return None
        results = {}
        for name, fit in self.models.items():
            predict = fit(self, train)
            threshold = conformal_threshold(predict(calibration & self.trainable & (self.y == 0)), TARGET_FPR)
            results[name] = self._metrics(y_test, predict(test), threshold)
        for signal in ZERO_SHOT:
            scores = self.orientation[signal] * self.signals.loc[test, signal].to_numpy()
            results[signal] = {"auroc": auroc(y_test, scores), "tpr1": tpr_at_fpr(y_test, scores)}
        return results

    def held_out(self, kind: str, name: str, held: np.ndarray, humans: np.ndarray) -> list[dict]:
        """One fold: ``held`` rows leave training and calibration; the test set is their
        machine texts and ``humans`` (their own humans, or counterparts where they have none)."""
        test = self.in_pool & ((held & (self.y == 1)) | humans)
        results = self.fold(self.split["train"] & ~held, test, self.split["calibration"] & ~held)
        if results is None:
            return []
        print(f"  held out {kind} {name}", flush=True)
        return _rows(kind, name, results)

    @staticmethod
    def _metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
        return {
            "auroc": auroc(y, scores),
            "tpr1": tpr_at_fpr(y, scores),
            "fpr_op": float((scores[y == 0] > threshold).mean()) if (y == 0).any() else float("nan"),
            "tpr_op": float((scores[y == 1] > threshold).mean()) if (y == 1).any() else float("nan"),
            "n_human": int((y == 0).sum()),
            "n_machine": int((y == 1).sum()),
        }


def source_runs(bench: Bench) -> pd.DataFrame:
    """Leave one data set out: a whole source (its generators, domains and collection style) is
    held out; sets without human texts are tested against their counterparts' test split."""
    s, rows = bench.sample, []
    for source in sorted(s.loc[bench.in_pool, "source"].unique()):
        held = s["source"].eq(source).to_numpy()
        humans = held & (bench.y == 0)
        if not humans.any():
            humans = bench.counterparts(held)
        rows += bench.held_out("source", source, held, humans)
    return pd.DataFrame(rows)


def generator_runs(bench: Bench) -> pd.DataFrame:
    """Leave one generator out; its humans: test-split humans of the cells it wrote in."""
    s, rows = bench.sample, []
    for generator in sorted(set(s.loc[bench.in_pool, "generator"]) - {"human"}):
        held = s["generator"].eq(generator).to_numpy()
        cells = s.loc[held, ["dataset", "domain"]].drop_duplicates()
        same_cells = s[["dataset", "domain"]].merge(cells, how="left", indicator=True)["_merge"].eq("both")
        humans = same_cells.to_numpy() & (bench.y == 0) & bench.split["test"]
        rows += bench.held_out("generator", generator, held, humans | bench.counterparts(held))
    return pd.DataFrame(rows)


def domain_runs(bench: Bench) -> pd.DataFrame:
    s, rows = bench.sample, []
    for domain in sorted(s.loc[bench.in_pool, "domain"].unique()):
        held = s["domain"].eq(domain).to_numpy()
        humans = held & (bench.y == 0)
        rows += bench.held_out("domain", domain, held, humans if humans.any() else bench.counterparts(held))
    return pd.DataFrame(rows)


def evaluation_only(bench: Bench) -> pd.DataFrame:
    """TOEFL (non-native) essays and GPTurk: never in training; model trained on the train split."""
    s = bench.sample
    train, cal = bench.split["train"], bench.split["calibration"]
    rows = []
    for name, mask in (
        ("TOEFL essays (non-native humans vs GPT-4-polished)", s["domain"].eq("toefl_essay_nonnative")),
        ("US 8th-grade essays (native), test split", s["domain"].eq("us_8th_grade_essay") & s["split"].eq("test")),
        ("GPTurk labelled summaries (train.json + test.json)", s["dataset"].eq("gpturk")),
    ):
        rows += _rows("evaluation-only", name, bench.fold(train, mask.to_numpy() & bench.trainable, cal) or {})
    return pd.DataFrame(rows)


def operating_point_runs(bench: Bench) -> pd.DataFrame:
    """The combined model trained on the train split, threshold for 1% FPR on calibration
    humans; flag rates on the test split per source (FPR and TPR) and per edit kind (all
    edited texts, light polish included, whatever the label policy does with them)."""
    s = bench.sample
    predict = bench.models["combined"](bench, bench.split["train"])
    threshold = conformal_threshold(predict(bench.split["calibration"] & bench.trainable & (bench.y == 0)), TARGET_FPR)
    test = bench.split["test"]
    flagged = predict(test) > threshold
    part = s[test].assign(flagged=flagged)
    rows = []
    for (source, label), cell in part[part["train_label"].notna()].groupby(["source", "label"]):
        rate = "fpr_op" if label == 0 else "tpr_op"
        rows.append(
            {
                "kind": "per-source",
                "held_out": source,
                "model": "combined",
                rate: cell["flagged"].mean(),
                "n_human" if label == 0 else "n_machine": len(cell),
            }
        )
    for (tier, edit), cell in part[part["edit"].ne("none")].groupby(["edit_tier", "edit"]):
        rows.append(
            {
                "kind": "per-edit",
                "held_out": f"{tier}: {edit}",
                "model": "combined",
                "tpr_op": cell["flagged"].mean(),
                "n_machine": len(cell),
            }
        )
    return pd.DataFrame(rows).groupby(["kind", "held_out", "model"], as_index=False).first()


def _rows(kind: str, held_out: str, results: dict) -> list[dict]:
    return [{"kind": kind, "held_out": held_out, "model": model, **metrics} for model, metrics in results.items()]


HEADLINE = ("combined", "v1 config", "tfidf_lr")
FOLD_KINDS = ("source", "generator", "domain")


def markdown(results: pd.DataFrame) -> str:
    out = []
    main = results[results["model"].isin(HEADLINE) & ~results["kind"].str.startswith("per-")]
    for kind, part in main.groupby("kind", sort=False):
        out.append(f"\n#### {kind}\n")
        table = part.pivot_table(
            index="held_out", columns="model", values=["auroc", "tpr1", "fpr_op", "tpr_op"], sort=False
        )
        counts = part[part.model == "combined"].set_index("held_out")[["n_human", "n_machine"]]
        out.append(
            "| held out | human | LLM | AUROC combined | AUROC v1 config | AUROC TF-IDF | TPR@1% combined | TPR@1% v1 config "
            "| TPR@1% TF-IDF | FPR op. combined | TPR op. combined | FPR op. TF-IDF |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in table.iterrows():
            c = counts.loc[name]
            cells = [r[(m, model)] for m in ("auroc", "tpr1") for model in HEADLINE]
            cells += [r[("fpr_op", "combined")], r[("tpr_op", "combined")], r[("fpr_op", "tfidf_lr")]]
            out.append(
                f"| {name} | {c.n_human:.0f} | {c.n_machine:.0f} | " + " | ".join(f"{v:.3f}" for v in cells) + " |"
            )
        if kind in FOLD_KINDS:
            mean = part.groupby("model")[["auroc", "tpr1", "fpr_op", "tpr_op"]].mean()
            cells = [mean.loc[model, m] for m in ("auroc", "tpr1") for model in HEADLINE]
            cells += [mean.loc["combined", "fpr_op"], mean.loc["combined", "tpr_op"], mean.loc["tfidf_lr", "fpr_op"]]
            out.append(f"| **mean over {len(counts)} folds** | | | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    out += _operating_point_markdown(results)
    signals = results[results["kind"].isin(FOLD_KINDS)]
    if signals.empty:
        return "\n".join(out) + "\n"
    kinds = [k for k in FOLD_KINDS if k in set(signals["kind"])]
    table = (
        signals.groupby(["model", "kind"])[["auroc", "tpr1"]]
        .mean()
        .unstack("kind")
        .reindex(columns=pd.MultiIndex.from_product([["auroc", "tpr1"], kinds]))
    )
    out.append("\n#### each signal alone (mean AUROC / TPR@1% over held-out folds)\n")
    out.append("| signal | " + " | ".join(f"{m} held-out {k}s" for m in ("AUROC", "TPR@1%") for k in kinds) + " |")
    out.append("|---|" + "---|" * (2 * len(kinds)))
    for model in [*HEADLINE, *ZERO_SHOT]:
        r = table.loc[model]
        out.append(f"| {model} | " + " | ".join(f"{r[(m, k)]:.3f}" for m in ("auroc", "tpr1") for k in kinds) + " |")
    return "\n".join(out) + "\n"


def _operating_point_markdown(results: pd.DataFrame) -> list[str]:
    tables = (
        (
            "per-source",
            "per source at the operating threshold (test split; trained on all train splits)",
            "| source | human | FPR | LLM | TPR |",
            "| {r.held_out} | {r.n_human:.0f} | {r.fpr_op:.3f} | {r.n_machine:.0f} | {r.tpr_op:.3f} |",
        ),
        (
            "per-edit",
            "per edit kind at the operating threshold (test split; flag rate)",
            "| policy tier: edit | texts | flagged |",
            "| {r.held_out} | {r.n_machine:.0f} | {r.tpr_op:.3f} |",
        ),
    )
    out = []
    for kind, title, header, row in tables:
        part = results[results["kind"].eq(kind)]
        if len(part):
            out += [f"\n#### {title}\n", header, "|---" * header.count(" | ") + "|---|"]
            out += [row.format(r=r) for r in part.itertuples()]
    return out


def variants_markdown(results: pd.DataFrame) -> str:
    """One row per model: mean over held-out generator and domain folds, TOEFL and GPTurk."""
    models = [m for m in results["model"].unique() if m not in ZERO_SHOT]
    folds = results[results["kind"].isin(FOLD_KINDS) & results["model"].isin(models)]
    metrics = ["auroc", "tpr1", "fpr_op", "tpr_op"]
    means = (
        folds.groupby(["model", "kind"])[metrics]
        .mean()
        .unstack("kind")
        .reindex(columns=pd.MultiIndex.from_product([metrics, FOLD_KINDS]))
    )
    held = results[results["kind"].eq("evaluation-only")]

    def evaluation(model: str, prefix: str, metric: str) -> float:
        row = held[held["model"].eq(model) & held["held_out"].str.startswith(prefix)]
        return float(row[metric].iloc[0]) if len(row) else float("nan")

    out = [
        "| model | AUROC source | TPR@1% source | AUROC gen. | TPR@1% gen. | AUROC dom. | TPR@1% dom. "
        "| FPR op. src./gen./dom. | TOEFL FPR op. | GPTurk AUROC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        m = means.loc[model]
        cells = [f"{m[(metric, kind)]:.3f}" for kind in FOLD_KINDS for metric in ("auroc", "tpr1")]
        cells.append(" / ".join(f"{m[('fpr_op', kind)]:.3f}" for kind in FOLD_KINDS))
        cells += [f"{evaluation(model, 'TOEFL', 'fpr_op'):.3f}", f"{evaluation(model, 'GPTurk', 'auroc'):.3f}"]
        out.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def data_file_report(path: Path, settings: Settings) -> str:
    """The shipped model and every signal on a file; rows seen in training are left out."""
    frame = pd.read_json(path, lines=True)
    frame["text"] = frame["text"].map(strip_artefacts)
    frame["label"] = (frame["label"] == "machine").astype(int)
    frame["generator"] = frame["generator"].map(normalise_generator)
    trained = set(text_key(t) for t in training_sample(load_corpus()).query("split == 'train'")["text"])
    seen = frame["text"].map(text_key).isin(trained)
    frame = frame[~seen].reset_index(drop=True)
    classifier = load_bundle(cache_dir=str(settings.cache_dir))
    signals = FeatureStore(settings.cache_dir, feature_detector(settings)).signals(frame["text"].tolist())
    frame["combined"] = classifier.predict_proba_features(signals)[:, 1]
    for signal in ZERO_SHOT:
        frame[signal] = signals[signal].to_numpy()
    lines = [f"{path}: {len(frame)} rows ({int(seen.sum())} rows seen in training left out)\n"]
    humans = frame[frame.label == 0]
    for by in ("generator", "domain"):
        lines.append(f"\n| {by} | n | " + " | ".join(f"{c} AUROC / TPR@1%" for c in ["combined", *ZERO_SHOT]) + " |")
        lines.append("|---|---|" + "---|" * (1 + len(ZERO_SHOT)))
        for value, part in frame[frame.label == 1].groupby(by):
            test = pd.concat([part, humans if by == "generator" else humans[humans[by] == value]])
            if len(test[test.label == 0]) == 0:
                continue
            y = test["label"].to_numpy()
            cells = []
            for column in ["combined", *ZERO_SHOT]:
                s = test[column].to_numpy()
                s = s if auroc(y, s) >= 0.5 or column == "combined" else -s
                cells.append(f"{auroc(y, s):.3f} / {tpr_at_fpr(y, s):.3f}")
            lines.append(f"| {value} | {len(test)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, help="JSONL file with the shared schema; default: held-out runs over the shared sets"
    )
    parser.add_argument(
        "--cap", type=int, default=30, help="rows per (dataset, domain, generator) cell; 30 is the training sample"
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also measure the alternative classifier configurations (VARIANTS) on the same folds",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=["source", "generator", "domain", "evaluation", "operating"],
        default=["source", "generator", "domain", "evaluation", "operating"],
        help="which held-out runs to make (the tables of the missing kinds are left out)",
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/detection[_variants].md")
    args = parser.parse_args()
    settings = Settings()
    started = time.time()
    out = args.out or ROOT / "benchmarks" / "results" / ("detection_variants.md" if args.variants else "detection.md")
    if args.data:
        text = data_file_report(args.data, settings)
    else:
        sample = training_sample(load_corpus(), cap=args.cap)
        print(f"{len(sample)} texts, at most {args.cap} per cell", flush=True)
        detector = feature_detector(settings)
        signals = FeatureStore(settings.cache_dir, detector).signals(sample["text"].tolist())
        bench = Bench(sample, signals, detector, {**MODELS, **VARIANTS} if args.variants else MODELS)
        runs = {
            "source": source_runs,
            "generator": generator_runs,
            "domain": domain_runs,
            "evaluation": evaluation_only,
            "operating": operating_point_runs,
        }
        results = pd.concat([runs[kind](bench) for kind in args.kinds], ignore_index=True)
        results.to_json(out.with_suffix(".json"), orient="records", indent=1)
        text = variants_markdown(results) if args.variants else markdown(results)
    text += f"\n_{time.time() - started:.0f} s on this machine (cap {args.cap} per cell)._\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
