"""The scorer protocol and the one function that applies any scorer to a feedback frame."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

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
    """Score `frame.text` and add every SCORE_COLUMNS field; the input rows are kept as they are."""
    scores = scorer.score(frame["text"].tolist())
    if len(scores) != len(frame):
        raise ValueError(f"scorer {scorer.name} returned {len(scores)} rows for {len(frame)} texts")
    scores = scores.set_axis(frame.index)
    if "issue_category" in scores and scores["issue_category"].notna().all():
        topics = taxonomy.annotate(scores["issue_category"])
    else:
        topics = taxonomy.classify(frame["text"])
    out = frame.copy()
    out["sentiment_score"] = scores["sentiment_score"].astype("float32")
    out["sentiment_label"] = scores["sentiment_label"]
    out["confidence"] = scores["confidence"].astype("float32")
    for column in topics.columns:
        out[column] = topics[column]
    for column in ("urgency", "intent"):
        out[column] = scores[column] if column in scores else None
    out["scorer"] = scores["scorer"] if "scorer" in scores else scorer.name
    out["scorer_version"] = scores["scorer_version"] if "scorer_version" in scores else scorer.version
    return out
