"""Offline default: VADER's lexicon, no network and no training data needed."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from .base import label_from_score


class LexiconScorer:
    name = "lexicon-vader"
    version = "vader-3.3.2+conf1"

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def compound(self, texts: Sequence[str]) -> np.ndarray:
        polarity = self._analyzer.polarity_scores
        # VADER is per-sentence heuristic; long texts cost linearly, so cap what it reads.
        return np.fromiter((polarity(t[:2000])["compound"] if t else 0.0 for t in texts), dtype=np.float64, count=len(texts))

    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        compound = self.compound(texts)
        # Confidence grows with the strength of the compound score: a mild sentence is a weak label.
        confidence = np.clip(0.5 + 0.5 * np.sqrt(np.abs(compound)), 0.0, 1.0)
        return pd.DataFrame(
            {"sentiment_score": compound, "sentiment_label": label_from_score(compound), "confidence": confidence}
        )
