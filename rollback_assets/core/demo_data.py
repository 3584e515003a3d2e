"""Demo feedback with a known truth: one bad release confined to one cohort, one off-topic incident.

Shop "acme" ships three flags over six weeks:
- checkout-redesign (product shop-app): release 5.2 breaks checkout for mobile users in de-DE.
- reco-model (product shop-web): ranker model-v3 replaces model-v2; customers are fine with it.
- search-v2 (product shop-search): a good release.
During week 6 a courier strike floods every product with shipping complaints: it must not roll back
anything, because shipping is an excluded topic.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

START = pd.Timestamp("2026-09-01", tz="UTC")
DAYS = 42
BAD_FLAG, BAD_VERSION, BAD_COHORT = "checkout-redesign", "5.2", {"device": "mobile", "locale": "de-DE"}
INCIDENT_DAYS = (36, 41)

RELEASES = [
    dict(flag_key="checkout-redesign", product="shop-app", version="5.0", day=0, surfaces=["checkout", "payments"]),
    dict(flag_key="checkout-redesign", product="shop-app", version="5.1", day=13, surfaces=["checkout", "payments"]),
    dict(flag_key="checkout-redesign", product="shop-app", version="5.2", day=29, surfaces=["checkout", "payments"]),
    dict(flag_key="reco-model", product="shop-web", version="model-v2", day=0, model_name="ranker", model_version="2.0",
         fallback_variant="model-v1", surfaces=["recommendations"]),
    dict(flag_key="reco-model", product="shop-web", version="model-v3", day=27, model_name="ranker", model_version="3.0",
         fallback_variant="model-v2", surfaces=["recommendations"]),
    dict(flag_key="search-v2", product="shop-search", version="2.0", day=0, surfaces=["search"]),
    dict(flag_key="search-v2", product="shop-search", version="2.1", day=25, surfaces=["search"]),
]
PRODUCT_TOPICS = {
    "shop-app": ["checkout", "payments", "login", "crashes", "performance", "search"],
    "shop-web": ["recommendations", "search", "checkout", "performance", "ads"],
    "shop-search": ["search", "performance", "recommendations", "login"],
}
PRODUCT_WEIGHT = {"shop-app": 0.45, "shop-web": 0.35, "shop-search": 0.20}
DEVICES = (["mobile", "desktop", "tablet"], [0.6, 0.3, 0.1])
LOCALES = (["en-US", "de-DE", "fr-FR", "en-GB"], [0.4, 0.25, 0.2, 0.15])
TIERS = (["free", "plus", "business"], [0.6, 0.3, 0.1])
ACQUISITION = (["organic", "paid_search", "referral", "email"], [0.5, 0.25, 0.15, 0.1])
REGION_OF = {"en-US": "us", "de-DE": "dach", "fr-FR": "fr", "en-GB": "uk"}

NEGATIVE = {
    "checkout": ["the new checkout is terrible, the order button does nothing", "checkout keeps failing, I could not place order at all",
                 "awful checkout, my cart empties itself before I can pay", "checkout is broken and frustrating, stuck on the address form",
                 "hate the redesigned checkout, the promo code field is gone and it errors"],
    "payments": ["payment failed three times, card declined for no reason, terrible", "I was charged twice, billing is a mess",
                 "paypal payment broken, so annoying"],
    "login": ["cannot log in, password reset is broken, awful", "logged out every day, hate it"],
    "crashes": ["app crashes constantly, terrible update", "it keeps crashing and freezes, useless"],
    "performance": ["so slow and laggy now, horrible", "loading takes forever, awful performance"],
    "search": ["search is useless, no results for obvious things, terrible", "search results are bad and the filters are broken"],
    "recommendations": ["recommendations are irrelevant garbage", "the for you suggestions are awful and repetitive"],
    "ads": ["way too many ads, annoying", "ads everywhere, terrible experience"],
    "shipping": ["delivery was late again, the courier never arrived, terrible", "parcel never arrived and tracking is useless, awful",
                 "shipping took three weeks, horrible service"],
    "pricing": ["prices went up again, way too expensive, bad", "overpriced and the subscription fee is a rip off"],
}
POSITIVE = {
    "checkout": ["checkout is quick and easy, great job", "love the smooth checkout, placed my order in seconds"],
    "payments": ["payment with apple pay works perfectly, great", "billing is clear and simple, love it"],
    "login": ["sign in is fast and easy, great", "love the quick login"],
    "crashes": ["no crashes anymore, very stable, great", "stable and reliable, excellent"],
    "performance": ["fast and smooth, great app", "loading is quick now, love it"],
    "search": ["search finds exactly what I want, excellent", "great search results, very helpful filters"],
    "recommendations": ["great recommendations, love the suggestions", "the for you page has excellent picks"],
    "ads": ["ads are not intrusive, good", "few ads, nice experience"],
    "shipping": ["delivery was fast, great courier", "parcel arrived early, excellent"],
    "pricing": ["fair prices, great value", "good value for the price, happy"],
}
OPENERS = np.array(["", "", "Honestly, ", "Since the update ", "Well, ", "Again: ", "FYI ", "Hmm, "], dtype=object)
CLOSERS = {
    True: np.array(["", ".", "!", " Please fix.", " Seriously.", " :(", " One star."], dtype=object),
    False: np.array(["", ".", "!", " Thanks.", " Keep it up.", " :)", " Five stars."], dtype=object),
}


@dataclass(frozen=True)
class DemoSpec:
    rows_per_day: int = 1000
    days: int = DAYS
    seed: int = 11
    bad_negative_rate: float = 0.2
    base_negative_rate: float = 0.25


def releases(start: pd.Timestamp = START) -> list[dict]:
    out = []
    for r in RELEASES:
        entry = {k: v for k, v in r.items() if k != "day"}
        entry["released_at"] = (start + pd.Timedelta(days=r["day"], hours=8)).isoformat()
        entry["code_commit"] = _fake_commit("code", r["flag_key"], r["version"])[:12]
        entry["notebook_commit"] = _fake_commit("notebook", r["flag_key"], r["version"])[:8]
        entry["owner"] = {"checkout-redesign": "checkout-team@acme.test", "reco-model": "ranking-team@acme.test"}.get(
            r["flag_key"], "search-team@acme.test")
        entry["expires_at"] = (start + pd.Timedelta(days=120)).isoformat()
        out.append(entry)
    return out


def _fake_commit(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def generate(spec: DemoSpec = DemoSpec(), start: pd.Timestamp = START) -> pd.DataFrame:
    """Canonical feedback rows with a `_truth` column naming what the row is evidence of."""
    rng = np.random.default_rng(spec.seed)
    n = spec.rows_per_day * spec.days
    day = rng.integers(0, spec.days, n)
    created = start + pd.to_timedelta(day, unit="D") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    products = rng.choice(list(PRODUCT_WEIGHT), n, p=list(PRODUCT_WEIGHT.values()))
    device = rng.choice(DEVICES[0], n, p=DEVICES[1])
    locale = rng.choice(LOCALES[0], n, p=LOCALES[1])
    kind = rng.choice(["review", "ticket", "nps", "chat"], n, p=[0.6, 0.2, 0.1, 0.1])
    version = _version_on(products, created, rng)
    truth = np.full(n, "normal", dtype=object)
    bad = (version == BAD_VERSION) & (device == BAD_COHORT["device"]) & (locale == BAD_COHORT["locale"])
    incident = (day >= INCIDENT_DAYS[0]) & (day < INCIDENT_DAYS[1]) & (rng.random(n) < 0.35)
    truth[bad] = "bad_release"
    truth[incident] = "shipping_incident"

    topics = np.empty(n, dtype=object)
    for product, choices in PRODUCT_TOPICS.items():
        mask = products == product
        topics[mask] = rng.choice(choices, int(mask.sum()))
    negative = rng.random(n) < spec.base_negative_rate
    bad_negative = bad & (rng.random(n) < spec.bad_negative_rate)
    negative |= bad_negative
    topics[bad_negative] = rng.choice(["checkout", "checkout", "payments"], int(bad_negative.sum()))
    topics[incident] = "shipping"
    negative[incident] = True
    offtopic = ~incident & (rng.random(n) < 0.05)
    topics[offtopic] = rng.choice(["shipping", "pricing"], int(offtopic.sum()))

    texts = _texts(topics, negative, rng)
    rating = np.where(negative, rng.choice([1, 2], n, p=[0.6, 0.4]), rng.choice([4, 5], n, p=[0.4, 0.6]))
    # Reviews mostly carry the version; tickets, NPS and chats often do not (about a quarter overall).
    drop_version = rng.random(n) < np.where(kind == "review", 0.12, 0.5)
    frame = pd.DataFrame(
        {
            "event_id": [f"acme-{i:07d}" for i in range(n)],
            "source_kind": kind,
            "channel": np.select([kind == "review", kind == "ticket", kind == "nps"], ["app_store", "helpdesk", "nps_survey"], "chat"),
            "created_at": created,
            "text": texts,
            "rating": pd.array(np.where(kind == "review", rating, 0), dtype="Int64"),
            "product": products,
            "app_version": np.where(drop_version, None, version),
            "flag_key": None,
            "locale": locale,
            "device": device,
            "region": [REGION_OF[l] for l in locale],
            "customer_tier": rng.choice(TIERS[0], n, p=TIERS[1]),
            "acquisition_channel": rng.choice(ACQUISITION[0], n, p=ACQUISITION[1]),
            "verified_buyer": rng.random(n) < 0.7,
            "author_hash": [f"{x:016x}" for x in rng.integers(0, 2**62, n)],
            "_truth": truth,
        }
    )
    frame.loc[frame.source_kind != "review", "rating"] = pd.NA
    return frame.sort_values("created_at").reset_index(drop=True)


def _version_on(products: np.ndarray, created: pd.DatetimeIndex, rng) -> np.ndarray:
    """The version a customer was on: mostly the newest live one, but old versions linger."""
    out = np.empty(len(products), dtype=object)
    rel = pd.DataFrame(releases())
    rel["released_at"] = pd.to_datetime(rel.released_at)
    times = created.to_numpy()
    for product, group in rel.sort_values("released_at").groupby("product"):
        mask = products == product
        live = np.searchsorted(group.released_at.to_numpy(), times[mask], side="right") - 1
        stay_old = rng.random(int(mask.sum())) < 0.3
        index = np.clip(np.where(stay_old & (live >= 1), live - 1, live), 0, None)
        out[mask] = group.version.to_numpy()[index]
    return out


def _texts(topics: np.ndarray, negative: np.ndarray, rng) -> np.ndarray:
    texts = np.empty(len(topics), dtype=object)
    for (topic, is_negative), index in pd.DataFrame({"t": topics, "n": negative}).groupby(["t", "n"]).indices.items():
        pool = np.array((NEGATIVE if is_negative else POSITIVE)[topic], dtype=object)
        closers = CLOSERS[bool(is_negative)]
        k = len(index)
        texts[index] = OPENERS[rng.integers(len(OPENERS), size=k)] + pool[rng.integers(len(pool), size=k)] + closers[rng.integers(len(closers), size=k)]
    return texts


def write_landing_zone(
    frame: pd.DataFrame, landing: Path, releases_path: Path | None = None, period_days: int = 7, malformed: bool = True,
    start: pd.Timestamp = START,
) -> list[Path]:
    """Files as real sources would deliver them (one per period): JSONL feedback and a helpdesk ticket CSV.

    One extra file carries malformed rows so the quarantine has something to show. `start`: the one
    `generate` was given (periods count from it; the releases file is written for it).
    """
    landing = Path(landing)
    (landing / "feedback_jsonl").mkdir(parents=True, exist_ok=True)
    (landing / "support_tickets").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    frame = frame.drop(columns="_truth")
    unit = "week" if period_days == 7 else "day" if period_days == 1 else f"{period_days}d"
    period = ((frame.created_at - start).dt.days // period_days).astype(int)
    for w, rows in frame.groupby(period):
        tickets = rows[rows.source_kind == "ticket"]
        others = rows[rows.source_kind != "ticket"]
        path = landing / "feedback_jsonl" / f"feedback_{unit}{w:02d}.jsonl"
        with open(path, "w") as handle:
            for record in others.to_dict("records"):
                record["created_at"] = record["created_at"].isoformat()
                record["rating"] = None if pd.isna(record["rating"]) else int(record["rating"])
                handle.write(json.dumps(record) + "\n")
        written.append(path)
        path = landing / "support_tickets" / f"tickets_{unit}{w:02d}.csv"
        _write_tickets(tickets, path)
        written.append(path)
    if malformed:
        path = landing / "feedback_jsonl" / "feedback_malformed.jsonl"
        path.write_bytes(_malformed_lines())
        written.append(path)
    if releases_path:
        Path(releases_path).write_text(yaml.safe_dump({"releases": releases(start)}, sort_keys=False))
    return written


def _write_tickets(tickets: pd.DataFrame, path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket_id", "created_at", "subject", "description", "product", "app_version", "flag_key", "locale",
                         "device", "region", "customer_tier", "requester_id", "status", "priority"])
        for r in tickets.itertuples():
            subject, _, description = r.text.partition(", ")
            writer.writerow([r.event_id, r.created_at.isoformat(), subject, description, r.product, r.app_version or "",
                             "", r.locale, r.device, r.region, r.customer_tier, r.author_hash, "open", "normal"])


def _malformed_lines() -> bytes:
    good = {"event_id": "bad-0", "source_kind": "review", "channel": "app_store", "created_at": "2026-09-10T10:00:00Z",
            "text": "fine", "rating": 4, "product": "shop-app"}
    lines = [
        json.dumps({**good, "event_id": ""}),
        json.dumps({**good, "event_id": "bad-1", "text": ""}),
        json.dumps({**good, "event_id": "bad-2", "rating": 7}),
        json.dumps({**good, "event_id": "bad-3", "created_at": "last tuesday"}),
        json.dumps({**good, "event_id": "bad-4", "text": "x" * 25_000}),
        json.dumps({**good, "event_id": "bad-5", "favourite_colour": "teal"}),
        '{"event_id": "bad-6", "text": "truncated',
    ]
    return ("\n".join(lines) + "\n").encode() + b'{"event_id": "bad-7", "text": "\xff\xfe broken bytes"}\n'
