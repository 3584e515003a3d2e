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


def test_one_index_over_the_window_finds_what_a_fit_per_pair_finds():
    """TermIndex tokenises the window once; each release x cohort pair must get the terms and scores a
    CountVectorizer fitted on that pair alone (min_df=2) gives: the vocabulary is pair-specific."""
    import numpy as np

    from rollback_assets.core.new_terms import TermIndex, _log_odds, vectorizer

    rng = np.random.default_rng(7)
    # a long tail of rare words (many terms occur once in a pair: in the window's vocabulary, not the pair's)
    words = [f"word{i}" for i in range(400)]
    texts = pd.Series([" ".join(rng.choice(words, size=rng.integers(3, 8))) for _ in range(600)])
    texts.iloc[:150] = texts.iloc[:150] + " subtitles out of sync"  # a complaint the current groups carry
    index = TermIndex(texts)
    for trial in range(5):
        current = texts.iloc[rng.permutation(150)[:40 + 20 * trial]]
        baseline = texts.iloc[150 + rng.permutation(450)[:60 + 40 * trial]]
        pair = pd.concat([current, baseline], ignore_index=True)
        model = vectorizer().set_params(min_df=2).fit(pair)
        counts = model.transform(pair)
        expected = _log_odds(model.get_feature_names_out(), np.asarray(counts[: len(current)].sum(axis=0)).ravel(),
                             np.asarray(counts[len(current):].sum(axis=0)).ravel(), 8)
        assert expected and index.rising(current, baseline) == expected
