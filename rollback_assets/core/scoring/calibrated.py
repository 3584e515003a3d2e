"""A scorer trained on the customer's own rated feedback: stars are weak labels.

It replaces the lexicon only where it proves better on held-out rows, and its version names its
training data and parameters, so two decisions made with different models never share a version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from .base import label_from_score
from .lexicon import LexiconScorer

PARAMS = {"ngram_range": (1, 2), "min_df": 2, "max_features": 200_000, "C": 4.0, "holdout": 0.2, "seed": 7}


def weak_labels(ratings: pd.Series) -> pd.Series:
    """1-2 stars negative (1), 4-5 positive (0), 3 stars and unrated left out (NaN)."""
    return ratings.map(lambda r: 1.0 if r in (1, 2) else 0.0 if r in (4, 5) else np.nan)


@dataclass
class Validation:
    n_train: int
    n_holdout: int
    calibrated_macro_f1: float
    lexicon_macro_f1: float

    @property
    def calibrated_wins(self) -> bool:
        return self.calibrated_macro_f1 > self.lexicon_macro_f1


class CalibratedScorer:
    name = "calibrated-tfidf-lr"

    def __init__(self, vectorizer: TfidfVectorizer, model: LogisticRegression, version: str, validation: Validation):
        self._vectorizer = vectorizer
        self._model = model
        self.version = version
        self.validation = validation

    @classmethod
    def train(cls, texts: pd.Series, ratings: pd.Series, data_version: str, min_rows: int = 500) -> "CalibratedScorer | None":
        """Fit on rated rows; None when there are too few to fit and validate honestly."""
        labels = weak_labels(ratings)
        rated = labels.notna()
        texts, labels = texts[rated].fillna(""), labels[rated].astype(int)
        if len(labels) < min_rows or labels.nunique() < 2:
            return None
        train_x, hold_x, train_y, hold_y = train_test_split(
            texts, labels, test_size=PARAMS["holdout"], random_state=PARAMS["seed"], stratify=labels
        )
        vectorizer = TfidfVectorizer(ngram_range=PARAMS["ngram_range"], min_df=PARAMS["min_df"],
                                     max_features=PARAMS["max_features"], sublinear_tf=True)
        model = LogisticRegression(C=PARAMS["C"], max_iter=1000)
        model.fit(vectorizer.fit_transform(train_x), train_y)
        predicted = model.predict(vectorizer.transform(hold_x))
        lexicon_negative = LexiconScorer().compound(hold_x.tolist()) < 0
        validation = Validation(
            n_train=len(train_y),
            n_holdout=len(hold_y),
            calibrated_macro_f1=float(f1_score(hold_y, predicted, average="macro")),
            lexicon_macro_f1=float(f1_score(hold_y, lexicon_negative.astype(int), average="macro")),
        )
        fingerprint = json.dumps({"data": data_version, "params": PARAMS, "n": len(labels)}, sort_keys=True, default=str)
        version = "tfidf-lr-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
        return cls(vectorizer, model, version, validation)

    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        p_negative = self._model.predict_proba(self._vectorizer.transform(texts))[:, 1]
        sentiment = 1.0 - 2.0 * p_negative
        return pd.DataFrame(
            {
                "sentiment_score": sentiment,
                "sentiment_label": label_from_score(sentiment, neutral_band=0.2),
                "confidence": np.maximum(p_negative, 1.0 - p_negative),
            }
        )
