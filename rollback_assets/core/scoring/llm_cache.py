"""The LLM score cache: one Delta row per (prepared text, model, prompt, schema, taxonomy, redaction).

Only rows the model answered validly are stored, so a rerun sends zero requests for them and retries
only what fell back. The key hashes the text *as sent* (after redaction and truncation); the table
holds hashes and scores, never review text.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import pandas as pd
import pyarrow as pa

from ..lake import Lake
from ..schemas import UTC_TS, Column, Table

log = logging.getLogger(__name__)

LLM_SCORE_CACHE = Table(
    "llm_score_cache",
    (
        Column("cache_key", pa.string(), False, "sha256 of text hash, model, prompt, schema, taxonomy and redaction versions"),
        Column("text_sha256", pa.string(), False, "sha256 of the redacted, truncated text that was sent"),
        Column("model", pa.string(), False, "provider:model or provider:deployment"),
        Column("prompt_version", pa.string(), False),
        Column("schema_version", pa.string(), False),
        Column("taxonomy_version", pa.string()),
        Column("sentiment_score", pa.float64(), False),
        Column("sentiment_label", pa.string(), False),
        Column("confidence", pa.float64(), False),
        Column("issue_category", pa.string()),
        Column("affected_surface", pa.string()),
        Column("urgency", pa.string()),
        Column("intent", pa.string()),
        Column("rationale", pa.string()),
        Column("scored_at", UTC_TS),
    ),
    key=("cache_key",),
    description="LLM sentiment answers by prepared-text hash and model/prompt/schema version; a rerun reuses them.",
)

# The fields of one model answer per review: the response schema requires them, the cache keeps them.
ANSWER_FIELDS = (
    "sentiment_score",
    "sentiment_label",
    "confidence",
    "issue_category",
    "affected_surface",
    "urgency",
    "intent",
    "rationale",
)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cache_key(text_hash: str, *parts: str) -> str:
    return hashlib.sha256("\x1f".join((text_hash, *parts)).encode()).hexdigest()


class ScoreCache:
    """In-memory map in front of an optional Delta table (`root` is a lake root directory), for one
    scorer: its model and prompt, schema, taxonomy and redaction versions are part of every key, so
    an answer is only ever reused for the same question about the same text."""

    def __init__(self, root: str | Path | None, *, model: str, prompt_version: str, schema_version: str,
                 taxonomy_version: str, redaction_version: str):
        self.lake = Lake(root) if root else None
        self.memory: dict[str, dict] = {}
        self.versions = {"model": model, "prompt_version": prompt_version, "schema_version": schema_version,
                         "taxonomy_version": taxonomy_version}
        self._key_parts = (model, prompt_version, schema_version, taxonomy_version, redaction_version)

    def key(self, text: str) -> str:
        """The cache key of a text as it is sent (redacted, truncated)."""
        return cache_key(text_sha256(text), *self._key_parts)

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found = {k: self.memory[k] for k in keys if k in self.memory}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing and self.lake is not None and self.lake.exists(LLM_SCORE_CACHE):
            try:
                frame = self.lake.read_keys_in(LLM_SCORE_CACHE, "cache_key", missing, ["cache_key", *ANSWER_FIELDS]).to_pandas()
            except Exception as exc:  # a corrupt cache must not stop scoring
                log.warning("LLM score cache unreadable, scoring without it: %s", type(exc).__name__)
                return found
            for row in frame.to_dict("records"):
                row = {k: (None if isinstance(v, float) and pd.isna(v) and k not in ("sentiment_score", "confidence") else v) for k, v in row.items()}
                key = row.pop("cache_key")
                self.memory[key] = row
                found[key] = row
        return found

    def put_answers(self, answers: Mapping[str, dict], texts: Mapping[str, str]) -> int:
        """Keep valid answers (`answers`: key -> ANSWER_FIELDS, `texts`: key -> the text sent); returns
        the rows written to the table (0 without one, or when the write lost a race)."""
        rows = [{"cache_key": k, "text_sha256": text_sha256(texts[k]), **self.versions, **row} for k, row in answers.items()]
        if not rows:
            return 0
        for row in rows:
            self.memory[row["cache_key"]] = {k: row[k] for k in ANSWER_FIELDS}
        if self.lake is None:
            return 0
        frame = pd.DataFrame(rows).drop_duplicates("cache_key", keep="last")
        frame["scored_at"] = datetime.now(timezone.utc)
        try:
            self.lake.merge(LLM_SCORE_CACHE, frame)
        except Exception as exc:  # e.g. a concurrent writer won the commit; the rows are rescored next time
            log.warning("LLM score cache write failed (%s); %d rows not cached", type(exc).__name__, len(frame))
            return 0
        return len(frame)
