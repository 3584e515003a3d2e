"""A text scorer trained on the customer's own rated feedback: ratings are weak labels.

Its job is the rows that carry no rating (tickets, chats, verbatims, unrated reviews). Word and
character n-grams together: store reviews are short, misspelt and mixed-language, and character
n-grams still match "crashs", "cant login" or "aplicación". It replaces the lexicon only where it
proves better on held-out rated rows, and its version is a hash of its training data and parameters,
so the same rows train the same model under the assets and under replay, and two decisions made with
different models never share a version.
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
from sklearn.pipeline import FeatureUnion

from ..ratings import weak_labels
from .base import label_from_score
from .lexicon import LexiconScorer

PARAMS = {"word_ngrams": (1, 2), "char_ngrams": (2, 5), "min_df": 2, "max_features": 200_000, "C": 4.0,
          "holdout": 0.2, "seed": 7, "max_chars": 1000}
MIN_ROWS = 500  # fewer labelled rows than this cannot be fitted and validated honestly
TRAINING_ROWS = 60_000  # the newest rated rows; more adds fit time but little accuracy


@dataclass
class Validation:
    n_train: int
    n_holdout: int
    calibrated_macro_f1: float
    lexicon_macro_f1: float

    @property
    def calibrated_wins(self) -> bool:
        return self.calibrated_macro_f1 > self.lexicon_macro_f1


def training_rows(rated: pd.DataFrame) -> pd.DataFrame:
    """The rows a model is trained on: the newest TRAINING_ROWS rated rows, in a stable order, so
    the assets and replay train on exactly the same rows from the same feedback."""
    rated = rated[rated.rating.notna()]
    order = rated.sort_values(["created_at", "event_id"] if "event_id" in rated else ["created_at"], kind="stable")
    return order.tail(TRAINING_ROWS)


class CalibratedScorer:
    name = "calibrated-tfidf-lr"

    def __init__(self, vectorizer: FeatureUnion, model: LogisticRegression, version: str, validation: Validation):
        self._vectorizer = vectorizer
        self._model = model
        self.version = version
        self.validation = validation

    @classmethod
    def train(cls, texts: pd.Series, ratings: pd.Series, scales: pd.Series | str = "stars",
              min_rows: int = MIN_ROWS) -> "CalibratedScorer | None":
        """Fit on rated rows (neutral ratings left out); None when there are too few to fit and validate."""
        scales = pd.Series(scales, index=ratings.index) if isinstance(scales, str) else scales
        labels = weak_labels(ratings, scales)
        rated = labels.notna()
        texts, labels = texts[rated].fillna("").str.slice(0, PARAMS["max_chars"]), labels[rated].astype(int)
        if len(labels) < min_rows or labels.nunique() < 2:
            return None
        train_x, hold_x, train_y, hold_y = train_test_split(
            texts, labels, test_size=PARAMS["holdout"], random_state=PARAMS["seed"], stratify=labels
        )
        vectorizer = FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=PARAMS["word_ngrams"], min_df=PARAMS["min_df"],
                                      max_features=PARAMS["max_features"], sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=PARAMS["char_ngrams"], min_df=PARAMS["min_df"],
                                      max_features=PARAMS["max_features"], sublinear_tf=True)),
        ])
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
        digest = hashlib.sha256()
        for text, label in zip(texts, labels):
            digest.update(f"{label}\x1f{text}\x1e".encode("utf-8", "surrogatepass"))
        fingerprint = json.dumps({"data": digest.hexdigest(), "params": PARAMS}, sort_keys=True, default=str)
        version = "tfidf-lr-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
        return cls(vectorizer, model, version, validation)

    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        clipped = [(t or "")[: PARAMS["max_chars"]] for t in texts]
        p_negative = self._model.predict_proba(self._vectorizer.transform(clipped))[:, 1]
        sentiment = 1.0 - 2.0 * p_negative
        return pd.DataFrame(
            {
                "sentiment_score": sentiment,
                "sentiment_label": label_from_score(sentiment, neutral_band=0.2),
                "confidence": np.maximum(p_negative, 1.0 - p_negative),
            }
        )


def train_on(rated: pd.DataFrame) -> CalibratedScorer | None:
    """The one way a text model is trained from feedback rows (text, rating, rating_scale, created_at)."""
    rows = training_rows(rated)
    scales = rows["rating_scale"].fillna("stars") if "rating_scale" in rows else "stars"
    return CalibratedScorer.train(rows.text, rows.rating, scales)
