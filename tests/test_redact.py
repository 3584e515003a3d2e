"""Redaction of personal data before text leaves the process or is shown as evidence (issue 11, item 7)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rollback_assets.core.negatives_daily import evidence
from rollback_assets.core.scoring.redact import prepare, redact, redact_quote


@pytest.mark.parametrize("text, marker, gone", [
    ("call me on 0170/5550199 please", "[PHONE]", "5550199"),
    ("Tel. (030) 123 4567", "[PHONE]", "4567"),
    ("+49 (0)170 5550199", "[PHONE]", "5550199"),
    ("refund to DE89 3704 0044 0532 0130 00 asap", "[IBAN]", "3704"),
    ("IBAN DE89370400440532013000.", "[IBAN]", "DE89"),
    ("GB82 WEST 1234 5698 7654 32", "[IBAN]", "WEST"),
    ("I live at Musterstraße 12, 10115 Berlin", "[ADDRESS]", "Musterstraße"),
    ("send it to Hauptstr. 5a", "[ADDRESS]", "Hauptstr"),
    ("ship to 221B Baker Street, London", "[ADDRESS]", "Baker"),
    ("12 rue de la Paix 75002 Paris", "[ADDRESS]", "Paix"),
    ("postcode SW1A 1AA", "[ADDRESS]", "1AA"),
    ("Hi, my name is Jane Doe and checkout fails", "[NAME]", "Jane"),
    ("mein Name ist Peter Müller", "[NAME]", "Müller"),
    ("your agent Sarah was rude", "[NAME]", "Sarah"),
    ("Mrs. Smith could not help", "[NAME]", "Smith"),
    ("Checkout is broken.\nRegards, Jane Doe", "[NAME]", "Jane"),
])
def test_personal_data_is_replaced_by_its_marker(text, marker, gone):
    clean, count = redact(text)
    assert marker in clean and gone not in clean and count >= 1
    assert marker in prepare(text).text


def test_iban_is_one_marker_not_a_card_inside_a_country_code():
    assert redact("DE89 3704 0044 0532 0130 00")[0] == "[IBAN]"


@pytest.mark.parametrize("text", [
    "version 8.104.0 build 5 50619 crashes", "since 12/05/2024 it broke", "rated it 5/5", "Thanks Netflix",
    "Best app ever", "a movie called The Bad Seed", "Samsung S21FE phone", "order AB12 CDEF GHIJ", "I am Very angry",
    "The New Design of checkout is awful",
])
def test_ordinary_review_text_is_left_alone(text):
    assert redact(text) == (text, 0)


def test_evidence_quotes_are_redacted_where_they_are_produced():
    candidates = [  # one topic's quote texts, most confident first: stored as written, redacted when picked
        "Checkout broke, call me 0170/5550199. Regards, Jane Doe", "x" * 500 + " DE89 3704 0044 0532 0130 00",
    ]
    quotes = evidence(candidates, 5)
    dumped = json.dumps(quotes)
    assert "5550199" not in dumped and "Jane" not in dumped and "[PHONE]" in quotes[0] and "[NAME]" in quotes[0]
    assert all(len(q) <= 240 for q in quotes)
    assert redact_quote(None) == ""
