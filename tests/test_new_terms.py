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


def test_document_counts_summed_over_days_find_what_a_fit_on_the_window_finds():
    """negatives_daily keeps term document counts a day at a time; summed over a window's days they must
    give the terms and scores a CountVectorizer fitted on the pair's texts alone (min_df=2) gives: the
    vocabulary is pair-specific, and a term rare on every day may still be frequent in the window."""
    import numpy as np

    from rollback_assets.core.negatives_daily import daily
    from rollback_assets.core.new_terms import _log_odds, rising_from_counts, vectorizer

    rng = np.random.default_rng(7)
    words = [f"word{i}" for i in range(400)]  # a long tail: many terms occur once a day
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 8))) for _ in range(600)]
    texts = [t + " subtitles out of sync" if i < 150 else t for i, t in enumerate(texts)]
    rows = pd.DataFrame({
        "attributed_flag": "app", "release_version": ["2.0"] * 150 + ["1.0"] * 450, "cohort": "all",
        "created_at": pd.Timestamp("2026-09-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 14 * 24, 600), unit="h"),
        "sentiment_label": "negative", "topic_excluded": False, "issue_category": "other", "confidence": 0.9,
        "author_hash": None, "text": texts,
    })
    cells = daily(rows, np.zeros(len(rows), bool))
    assert cells.created_date.nunique() > 10  # the counts really are summed over many days
    terms, totals = cells[cells.kind == "term"], cells[cells.kind == "total"]
    summed = terms.pivot_table(index="value", columns="release_version", values="count", aggfunc="sum", fill_value=0)
    found = rising_from_counts(summed.index.to_numpy(), summed["2.0"].to_numpy(), summed["1.0"].to_numpy(),
                               *(int(totals[totals.release_version == v]["count"].sum()) for v in ("2.0", "1.0")))
    model = vectorizer().set_params(min_df=2).fit(rows.text)
    counts = model.transform(rows.text)
    expected = _log_odds(model.get_feature_names_out(), np.asarray(counts[:150].sum(axis=0)).ravel(),
                         np.asarray(counts[150:].sum(axis=0)).ravel(), 8)
    assert expected and found == expected
