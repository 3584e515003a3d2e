"""What is new in the complaints: terms whose share of negative feedback rose most against a baseline.

Log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"):
the prior is the term's frequency over both groups' negatives, so a term seen twice is not a
headline, and the z-score accounts for how often the term occurs at all. Pure and vectorised: one
sparse count matrix, group sums by matrix products.
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
    """Binary counts of words and word pairs; every term kept here, so that `TermIndex.rising` can apply
    "occurs in at least two of the compared documents" per pair of groups."""
    return CountVectorizer(token_pattern=_TOKEN, lowercase=True, stop_words=sorted(_STOP), ngram_range=(1, 2),
                           binary=True, dtype=np.float64)


class TermIndex:
    """Texts tokenised once: the new terms of any current/baseline pair among them are row selections of
    one document-term matrix, the same terms and scores a fit on that pair's texts alone would give
    (vocabulary = terms in at least two of the pair's documents). A decision step compares many
    releases × cohorts within one window; refitting per pair was most of its cost."""

    def __init__(self, texts: pd.Series):
        texts = texts.dropna()
        self._position = pd.Series(np.arange(len(texts)), index=texts.index)
        self._matrix, self._terms = None, np.array([], dtype=object)
        if len(texts):
            model = vectorizer()
            try:
                self._matrix = model.fit_transform(texts.str.slice(0, 2000)).tocsr()
                self._terms = model.get_feature_names_out()
            except ValueError:  # no words at all (empty or stop words only)
                self._matrix = None

    def rising(self, current: pd.Series, baseline: pd.Series, top: int = 8) -> list[list]:
        """[[term, z], ...] for the terms most over-represented in `current` vs `baseline` (Series of texts
        indexed as the texts given to the index; one document each, counted once per document)."""
        current, baseline = current.dropna(), baseline.dropna()
        if len(current) < MIN_NEGATIVES or len(baseline) == 0 or self._matrix is None:
            return []
        cur = self._matrix[self._position.loc[current.index].to_numpy()]
        base = self._matrix[self._position.loc[baseline.index].to_numpy()]
        keep = np.flatnonzero(cur.getnnz(axis=0) + base.getnnz(axis=0) >= 2)
        if keep.size == 0:
            return []
        y_cur = np.asarray(cur[:, keep].sum(axis=0)).ravel()
        y_base = np.asarray(base[:, keep].sum(axis=0)).ravel()
        return _log_odds(self._terms[keep], y_cur, y_base, top)


def rising_terms(current: pd.Series, baseline: pd.Series, top: int = 8) -> list[list]:
    """[[term, z], ...] for the terms most over-represented in `current` negatives vs `baseline`
    negatives: one pair (a decision step indexes the window once, `TermIndex`)."""
    texts = pd.concat([current.dropna(), baseline.dropna()], ignore_index=True)
    n = len(current.dropna())
    return TermIndex(texts).rising(texts.iloc[:n], texts.iloc[n:], top)


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
