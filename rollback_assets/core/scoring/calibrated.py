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
import pyarrow as pa
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FeatureUnion

from ..ratings import weak_labels
from .base import label_from_score
from .lexicon import LexiconScorer

# At most this many labelled rows are fitted and validated (80 % trained, 20 % held out), whatever the
# history holds: fit time grows linearly with rows (the character n-grams dominate) while held-out
# macro-F1 grows about 0.01 per doubling past a few thousand rows (bench/learning_curve.py, real Netflix
# reviews: 0.862 at 1k training rows, 0.886 at 4k, 0.889 at 8k, 0.897 at 11.7k; the demo's texts are
# learnt whole by 500). 16k training rows give up about 0.01 F1 against three times as many, and the
# sentiment_model asset no longer grows with history.
TRAINING_ROWS = 20_000
PARAMS = {"word_ngrams": (1, 2), "char_ngrams": (2, 5), "min_df": 2, "max_features": 200_000, "C": 4.0,
          "holdout": 0.2, "seed": 7, "max_chars": 1000, "max_rows": TRAINING_ROWS}
MIN_ROWS = 500  # fewer labelled rows than this cannot be fitted and validated honestly


@dataclass
class Validation:
    n_train: int
    n_holdout: int
    calibrated_macro_f1: float
    lexicon_macro_f1: float

    @property
    def calibrated_wins(self) -> bool:
        return self.calibrated_macro_f1 > self.lexicon_macro_f1


def training_sample(rated: pd.DataFrame, max_rows: int = TRAINING_ROWS) -> pd.DataFrame:
    """The rows a model is trained on: of the rows whose rating gives a label (event_id, rating,
    optional rating_scale; other columns ride along), at most `max_rows`, each label keeping its share,
    the rows with the smallest hash of their event_id within each label, ordered by that hash.

    Chosen by the rows themselves, never by read order or clock, so the assets and replay pick the
    same rows from the same feedback (and the model version, a hash of those rows, agrees). A hash,
    not the newest rows: the sample spreads over the whole history, and a recent flood of one-star
    reviews (the very regression being judged) does not tilt the model's prior. A sample of a sample
    is itself, so a caller may choose rows before it reads their texts.
    """
    scales = rated["rating_scale"].fillna("stars") if "rating_scale" in rated else pd.Series("stars", index=rated.index)
    labels = weak_labels(rated["rating"], scales).to_numpy()
    labelled = np.flatnonzero(~np.isnan(labels))
    ids = rated["event_id"].astype(str).to_numpy()[labelled]
    rank, labels = _id_hashes(ids), labels[labelled]
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts
    if len(labelled) > max_rows:
        quota = counts * max_rows // len(labelled)
        quota[np.argsort(-counts, kind="stable")[: max_rows - quota.sum()]] += 1  # the rounding remainder, largest first
    picked = []
    for label, n in zip(classes, quota):
        in_class = np.flatnonzero(labels == label)
        if 0 < n < len(in_class):  # only rows up to the n-th smallest hash (ties included) can be picked:
            cut = np.partition(rank[in_class], n - 1)[n - 1]  # the string sort then runs on ~n ids, not all
            in_class = in_class[rank[in_class] <= cut]
        picked.append(in_class[np.lexsort((ids[in_class], rank[in_class]))[:n]])
    picked = np.concatenate(picked) if picked else np.array([], dtype=int)
    return rated.iloc[labelled[picked[np.lexsort((ids[picked], rank[picked]))]]]


def _id_hashes(event_ids: np.ndarray) -> np.ndarray:
    """FNV-1a (64 bits, top bit dropped) of each id's UTF-8 bytes, a byte position at a time over all
    ids: the same in every process, platform and library version, and cheap for a history's rows."""
    data = pa.array(event_ids, type=pa.large_string())
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int64)[data.offset: data.offset + len(data) + 1]
    raw = np.frombuffer(data.buffers()[2], dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)
    start, length = offsets[:-1], np.diff(offsets)
    hashes = np.full(len(data), 0xCBF29CE484222325, dtype=np.uint64)
    for position in range(int(length.max(initial=0))):
        more = length > position
        hashes[more] = (hashes[more] ^ raw[start[more] + position]) * np.uint64(0x100000001B3)
    return (hashes >> np.uint64(1)).astype(np.int64)


def fit(texts: pd.Series, labels: pd.Series) -> tuple[FeatureUnion, LogisticRegression]:
    """The vectoriser and the classifier fitted on these texts and labels (1 negative, 0 positive)."""
    vectorizer = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=PARAMS["word_ngrams"], min_df=PARAMS["min_df"],
                                  max_features=PARAMS["max_features"], sublinear_tf=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=PARAMS["char_ngrams"], min_df=PARAMS["min_df"],
                                  max_features=PARAMS["max_features"], sublinear_tf=True)),
    ])
    model = LogisticRegression(C=PARAMS["C"], max_iter=1000)
    model.fit(vectorizer.fit_transform(texts), labels)
    return vectorizer, model


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
        vectorizer, model = fit(train_x, train_y)
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
    """The one way a text model is trained from feedback rows (event_id, text, rating, rating_scale)."""
    rows = training_sample(rated)
    scales = rows["rating_scale"].fillna("stars") if "rating_scale" in rows else "stars"
    return CalibratedScorer.train(rows.text, rows.rating, scales)
