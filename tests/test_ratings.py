"""The customer's own verdict: rating scales, validation at ingest, and labels in score_frame."""

import numpy as np
import pandas as pd
import pytest

from rollback_assets.core.ingest import read_file
from rollback_assets.core.mapping import Mapping
from rollback_assets.core.ratings import parse_ratings, rating_labels, weak_labels
from rollback_assets.core.scoring.base import score_frame
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.taxonomy import Taxonomy


@pytest.mark.parametrize("scale, values, expected", [
    ("stars", [1, 2, 3, 4, 5], ["negative", "negative", "neutral", "positive", "positive"]),
    ("csat", [1, 3, 5], ["negative", "neutral", "positive"]),
    ("nps", [0, 6, 7, 8, 9, 10], ["negative", "negative", "neutral", "neutral", "positive", "positive"]),
    ("thumbs", [0, 1], ["negative", "positive"]),
])
def test_each_scale_labels_its_ratings(scale, values, expected):
    out = rating_labels(pd.Series(values, dtype="Int64"), pd.Series(scale, index=range(len(values))))
    assert out.sentiment_label.tolist() == expected
    assert out.sentiment_score.iloc[0] == pytest.approx(-1.0) and out.sentiment_score.iloc[-1] == pytest.approx(1.0)
    # the extremes are the clearest words, a neutral rating says little
    assert out.confidence.iloc[0] >= 0.9 and out.confidence.iloc[-1] >= 0.9
    assert (out.confidence[out.sentiment_label == "neutral"] < 0.8).all()


def test_parse_ratings_flags_out_of_range_and_keeps_blanks_unrated():
    ratings, invalid = parse_ratings(pd.Series(["0", "10", "11", "", None, "7.5", "x"]), "nps")
    assert ratings.tolist()[:2] == [0, 10] and ratings.isna().tolist()[2:] == [True] * 5
    assert invalid.tolist() == [False, False, True, False, False, True, True]
    thumbs, bad = parse_ratings(pd.Series(["up", "down", "👍", "maybe"]), "thumbs")
    assert thumbs.tolist()[:3] == [1, 0, 1] and bad.tolist() == [False, False, False, True]


def test_weak_labels_leave_neutral_and_unrated_out():
    labels = weak_labels(pd.Series([1, 3, 5, None], dtype="Int64"), pd.Series(["stars"] * 4))
    assert labels.iloc[0] == 1.0 and labels.iloc[2] == 0.0 and np.isnan(labels.iloc[1]) and np.isnan(labels.iloc[3])


def _nps_mapping(**over):
    spec = {"name": "nps_survey", "format": "csv", "source_kind": "nps", "columns": {
        "event_id": "id", "text": "comment", "created_at": "at", "rating": "score"}, "rating_scale": "nps", **over}
    return Mapping.from_dict(spec)


def test_ingest_quarantines_ratings_outside_the_mapping_scale(tmp_path):
    path = tmp_path / "nps.csv"
    path.write_text("id,comment,at,score\n1,love it,2026-01-01T00:00:00Z,10\n2,meh,2026-01-01T00:00:00Z,11\n"
                    "3,no score given,2026-01-01T00:00:00Z,\n")
    result = read_file(path, _nps_mapping())
    assert result.valid.event_id.tolist() == ["1", "3"]
    assert result.valid.rating.isna().tolist() == [False, True]
    assert (result.valid.rating_scale == "nps").all() and (result.valid.sentiment_from == "rating").all()
    assert result.quarantined.reason.tolist() == ["rating out of range for scale nps (0-10)"]
    assert result.quarantined.source_row.tolist() == [3]


def test_mapping_rejects_unknown_scale_and_source():
    with pytest.raises(ValueError, match="rating_scale: Input should be 'stars', 'csat', 'nps' or 'thumbs'"):
        _nps_mapping(rating_scale="stars10")
    with pytest.raises(ValueError, match="sentiment_from: Input should be 'rating', 'text' or 'both'"):
        _nps_mapping(sentiment_from="ratings")


class CountingLexicon(LexiconScorer):
    """The real lexicon, counting which texts it was asked about."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def score(self, texts):
        self.seen.extend(texts)
        return super().score(texts)


def _frame(rows):
    return pd.DataFrame(rows, columns=["text", "rating", "rating_scale", "sentiment_from"]).astype(
        {"rating": "Int64"})


def test_rated_rows_take_the_rating_and_skip_the_text_scorer():
    scorer = CountingLexicon()
    frame = _frame([
        ("great app, love it", 1, "stars", "rating"),  # the customer says 1 star: negative whatever the words
        ("checkout is broken and terrible", None, None, None),  # a ticket: the text decides
        ("it is fine", 5, "stars", "text"),  # the source asks for the text scorer
    ])
    out = score_frame(scorer, Taxonomy.load(), frame)
    assert out.sentiment_label.tolist()[:2] == ["negative", "negative"]
    assert out.label_source.tolist() == ["rating", "text", "text"]
    assert scorer.seen == ["checkout is broken and terrible", "it is fine"]
    assert out.scorer.tolist()[0] == "rating" and out.scorer_version.iloc[0].startswith("rating-")
    assert out.issue_category.iloc[1] == "checkout"  # topics still come from the text


def test_both_keeps_the_rating_label_and_halves_confidence_where_the_text_disagrees():
    frame = _frame([
        ("crashes every time, useless and awful", 5, "stars", "both"),
        ("wonderful, works great", 5, "stars", "both"),
    ])
    out = score_frame(LexiconScorer(), Taxonomy.load(), frame)
    assert out.sentiment_label.tolist() == ["positive", "positive"]
    assert out.label_source.tolist() == ["rating+text", "rating+text"]
    assert out.confidence.iloc[0] == pytest.approx(out.confidence.iloc[1] / 2)
