"""Train, calibrate and document the n-gram classifier shipped in the default bundle
(detectors/artifacts/default/ngram): the default classifier joins it to the LM classifier,
and the pre-training gate scores with it alone.

    python scripts/train_fast_model.py [--out DIR]

Run it before scripts/train_default_model.py, which reads it.

The pre-training gate scores sampled documents with it when the LM classifier would cost
too much (``auditor gate --scorer fast``, the default). Data: every text of
../shared/datasets in the train split (the same pairing-group split as the default model:
train 60% / calibration 20% / test 20%); TOEFL essays and GPTurk summaries are evaluation
only. Threshold for 1% FPR on half of the calibration split's human texts; error rates,
overall and per dataset, on the other half and the split's LLM texts. Takes about a minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.training import train_fast_model  # noqa: E402
from detectors.ngram import default_fast_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=default_fast_dir(), help="default: %(default)s")
    parser.add_argument("--target-fpr", type=float, default=0.01)
    args = parser.parse_args()
    out = args.out
    calibration = train_fast_model(out, args.target_fpr, progress=print)
    print(
        f"fast model -> {out}; threshold {calibration.threshold:.4f}; held-out FPR "
        f"{calibration.heldout_fpr.estimate:.4f}, TPR {calibration.heldout_tpr.estimate:.4f}"
    )


if __name__ == "__main__":
    main()
