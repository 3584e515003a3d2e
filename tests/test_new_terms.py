"""What is new in the complaints: log-odds with an informative prior."""

import pandas as pd

from rollback_assets.core.new_terms import rising_terms, uncovered


def test_a_planted_complaint_rises_and_common_words_do_not():
    base = pd.Series(["the app is slow at night"] * 40 + ["login fails sometimes"] * 40)
    current = pd.Series(["the app is slow at night"] * 20 + ["subtitles out of sync since the update"] * 30
                        + ["login fails sometimes"] * 10)
    terms = rising_terms(current, base)
    words = [t for t, _ in terms]
    assert words and any("subtitles" in w or "sync" in w for w in words[:2])
    assert not any(w in ("slow", "night", "login") for w in words)
    assert all(z > 1.96 for _, z in terms)
    # a term and the bigram that contains it are one finding
    assert not ({"subtitles", "subtitles sync"} <= set(words))


def test_too_few_negatives_say_nothing():
    assert rising_terms(pd.Series(["bad"] * 5), pd.Series(["ok"] * 50)) == []


def test_uncovered_terms_are_taxonomy_suggestions():
    assert uncovered([["subtitles sync", 5.0], ["checkout button", 4.0]], ["checkout"]) == ["subtitles sync"]
