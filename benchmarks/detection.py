"""Detection quality on real data: each signal, the combined classifier and a TF-IDF baseline.

    # generalisation over ../shared/datasets: leave-one-generator-out, leave-one-domain-out
    # (the combined model and the baseline are retrained per fold), TOEFL false positives, GPTurk
    python benchmarks/detection.py [--cap 50] [--kinds generator domain evaluation] [--out FILE.md]

    # the same folds for the alternative classifier configurations in VARIANTS
    python benchmarks/detection.py --cap 25 --variants   # -> benchmarks/results/detection_variants.md

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
from auditor.corpus import load_corpus, normalise_generator, stratified_sample, strip_artefacts  # noqa: E402
from auditor.features import FeatureStore, text_key  # noqa: E402
from auditor.training import feature_detector  # noqa: E402
from detectors.bundle import load_bundle  # noqa: E402
from detectors.classifier import EMBEDDING, LMTextClassifier  # noqa: E402

ZERO_SHOT = [
    "ll_mean",
    "logrank_mean",
    "entropy_mean",
    "fast_detectgpt",
    "binoculars",
    "min_k_prob",
    "rank1_frac",
    "rank10_frac",
]
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


def _lm_classifier(drop: tuple[str, ...] = (), **params):
    """A combined-classifier configuration: ``LMTextClassifier(**params)`` on the LM
    features without the columns in ``drop``."""

    def fit(bench: Bench, train: np.ndarray):
        model = LMTextClassifier(lm=bench.detector, **params).fit_features(bench.features(train, drop), bench.y[train])
        return lambda rows: model.predict_proba_features(bench.features(rows, drop))[:, 1]

    return fit


def _tfidf(bench: Bench, train: np.ndarray):
    model = baseline().fit(bench.texts[train], bench.y[train])
    return lambda rows: model.predict_proba(bench.texts[rows])[:, 1]


def _mean_of(*fits):
    """Average of several models' probabilities (a simple stacking-free ensemble)."""

    def fit(bench: Bench, train: np.ndarray):
        predictors = [f(bench, train) for f in fits]
        return lambda rows: np.mean([p(rows) for p in predictors], axis=0)

    return fit


# The shipped configuration and the baseline the issue names; every run measures these.
MODELS = {"combined": _lm_classifier(), "tfidf_lr": _tfidf}
# Alternatives measured with --variants on the same folds (benchmarks/results/detection_variants.md).
VARIANTS = {
    "logistic (all features)": _lm_classifier(model="logistic"),
    "mlp, strong L2 (alpha 1)": _lm_classifier(alpha=1.0),
    "mlp, scalar signals only": _lm_classifier(drop=(EMBEDDING,)),
    "logistic, scalar signals only": _lm_classifier(drop=(EMBEDDING,), model="logistic", C=1.0),
    "combined + tfidf (mean)": _mean_of(_lm_classifier(), _tfidf),
}


class Bench:
    def __init__(self, sample: pd.DataFrame, signals: pd.DataFrame, detector, models: dict | None = None):
        scored = signals["skip_reason"].isna().to_numpy()
        print(f"{int((~scored).sum())} texts too short to score are left out", flush=True)
        self.sample, self.signals = sample[scored].reset_index(drop=True), signals[scored].reset_index(drop=True)
        self.detector = detector
        self.models = models or MODELS
        self.y = self.sample["label"].to_numpy()
        self.texts = self.sample["text"].to_numpy(dtype=object)
        train = (self.sample["split"] == "train").to_numpy()
        # Orient each zero-shot signal once, on training rows, so that higher = more LLM-like.
        self.orientation = {
            s: (1.0 if auroc(self.y[train], self.signals.loc[train, s].to_numpy()) >= 0.5 else -1.0) for s in ZERO_SHOT
        }

    def features(self, rows: np.ndarray, drop: tuple[str, ...] = ()) -> pd.DataFrame:
        return self.signals[rows].drop(columns=list(drop)).reset_index(drop=True)

    def fold(self, train: np.ndarray, test: np.ndarray, calibration: np.ndarray) -> dict[str, dict[str, float]]:
        """Train every model on ``train``; threshold on ``calibration`` humans; score ``test``."""
        y_test = self.y[test]
        results = {}
        for name, fit in self.models.items():
            predict = fit(self, train)
            threshold = conformal_threshold(predict(calibration & (self.y == 0)), TARGET_FPR)
            results[name] = self._metrics(y_test, predict(test), threshold)
        for signal in ZERO_SHOT:
            scores = self.orientation[signal] * self.signals.loc[test, signal].to_numpy()
            results[signal] = {"auroc": auroc(y_test, scores), "tpr1": tpr_at_fpr(y_test, scores)}
        return results

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


def generator_runs(bench: Bench) -> pd.DataFrame:
    s = bench.sample
    in_pool = ~s["split"].eq("eval").to_numpy()
    train_split, cal_split, test_split = (s["split"].eq(x).to_numpy() for x in ("train", "calibration", "test"))
    rows = []
    for generator in sorted(set(s["generator"]) - {"human"}):
        is_gen = s["generator"].eq(generator).to_numpy()
        domains = s.loc[is_gen, "domain"].unique()
        in_domains = s["domain"].isin(domains).to_numpy()
        test = in_pool & in_domains & (is_gen | (test_split & (bench.y == 0)))
        train = train_split & ~is_gen
        rows += _rows("generator", generator, bench.fold(train, test, cal_split & ~is_gen))
        print(f"  held out generator {generator}", flush=True)
    return pd.DataFrame(rows)


def domain_runs(bench: Bench) -> pd.DataFrame:
    s = bench.sample
    in_pool = ~s["split"].eq("eval").to_numpy()
    train_split, cal_split = (s["split"].eq(x).to_numpy() for x in ("train", "calibration"))
    rows = []
    for domain in sorted(s.loc[in_pool, "domain"].unique()):
        is_domain = s["domain"].eq(domain).to_numpy()
        if len(np.unique(bench.y[is_domain])) < 2:
            continue
        rows += _rows(
            "domain", domain, bench.fold(train_split & ~is_domain, in_pool & is_domain, cal_split & ~is_domain)
        )
        print(f"  held out domain {domain}", flush=True)
    return pd.DataFrame(rows)


def evaluation_only(bench: Bench) -> pd.DataFrame:
    """TOEFL (non-native) essays and GPTurk: never in training; model trained on the train split."""
    s = bench.sample
    train, cal = s["split"].eq("train").to_numpy(), s["split"].eq("calibration").to_numpy()
    rows = []
    for name, mask in (
        ("TOEFL essays (non-native humans vs GPT-4-polished)", s["domain"].eq("toefl_essay_nonnative")),
        ("US 8th-grade essays (native), test split", s["domain"].eq("us_8th_grade_essay") & s["split"].eq("test")),
        ("GPTurk labelled summaries (train.json + test.json)", s["dataset"].eq("gpturk")),
    ):
        rows += _rows("evaluation-only", name, bench.fold(train, mask.to_numpy(), cal))
    return pd.DataFrame(rows)


def _rows(kind: str, held_out: str, results: dict) -> list[dict]:
    return [{"kind": kind, "held_out": held_out, "model": model, **metrics} for model, metrics in results.items()]


def markdown(results: pd.DataFrame) -> str:
    out = []
    main = results[results["model"].isin(["combined", "tfidf_lr"])]
    for kind, part in main.groupby("kind", sort=False):
        out.append(f"\n#### {kind}\n")
        table = part.pivot_table(
            index="held_out", columns="model", values=["auroc", "tpr1", "fpr_op", "tpr_op"], sort=False
        )
        counts = part[part.model == "combined"].set_index("held_out")[["n_human", "n_machine"]]
        out.append(
            "| held out | human | LLM | AUROC combined | AUROC TF-IDF | TPR@1% combined | TPR@1% TF-IDF | FPR op. combined | TPR op. combined | FPR op. TF-IDF |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for name, r in table.iterrows():
            c = counts.loc[name]
            out.append(
                f"| {name} | {c.n_human} | {c.n_machine} | {r[('auroc', 'combined')]:.3f} | {r[('auroc', 'tfidf_lr')]:.3f} | "
                f"{r[('tpr1', 'combined')]:.3f} | {r[('tpr1', 'tfidf_lr')]:.3f} | {r[('fpr_op', 'combined')]:.3f} | "
                f"{r[('tpr_op', 'combined')]:.3f} | {r[('fpr_op', 'tfidf_lr')]:.3f} |"
            )
        if kind != "evaluation-only":
            mean = part.groupby("model")[["auroc", "tpr1", "fpr_op", "tpr_op"]].mean()
            out.append(
                f"| **mean over folds** | | | **{mean.loc['combined', 'auroc']:.3f}** | {mean.loc['tfidf_lr', 'auroc']:.3f} | "
                f"**{mean.loc['combined', 'tpr1']:.3f}** | {mean.loc['tfidf_lr', 'tpr1']:.3f} | {mean.loc['combined', 'fpr_op']:.3f} | "
                f"{mean.loc['combined', 'tpr_op']:.3f} | {mean.loc['tfidf_lr', 'fpr_op']:.3f} |"
            )
    signals = results[results["kind"].isin(["generator", "domain"])]
    if signals.empty:
        return "\n".join(out) + "\n"
    table = (
        signals.groupby(["model", "kind"])[["auroc", "tpr1"]]
        .mean()
        .unstack("kind")
        .reindex(columns=pd.MultiIndex.from_product([["auroc", "tpr1"], ["generator", "domain"]]))
    )
    out.append("\n#### each signal alone (mean AUROC / TPR@1% over held-out folds)\n")
    out.append(
        "| signal | AUROC, held-out generators | AUROC, held-out domains | TPR@1%, generators | TPR@1%, domains |"
    )
    out.append("|---|---|---|---|---|")
    for model in ["combined", "tfidf_lr", *ZERO_SHOT]:
        r = table.loc[model]
        out.append(
            f"| {model} | {r[('auroc', 'generator')]:.3f} | {r[('auroc', 'domain')]:.3f} | {r[('tpr1', 'generator')]:.3f} | {r[('tpr1', 'domain')]:.3f} |"
        )
    return "\n".join(out) + "\n"


def variants_markdown(results: pd.DataFrame) -> str:
    """One row per model: mean over held-out generator and domain folds, TOEFL and GPTurk."""
    models = [m for m in results["model"].unique() if m not in ZERO_SHOT]
    folds = results[results["kind"].isin(["generator", "domain"]) & results["model"].isin(models)]
    metrics = ["auroc", "tpr1", "fpr_op", "tpr_op"]
    means = (
        folds.groupby(["model", "kind"])[metrics]
        .mean()
        .unstack("kind")
        .reindex(columns=pd.MultiIndex.from_product([metrics, ["generator", "domain"]]))
    )
    held = results[results["kind"].eq("evaluation-only")]

    def evaluation(model: str, prefix: str, metric: str) -> float:
        row = held[held["model"].eq(model) & held["held_out"].str.startswith(prefix)]
        return float(row[metric].iloc[0]) if len(row) else float("nan")

    out = [
        "| model | AUROC gen. | TPR@1% gen. | AUROC dom. | TPR@1% dom. | FPR op. gen./dom. | TPR op. gen./dom. | TOEFL FPR op. | GPTurk AUROC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        m = means.loc[model]
        out.append(
            f"| {model} | {m[('auroc', 'generator')]:.3f} | {m[('tpr1', 'generator')]:.3f} | {m[('auroc', 'domain')]:.3f} | "
            f"{m[('tpr1', 'domain')]:.3f} | {m[('fpr_op', 'generator')]:.3f} / {m[('fpr_op', 'domain')]:.3f} | "
            f"{m[('tpr_op', 'generator')]:.3f} / {m[('tpr_op', 'domain')]:.3f} | {evaluation(model, 'TOEFL', 'fpr_op'):.3f} | "
            f"{evaluation(model, 'GPTurk', 'auroc'):.3f} |"
        )
    return "\n".join(out) + "\n"


def data_file_report(path: Path, settings: Settings) -> str:
    """The shipped model and every signal on a file; rows seen in training are left out."""
    frame = pd.read_json(path, lines=True)
    frame["text"] = frame["text"].map(strip_artefacts)
    frame["label"] = (frame["label"] == "machine").astype(int)
    frame["generator"] = frame["generator"].map(normalise_generator)
    trained = set(text_key(t) for t in stratified_sample(load_corpus()).query("split == 'train'")["text"])
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
        "--cap", type=int, default=500, help="rows per (dataset, domain, generator) cell; 500 is the training sample"
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also measure the alternative classifier configurations (VARIANTS) on the same folds",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=["generator", "domain", "evaluation"],
        default=["generator", "domain", "evaluation"],
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
        sample = stratified_sample(load_corpus(), cap=args.cap, large_cells={"hc3_plus_si": 4 * args.cap})
        print(f"{len(sample)} texts, at most {args.cap} per cell", flush=True)
        detector = feature_detector(settings)
        signals = FeatureStore(settings.cache_dir, detector).signals(sample["text"].tolist())
        bench = Bench(sample, signals, detector, {**MODELS, **VARIANTS} if args.variants else MODELS)
        runs = {"generator": generator_runs, "domain": domain_runs, "evaluation": evaluation_only}
        results = pd.concat([runs[kind](bench) for kind in args.kinds], ignore_index=True)
        results.to_json(out.with_suffix(".json"), orient="records", indent=1)
        text = variants_markdown(results) if args.variants else markdown(results)
    text += f"\n_{time.time() - started:.0f} s on this machine (cap {args.cap} per cell)._\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
