"""Issue 11's personal-data spot-check, end to end: what reaches the LLM on the wire, what quarantine
keeps of a rejected line in each shipped mapping, what a decision shows as evidence."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest

from rollback_assets.core.baselines import compute_baselines
from rollback_assets.core.ingest import read_file
from rollback_assets.core.mapping import load_mapping
from rollback_assets.core.policy import PolicyConfig, make_decisions
from rollback_assets.core.releases import release_record, releases_frame
from rollback_assets.core.scoring.registry import make_scorer
from llm_stub_server import StubServer

from test_baselines import CONFIG, day, reviews

KEY = "sk-stub-privacy-0123456789abcdef"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
PERSONAL = {  # what issue 11 found unredacted, and the part of it that must not leave
    "Call me on 0170/5550199 about the order": "5550199",
    "Refund to DE89 3704 0044 0532 0130 00 please": "3704 0044",
    "Deliver to Musterstraße 12, 10115 Berlin instead": "Musterstraße",
    "Hi, my name is Jana Kowalski and checkout fails": "Kowalski",
    "Checkout broke again.\nRegards, Jane Doe": "Jane Doe",
}


def test_national_phones_ibans_addresses_and_names_never_reach_the_llm():
    with StubServer(api_key=KEY) as server:
        scorer = make_scorer("openai", base_url=server.openai_base_url, api_key=KEY, backoff_base=0.01, timeout=5.0)
        scorer.score(list(PERSONAL))
        wire = "\n".join(r["raw"] for r in server.requests)
    assert server.requests, "the scorer never called the model"
    for text, secret in PERSONAL.items():
        assert secret not in wire, f"{secret!r} of {text!r} reached the model"
    for marker in ("[PHONE]", "[IBAN]", "[ADDRESS]", "[NAME]"):
        assert marker in wire, marker


def test_a_decisions_evidence_quotes_are_redacted():
    negatives = reviews("1.1", 300, 0.6, 10, 20, seed=2)
    negatives["text"] = [list(PERSONAL)[i % len(PERSONAL)] for i in range(len(negatives))]
    scored = pd.concat([reviews("1.0", 600, 0.3, 0, 20, seed=1), negatives], ignore_index=True)
    rel = releases_frame([release_record("app", v, day(d), surfaces=["checkout"]) for v, d in (("1.0", 0), ("1.1", 10))])
    decisions = make_decisions(compute_baselines(scored, rel, day(20), CONFIG), rel, PolicyConfig.load(),
                               {"scorer_version": "s", "input_versions": {}, "run_id": "t"}, day(20))
    shown = "\n".join(decisions[decisions.release_version == "1.1"].evidence)
    assert json.loads(decisions[decisions.release_version == "1.1"].evidence.iloc[0]), "no evidence to check"
    for secret in PERSONAL.values():
        assert secret not in shown, secret


PLAY_HEADER = "reviewId,userName,userImage,content,score,thumbsUpCount,reviewCreatedVersion,at,replyContent,repliedAt,appVersion\n"


@pytest.mark.parametrize("mapping, name, lines", [
    # a row with a bad value (its fields are known) and a line that cannot be split into fields
    ("google_play", "play.csv", PLAY_HEADER
     + "g1,Alice Secretname,https://img/alice,fine,9,1,8.1,2026-09-10 10:00:00,,,8.1\n"
     + "g2,Bob Secretname,img,\"unterminated\n"),
    ("support_tickets", "tickets.csv",
     "ticket_id,created_at,subject,description,product,app_version,flag_key,locale,device,region,customer_tier,"
     "requester_id,status,priority,assignee\n"
     "t1,not a time,s,d,shop-app,5.2,,de-DE,mobile,dach,free,REQ-Secretname,open,normal,Agent Secretname\n"
     "t2,2026-10-01T00:00:00Z,Secretname\n"),
    ("feedback_jsonl", "feedback.jsonl",
     json.dumps({"event_id": "e1", "source_kind": "review", "channel": "app", "created_at": "now", "text": "x",
                 "email": "Secretname@example.com", "full_name": "Jo Secretname"}) + "\n"
     + '{"event_id": "e2", "full_name": "Jo Secretname", broken\n'),
])
def test_quarantine_keeps_no_hashed_ignored_unknown_or_unsplittable_personal_fields(tmp_path, mapping, name, lines):
    path = tmp_path / name
    path.write_text(lines)
    result = read_file(path, load_mapping(mapping), author_salt="privacy-salt", now=NOW)
    assert len(result.quarantined) == 2, result.quarantined[["source_row", "reason"]]
    assert "Secretname" not in result.quarantined.to_json()
    rows = result.quarantined.set_index("source_row")
    assert rows.raw_record.notna().sum() == 1, "the row with known fields keeps its stored columns"
