"""The customer's own verdict: rating scales, what counts as a valid rating, and the label it gives.

Where a source carries a rating (store stars, NPS 0-10, CSAT 1-5, thumbs) it is the strongest
sentiment label there is: the customer said it, no model guessed it. On real Play Store text the
lexicon labels only ~42 % of 1-star reviews negative, so a +30 % rise in unhappy customers shows up
as a ~+15 % rise in "negative" labels; the rating shows the whole rise.

Confidence of a rating label: the extremes of a scale are the customer's clearest words (1 and 5 stars,
NPS 0-3 and 9-10), the inner points a little less so (2 and 4 stars read as mild), the middle is
neutral and says little either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SENTIMENT_SOURCES = ("rating", "text", "both")
"""Per source (mapping key `sentiment_from`): where a rated row's label comes from.
rating: the rating decides label, score and confidence; the text still gives topic and evidence.
text:   the text scorer decides; the rating is kept (and trains the calibrated text model).
both:   the rating decides the label; where the text scorer reads the opposite polarity the row's
        confidence is halved (a 5-star "crashes every time" counts less), and the score is the mean.
Unrated rows (tickets, chats, verbatims) always take the text scorer's label."""


@dataclass(frozen=True)
class Scale:
    name: str
    low: int
    high: int
    negative_max: int  # ratings <= this are negative
    positive_min: int  # ratings >= this are positive
    clear_negative_max: int  # ratings <= this are the clearest negatives (full confidence)
    clear_positive_min: int

    def score(self, rating: np.ndarray) -> np.ndarray:
        """-1 at the bottom of the scale, +1 at the top."""
        return 2.0 * (rating - self.low) / (self.high - self.low) - 1.0


SCALES = {
    "stars": Scale("stars", 1, 5, negative_max=2, positive_min=4, clear_negative_max=1, clear_positive_min=5),
    "csat": Scale("csat", 1, 5, negative_max=2, positive_min=4, clear_negative_max=1, clear_positive_min=5),
    # NPS: detractors 0-6, passives 7-8, promoters 9-10.
    "nps": Scale("nps", 0, 10, negative_max=6, positive_min=9, clear_negative_max=3, clear_positive_min=10),
    "thumbs": Scale("thumbs", 0, 1, negative_max=0, positive_min=1, clear_negative_max=0, clear_positive_min=1),
}
THUMBS_WORDS = {"up": 1, "down": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1": 1, "0": 0, "👍": 1, "👎": 0}

RATING_LABEL_VERSION = "rating-v1"  # bump when the mapping from ratings to labels changes
CLEAR_CONFIDENCE = 0.95
MILD_CONFIDENCE = 0.85
NEUTRAL_CONFIDENCE = 0.6


def scale(name: str) -> Scale:
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"unknown rating scale {name!r}; known: {', '.join(SCALES)}") from None


def parse_ratings(values: pd.Series, scale_name: str) -> tuple[pd.Series, pd.Series]:
    """(ratings as Int64, mask of present-but-invalid values) for one scale; blanks are unrated."""
    the_scale = scale(scale_name)
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    present = text != ""
    if scale_name == "thumbs":
        number = text.str.lower().map(THUMBS_WORDS)
        number = pd.to_numeric(number, errors="coerce")
    else:
        number = pd.to_numeric(text.where(present), errors="coerce")
    invalid = present & (number.isna() | (number % 1 != 0) | (number < the_scale.low) | (number > the_scale.high))
    return number.where(present & ~invalid).astype("Int64"), invalid


def rating_labels(ratings: pd.Series, scales: pd.Series) -> pd.DataFrame:
    """sentiment_score, sentiment_label, confidence from ratings on their scales (NaN where unrated)."""
    values = ratings.to_numpy(dtype=float, na_value=np.nan)
    names = scales.to_numpy(dtype=object)
    score, confidence = np.full(len(values), np.nan), np.full(len(values), np.nan)
    label = np.full(len(values), np.nan, dtype=object)
    for name in scales.dropna().unique():
        the_scale = scale(name)
        rows = ~np.isnan(values) & (names == name)
        r = values[rows]
        label[rows] = np.where(r <= the_scale.negative_max, "negative", np.where(r >= the_scale.positive_min, "positive", "neutral"))
        clear = (r <= the_scale.clear_negative_max) | (r >= the_scale.clear_positive_min)
        confidence[rows] = np.where(label[rows] == "neutral", NEUTRAL_CONFIDENCE, np.where(clear, CLEAR_CONFIDENCE, MILD_CONFIDENCE))
        score[rows] = the_scale.score(r)
    return pd.DataFrame({"sentiment_score": score, "sentiment_label": label, "confidence": confidence}, index=ratings.index)


def weak_labels(ratings: pd.Series, scales: pd.Series) -> pd.Series:
    """Training labels for a text model: 1 negative, 0 positive, NaN for neutral or unrated rows."""
    labels = rating_labels(ratings, scales).sentiment_label
    return labels.map({"negative": 1.0, "positive": 0.0})
