"""Every kind of cell value gets a defined outcome before any detector sees it."""

import math

import numpy as np
import pandas as pd

from detectors.text import EMPTY, MISSING, TOO_SHORT, TextLimits, clean_text, prepare_texts


def test_missing_and_empty_values_are_skipped_with_a_reason():
    values = [None, float("nan"), pd.NA, np.nan, "", "   \n\t ", "\u200b\u200b", "x", "ok", "A real sentence."]
    prepared = prepare_texts(values)
    assert prepared.skip_reasons[:4] == [MISSING] * 4
    assert prepared.skip_reasons[4:7] == [EMPTY] * 3
    assert prepared.skip_reasons[7].startswith(TOO_SHORT) and prepared.skip_reasons[8].startswith(TOO_SHORT)
    assert prepared.skip_reasons[9] is None
    assert prepared.valid_index == [9]


def test_control_and_zero_width_characters_are_removed_but_text_kept():
    text = "Hel\x00lo\u200b wor\x07ld,\u00a0\u00a0this is\ufeff fine.\nNext line."
    assert clean_text(text) == "Hello world, this is fine.\nNext line."


def test_non_text_cells_are_stringified_and_bytes_decoded():
    prepared = prepare_texts([12345, b"caf\xc3\xa9 au lait", True])
    assert prepared.valid_texts == ["12345", "café au lait", "True"]


def test_long_texts_are_cut_and_marked():
    prepared = prepare_texts(["word " * 50_000], TextLimits(max_chars=1000))
    assert len(prepared.valid_texts[0]) <= 1000 and prepared.truncated == [True]


def test_emoji_and_non_latin_scripts_are_kept():
    values = ["😀😂🙏 love it", "Это текст на русском языке.", "这是一个中文句子。"]
    prepared = prepare_texts(values)
    assert prepared.valid_texts == values
    assert not any(math.isnan(len(t)) for t in prepared.valid_texts)


def test_minimum_counts_visible_characters_anywhere_in_the_text():
    assert prepare_texts(["a\n\n\n\n\n\n\n\nb\n\n\n\n\nc"]).skip_reasons == [None]
