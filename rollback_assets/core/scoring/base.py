"""The scorer protocol and the one function that applies any scorer to a feedback frame."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from ..ratings import RATING_LABEL_VERSION, rating_labels
from ..taxonomy import Taxonomy

LABELS = ("negative", "neutral", "positive")
# Columns a scorer must return, one row per input text, in input order.
SCORER_OUTPUT = ("sentiment_score", "sentiment_label", "confidence")
# Columns a scorer may return; when it names the topic itself the taxonomy only annotates it.
SCORER_OPTIONAL = ("issue_category", "urgency", "intent", "scorer", "scorer_version")


@runtime_checkable
class Scorer(Protocol):
    name: str
    version: str

    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        """sentiment_score (-1..1), sentiment_label, confidence (0..1) per text, in order."""
        ...


def label_from_score(score: np.ndarray, neutral_band: float = 0.05) -> np.ndarray:
    return np.where(score <= -neutral_band, "negative", np.where(score >= neutral_band, "positive", "neutral"))


def score_frame(scorer: Scorer, taxonomy: Taxonomy, frame: pd.DataFrame) -> pd.DataFrame:
    """Label every row and add every SCORE_COLUMNS field; the input rows are kept as they are.

    A rated row whose source says `sentiment_from: rating` takes its label from the rating and is not
    sent to the text scorer at all (no tokens spent on a verdict the customer already gave); `both`
    asks the text scorer too and lowers confidence where it disagrees; unrated rows and `text`
    sources take the text scorer's label. Topic, surface and evidence always come from the text.
    """
    rated = rating_labels(_column(frame, "rating"), _column(frame, "rating_scale"))
    has_rating = rated.sentiment_label.notna()
    source = _column(frame, "sentiment_from").fillna("rating")
    use_rating = has_rating & source.isin(["rating", "both"])
    needs_text = ~use_rating | (source == "both")
    text_rows = frame.index[needs_text.to_numpy()]
    scores = scorer.score(frame.loc[text_rows, "text"].tolist()) if len(text_rows) else pd.DataFrame(
        columns=list(SCORER_OUTPUT))
    if len(scores) != len(text_rows):
        raise ValueError(f"scorer {scorer.name} returned {len(scores)} rows for {len(text_rows)} texts")
    scores = scores.set_axis(text_rows)
    if "issue_category" in scores and len(text_rows) == len(frame) and scores["issue_category"].notna().all():
        topics = taxonomy.annotate(scores["issue_category"])
    else:
        topics = taxonomy.classify(frame["text"])
    out = frame.copy()
    text = scores.reindex(frame.index)
    label = text["sentiment_label"].astype(object).where(~use_rating, rated.sentiment_label)
    score = text["sentiment_score"].astype(float).where(~use_rating, rated.sentiment_score.astype(float))
    confidence = text["confidence"].astype(float).where(~use_rating, rated.confidence.astype(float))
    both = use_rating & (source == "both")
    if both.any():
        text_score = text.loc[both, "sentiment_score"].astype(float)
        disagree = np.sign(text_score) * np.sign(rated.loc[both, "sentiment_score"].astype(float)) < 0
        confidence[both] = confidence[both].where(~disagree, confidence[both] * 0.5)
        score[both] = (score[both] + text_score) / 2
    out["sentiment_score"] = score.astype("float32")
    out["sentiment_label"] = label
    out["confidence"] = confidence.astype("float32")
    out["label_source"] = np.where(both, "rating+text", np.where(use_rating, "rating", "text"))
    for column in topics.columns:
        out[column] = topics[column]
    for column in ("urgency", "intent"):
        out[column] = text[column] if column in text else None
    rating_only = use_rating & ~both
    for column, default, by_rating in (("scorer", scorer.name, "rating"), ("scorer_version", scorer.version, RATING_LABEL_VERSION)):
        from_scorer = text[column].fillna(default) if column in text else pd.Series(default, index=frame.index)
        out[column] = from_scorer.where(~rating_only, by_rating)
    return out


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)
