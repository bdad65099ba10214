"""Perplexity signals from the real SmolLM2 (loaded once per session)."""

import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from detectors.perplexity import SIGNALS

pytestmark = pytest.mark.lm


@pytest.fixture(scope="module")
def held_out(mini_corpus):
    """Crowd-written social-media posts and Llama-2-70B-chat posts written for the same task
    labels, from the test split (zero-shot likelihood: AUROC 0.79-0.85 over samples of 50 + 50)."""
    rows = mini_corpus[
        (mini_corpus.dataset == "worker_vs_gpt")
        & (mini_corpus.split == "test")
        & mini_corpus.generator.isin(["human", "llama-2"])
    ]
    return rows.groupby("label").sample(n=50, random_state=0)


def test_signals_are_finite_and_in_range(perplexity, held_out):
    frame = perplexity.detect(held_out.text.tolist()[:20])
    assert frame[list(SIGNALS)].notna().all().all()
    assert (frame.n_tokens >= 1).all() and (frame.n_tokens <= perplexity.max_tokens).all()
    assert frame.rank1_frac.between(0, 1).all() and (frame.rank10_frac >= frame.rank1_frac).all()
    assert (frame.entropy_mean > 0).all() and (frame.ll_mean < 0).all()
    assert (frame.min_k_prob <= frame.ll_mean).all()
    assert frame.score.between(0, 1).all()


def test_batching_does_not_change_a_texts_signals(perplexity, held_out):
    texts = held_out.text.tolist()[:12]
    together = perplexity.detect(texts)
    alone = perplexity.detect([texts[5]])
    moved = [
        signal
        for signal in ("ll_mean", "entropy_mean", "fast_detectgpt", "logrank_mean")
        if alone[signal].iat[0] != pytest.approx(together[signal].iat[5], rel=0.02, abs=0.02)
    ]
    assert not moved


def test_signals_match_a_direct_full_vocabulary_computation(perplexity):
    text = "The committee will meet on Tuesday to review the budget and approve the new hiring plan."
    got = perplexity.detect([text]).iloc[0]
    tokenizer, lm = perplexity._tokenizer, perplexity._lm
    ids = [perplexity._prefix_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = lm(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    log_probs = torch.log_softmax(logits, -1)
    targets = torch.tensor(ids[1:])
    ll = log_probs.gather(-1, targets[:, None]).squeeze(-1)
    probs = log_probs.exp()
    mean = (probs * log_probs).sum(-1)
    var = (probs * log_probs**2).sum(-1) - mean**2
    rank = (log_probs > log_probs.gather(-1, targets[:, None])).sum(-1).float()
    assert got.n_tokens == len(ids) - 1
    assert got.ll_mean == pytest.approx(ll.mean().item(), abs=0.05)
    assert got.entropy_mean == pytest.approx(-mean.mean().item(), abs=0.05)
    assert got.fast_detectgpt == pytest.approx(((ll.sum() - mean.sum()) / var.sum().sqrt()).item(), abs=0.1)
    assert got.logrank_mean == pytest.approx(torch.log1p(rank).mean().item(), abs=0.1)
    assert got.binoculars == pytest.approx(-ll.mean().item() / -mean.mean().item(), rel=0.03)


def test_sentence_spans_cover_the_text_in_order(perplexity):
    text = "I went to the market. It was closed! So I came home? Then I cooked dinner."
    spans = perplexity.detect([text])["spans"].iat[0]
    assert len(spans) == 4
    assert spans[0]["start"] == 0 and spans[-1]["end"] == len(text)
    assert all(a["end"] <= b["start"] for a, b in zip(spans, spans[1:], strict=False))
    assert sum(s["n_tokens"] for s in spans) == perplexity.detect([text]).n_tokens.iat[0]
    assert all(math.isfinite(s["fast_detectgpt"]) for s in spans)


def test_awkward_inputs_get_a_score_or_a_reason(perplexity):
    values = [
        None,
        float("nan"),
        "",
        "   ",
        "x",
        "😀🙏🔥 fire emoji only",
        "x" * 100_000,
        "Dette er en dansk sætning om vejret i dag.",
        "bad\x00control\x07chars here",
        "中文句子，测试一下。",
    ]
    frame = perplexity.detect(values)
    assert len(frame) == len(values)
    assert frame.skip_reason.iloc[:5].notna().all()
    scored = frame.iloc[5:]
    assert scored.skip_reason.isna().all() and scored.score.between(0, 1).all()
    long = frame.iloc[6]
    assert bool(long.token_truncated) and bool(long.truncated_chars) and long.n_tokens == perplexity.max_tokens


def test_zero_shot_likelihood_separates_llm_from_human_texts(perplexity, held_out):
    frame = perplexity.detect(held_out.text.tolist())
    assert roc_auc_score(held_out.label, frame.ll_mean) > 0.75
