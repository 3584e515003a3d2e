"""What the LLM scorer asks and accepts (core/scoring/llm_prompt.py) and how it reads a server's
Retry-After (llm_transport.py): pure functions, no server."""

from __future__ import annotations

import email.utils
import time

from rollback_assets.core.scoring.llm_prompt import instructions, match_answers, validate_item
from rollback_assets.core.scoring.llm_transport import retry_after
from rollback_assets.core.taxonomy import Taxonomy

GOOD = {"sentiment_score": -0.8, "sentiment_label": "negative", "confidence": 0.9, "issue_category": "checkout",
        "affected_surface": "checkout", "urgency": "high", "intent": "complaint", "rationale": "cannot pay"}


def test_validate_item_checks_every_field():
    topics, surfaces = frozenset(Taxonomy.load().topic_names), frozenset({"checkout", "other"})
    good = {"id": "r0", "sentiment_score": -0.8, "sentiment_label": "negative", "confidence": 0.9,
            "issue_category": "checkout", "affected_surface": "checkout", "urgency": "high",
            "intent": "complaint", "rationale": "cannot pay"}
    assert validate_item(good, topics, surfaces)[0]["sentiment_score"] == -0.8
    for field, value in [("sentiment_score", 1.5), ("sentiment_score", "0.5"), ("sentiment_score", True),
                         ("sentiment_label", "bad"), ("confidence", -0.1), ("issue_category", "weather"),
                         ("affected_surface", "moon"), ("urgency", "critical"), ("intent", "rant"),
                         ("rationale", None), ("sentiment_score", 0.9)]:
        row, why = validate_item({**good, field: value}, topics, surfaces)
        assert row is None and why, (field, value)


def test_answers_are_matched_to_the_ids_asked_and_nothing_else():
    topics, surfaces = frozenset(Taxonomy.load().topic_names), frozenset({"checkout", "other"})
    ids = {"r0": "k0", "r1": "k1", "r2": "k2", "r3": "k3"}
    results = [{"id": "r0", **GOOD}, {"id": "r1", **GOOD}, {"id": "r1", **GOOD, "sentiment_score": -0.5},
               {"id": "r2", **GOOD, "urgency": "critical"}, {"id": "zz", **GOOD}, "not an object"]
    good, bad, extra = match_answers(results, ids, topics, surfaces)
    assert list(good) == ["k0"]
    assert bad == {"k1": "duplicate id", "k2": "urgency not in enum", "k3": "missing id"}
    assert extra == 2  # an unknown id and an answer without one


def test_json_object_mode_puts_the_schema_in_the_prompt():
    taxonomy = Taxonomy.load()
    system, response_format = instructions(taxonomy, "json_object")
    assert response_format == {"type": "json_object"} and '"results"' in system
    system, response_format = instructions(taxonomy)
    assert response_format["json_schema"]["strict"] is True and '"results"' not in system


def test_retry_after_in_milliseconds_seconds_or_a_date():
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "2"}) == 2.0
    soon = retry_after({"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)})
    assert 25 < soon <= 30
    assert retry_after({"retry-after": "soon"}) is None and retry_after({"retry-after": "-1"}) is None
    assert retry_after(None) is None and retry_after({}) is None
