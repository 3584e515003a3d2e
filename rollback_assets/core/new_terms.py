"""What is new in the complaints: terms whose share of negative feedback rose most against a baseline.

Log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"):
the prior is the term's frequency over both groups' negatives, so a term seen twice is not a
headline, and the z-score accounts for how often the term occurs at all. Pure, from document counts
per term, which add up over days: `negatives_daily` keeps them a day at a time.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

PRIOR_STRENGTH = 500.0  # pseudo-counts the background spreads over the vocabulary
MIN_COUNT = 3  # a term must occur this often in the current group's negatives to be reported
MIN_NEGATIVES = 20  # fewer current negatives than this: nothing to say yet
_TOKEN = r"(?u)\b[^\W\d_][\w']+\b"  # words of 2+ characters, no bare numbers
_STOP = frozenset(ENGLISH_STOP_WORDS | {"app", "it's", "i'm", "don't", "can't", "just", "really", "im", "dont", "cant",
                                        "like", "good", "bad", "great", "love", "hate", "terrible", "awful", "worst",
                                        "best", "ok", "okay", "fine", "nice"})


def vectorizer() -> CountVectorizer:
    """Binary counts of words and word pairs; every term kept here, so that `rising_from_counts` can apply
    "occurs in at least two of the compared documents" per pair of groups."""
    return CountVectorizer(token_pattern=_TOKEN, lowercase=True, stop_words=sorted(_STOP), ngram_range=(1, 2),
                           binary=True, dtype=np.float64)


def rising_from_counts(terms: np.ndarray, current: np.ndarray, baseline: np.ndarray, n_current: int, n_baseline: int,
                       top: int = 8) -> list[list]:
    """[[term, z], ...] for the terms most over-represented in the current group's negatives vs the
    baseline's, from document counts (how many negatives contain each of `terms`, sorted; `n_*`: how many
    negatives). Counts add up over days (negatives_daily), so a window's terms are its days' sums.
    Vocabulary: terms in at least two of the pair's documents, as a fit on the pair's texts alone keeps."""
    if n_current < MIN_NEGATIVES or n_baseline == 0:
        return []
    keep = np.flatnonzero(current + baseline >= 2)
    if keep.size == 0:
        return []
    return _log_odds(np.asarray(terms, dtype=object)[keep], current[keep].astype(float), baseline[keep].astype(float), top)


def rising_terms(current: pd.Series, baseline: pd.Series, top: int = 8) -> list[list]:
    """[[term, z], ...] for one pair of groups of negative texts (decisions sum negatives_daily instead)."""
    current, baseline = current.dropna(), baseline.dropna()
    if current.empty or baseline.empty:
        return []
    model = vectorizer()
    try:
        docs = model.fit_transform(pd.concat([current, baseline]).str.slice(0, 2000)).tocsr()
    except ValueError:  # no words at all (empty or stop words only)
        return []
    counts = [np.asarray(part.sum(axis=0)).ravel() for part in (docs[:len(current)], docs[len(current):])]
    return rising_from_counts(model.get_feature_names_out(), *counts, len(current), len(baseline), top)


def _log_odds(terms: np.ndarray, y_cur: np.ndarray, y_base: np.ndarray, top: int) -> list[list]:
    background = y_cur + y_base
    alpha = PRIOR_STRENGTH * background / background.sum()
    a0 = alpha.sum()
    n_cur, n_base = y_cur.sum(), y_base.sum()
    delta = (np.log((y_cur + alpha) / (n_cur + a0 - y_cur - alpha))
             - np.log((y_base + alpha) / (n_base + a0 - y_base - alpha)))
    z = delta / np.sqrt(1.0 / (y_cur + alpha) + 1.0 / (y_base + alpha))
    keep = (y_cur >= MIN_COUNT) & (z > 1.96)
    order = np.argsort(-z[keep])
    picked = _drop_contained(list(zip(terms[keep][order], z[keep][order])), top)
    return [[str(term), round(float(score), 2)] for term, score in picked]


def _drop_contained(ranked: list[tuple[str, float]], top: int) -> list[tuple[str, float]]:
    """'new update' and 'update' say the same thing: keep the higher-ranked, drop words it contains."""
    out: list[tuple[str, float]] = []
    for term, score in ranked:
        words = set(term.split())
        if any(words <= set(kept.split()) or set(kept.split()) <= words for kept, _ in out):
            continue
        out.append((term, score))
        if len(out) == top:
            break
    return out


def uncovered(terms: list[list], phrases: list[str]) -> list[str]:
    """Terms no taxonomy phrase matches: candidates for new topics or phrases."""
    covered = [re.compile(rf"\b{re.escape(p.lower())}\b") for p in phrases]
    return [term for term, _ in terms if not any(p.search(term) for p in covered)]
