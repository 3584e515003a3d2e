"""LLM scorer: OpenAI or Azure OpenAI Chat Completions with strict structured outputs.

Chosen through `registry.make_scorer("openai" | "azure", taxonomy, **config)`. The result
satisfies the `Scorer` protocol: `score(texts)` returns one row per text, in order, never raising for
a bad answer, a failed request or an exhausted budget -- those rows are scored by the offline scorer
and say so (`scorer="lexicon-vader"`, `scorer_version="vader-...;fallback-from=<llm version>;reason=..."`,
`fallback_reason`).

Config (keyword arguments of `registry.make_scorer` / `LLMConfig`):

  model            OpenAI model name (default "gpt-4o-mini"); for Azure the deployment name if
                   `deployment` is not given.
  deployment       Azure deployment name (kind="azure").
  base_url         OpenAI-compatible endpoint; default env OPENAI_BASE_URL, else api.openai.com.
  azure_endpoint   default env AZURE_OPENAI_ENDPOINT.
  api_version      Azure API version; default env OPENAI_API_VERSION, else "2024-10-21".
  api_key          secret; default env OPENAI_API_KEY (openai) / AZURE_OPENAI_API_KEY (azure). It is
                   only handed to the SDK: never logged, never in stats, prompts or error text.
  batch_size       reviews per request (default 20); each carries an id that must come back.
  concurrency      requests in flight at once (default 8).
  max_retries      retries per request on 429 / 408 / 409 / 5xx / timeout / connection errors (default 4).
  timeout          seconds per request (default 60).
  backoff_base, backoff_max
                   exponential backoff with jitter when the server names no Retry-After (default 0.5, 20 s).
  max_retry_after  longest Retry-After honoured (default 60 s); a longer one fails the request.
  budget_usd       per-call spend cap (default None = unlimited); budget_tokens: same in tokens (in+out).
                   A request whose estimated cost would cross the cap is not sent; its rows and all
                   later ones fall back to offline and `last_stats["budget_exhausted"]` is True.
  price_in_per_1k, price_out_per_1k
                   USD per 1k prompt / completion tokens (default gpt-4o-mini list price 0.00015 / 0.0006).
  cache_root       lake root for the `llm_score_cache` Delta table (default None = in-memory only).
  prompt_version   default PROMPT_VERSION; changes the cache key and the scorer version.
  max_chars        characters of a review sent, after redaction (default 4000); longer ones are cut and
                   the text says so; the `truncated` output column marks them.
  taxonomy         a Taxonomy (default Taxonomy.load()); its topic names are the issue_category enum.
  structured       "json_schema" (strict structured outputs, default) or "json_object" (JSON mode with
                   the schema in the system prompt, for compatible servers without strict schemas).
  temperature      default 0; None leaves it out (reasoning models reject it).
  max_completion_tokens_per_review
                   answer allowance per review (default 120); also the budget's output estimate.

Output columns: sentiment_score, sentiment_label, confidence, issue_category, affected_surface, urgency,
intent, rationale, scorer, scorer_version, fallback_reason (None for LLM rows), truncated, cached.

Stats (`scorer.last_stats`, a plain dict after every `score` call, safe for Dagster metadata):
  rows, unique_texts, cache_hits, cache_misses, requests (HTTP attempts incl. retries), batches,
  retries, rate_limited, failed_requests, reasked_rows, invalid_items, extra_ids, llm_rows,
  fallback_rows, truncated_rows, redactions, tokens_in, tokens_out, est_cost_usd, budget_usd,
  budget_tokens, budget_exhausted, cache_written, elapsed_s, model, scorer_version.

The pieces, one concern each: `llm_prompt` (prompt, response schema, validation: pure), `llm_transport`
(client and retries), `llm_budget` (the spend cap), `llm_cache` (valid answers keyed by the text as sent
and the model, prompt, schema, taxonomy and redaction versions), `redact` (what leaves the machine).
This module wires them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import pandas as pd

from ..taxonomy import OTHER, Taxonomy
from .lexicon import LexiconScorer
from .llm_budget import Budget, BudgetExhausted
from .llm_cache import ANSWER_FIELDS, ScoreCache
from .llm_prompt import (
    PROMPT_VERSION,
    SCHEMA_VERSION,
    STRUCTURED_MODES,
    InvalidAnswer,
    batch_messages,
    instructions,
    match_answers,
    parse_answer,
    surfaces_of,
)
from .llm_transport import RequestFailed, RetryPolicy, create_completion, make_client
from .redact import REDACTION_VERSION, prepare

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = (
    *ANSWER_FIELDS,
    "scorer",
    "scorer_version",
    "fallback_reason",
    "truncated",
    "cached",
)
# Reasons that say the rows were never answered (not asked again: the same request would fail again).
_NOT_ANSWERED = ("budget", "request")


@dataclass
class LLMConfig:
    model: str = "gpt-4o-mini"
    deployment: str | None = None
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    api_key: str | None = field(default=None, repr=False)
    batch_size: int = 20
    concurrency: int = 8
    max_retries: int = 4
    timeout: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 60.0
    budget_usd: float | None = None
    budget_tokens: int | None = None
    price_in_per_1k: float = 0.00015
    price_out_per_1k: float = 0.0006
    cache_root: str | None = None
    prompt_version: str = PROMPT_VERSION
    max_chars: int = 4000
    temperature: float | None = 0.0
    max_completion_tokens_per_review: int = 120
    structured: str = "json_schema"

    def __post_init__(self) -> None:
        if self.structured not in STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {STRUCTURED_MODES}, not {self.structured!r}")
        if self.batch_size < 1 or self.concurrency < 1 or self.max_retries < 0:
            raise ValueError("batch_size and concurrency must be >= 1, max_retries >= 0")


class LLMScorer:
    """Scores reviews with an OpenAI-compatible Chat Completions endpoint; see the module docstring."""

    def __init__(self, provider: str, config: LLMConfig | None = None, taxonomy: Taxonomy | None = None):
        if provider not in ("openai", "azure"):
            raise ValueError(f"provider must be 'openai' or 'azure', not {provider!r}")
        self.provider = provider
        self.config = config or LLMConfig()
        self.taxonomy = taxonomy or Taxonomy.load()
        env = "AZURE_OPENAI_API_KEY" if provider == "azure" else "OPENAI_API_KEY"
        self._api_key = self.config.api_key or os.environ.get(env)
        if not self._api_key:
            raise ValueError(f"{provider} scorer needs an API key: set {env} or pass api_key from a secret")
        self._endpoint = self._api_version = None
        if provider == "azure":
            self._endpoint = self.config.azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
            self._api_version = self.config.api_version or os.environ.get("OPENAI_API_VERSION") or "2024-10-21"
            if not self._endpoint and not self.config.base_url:
                raise ValueError("azure scorer needs azure_endpoint or AZURE_OPENAI_ENDPOINT")
            self.model = self.config.deployment or self.config.model
        else:
            self.model = self.config.model
        self.name = f"llm-{provider}"
        self.version = f"{provider}:{self.model}:{self.config.prompt_version}:{SCHEMA_VERSION}"
        self.fallback = LexiconScorer()
        self.cache = ScoreCache(self.config.cache_root, model=f"{provider}:{self.model}", prompt_version=self.config.prompt_version,
                                schema_version=SCHEMA_VERSION, taxonomy_version=self.taxonomy.version,
                                redaction_version=REDACTION_VERSION)
        self._system, self._format = instructions(self.taxonomy, self.config.structured)
        self._topics = frozenset(self.taxonomy.topic_names)
        self._surfaces = surfaces_of(self.taxonomy)
        self._retry = RetryPolicy(self.config.max_retries, self.config.backoff_base, self.config.backoff_max,
                                  self.config.max_retry_after)
        self.last_stats: dict[str, Any] = {}

    def __repr__(self) -> str:  # the config's repr already hides api_key; keep the scorer's short
        return f"LLMScorer(provider={self.provider!r}, version={self.version!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    # -- public ---------------------------------------------------------------------------------
    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        coro = self._score(list(texts))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside an event loop (a notebook, an async op): run ours on a worker thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    # -- internals ------------------------------------------------------------------------------
    async def _score(self, texts: list[str]) -> pd.DataFrame:
        started = time.perf_counter()
        cfg = self.config
        stats: dict[str, Any] = dict(
            rows=len(texts), unique_texts=0, cache_hits=0, cache_misses=0, requests=0, batches=0, retries=0,
            rate_limited=0, failed_requests=0, reasked_rows=0, invalid_items=0, extra_ids=0, llm_rows=0,
            fallback_rows=0, truncated_rows=0, redactions=0, tokens_in=0, tokens_out=0, est_cost_usd=0.0,
            budget_usd=cfg.budget_usd, budget_tokens=cfg.budget_tokens, budget_exhausted=False, cache_written=0,
            elapsed_s=0.0, model=f"{self.provider}:{self.model}", scorer_version=self.version,
        )
        self._stats = stats
        self._budget = Budget(stats, cfg.budget_usd, cfg.budget_tokens, cfg.price_in_per_1k, cfg.price_out_per_1k,
                              cfg.max_completion_tokens_per_review)

        secrets = (self._api_key,) if self._api_key else ()
        prepared = [prepare(t, cfg.max_chars, secrets) for t in texts]
        stats["truncated_rows"] = sum(p.truncated for p in prepared)
        stats["redactions"] = sum(p.redactions for p in prepared)
        keys = [self.cache.key(p.text) for p in prepared]
        unique: dict[str, str] = {}  # cache key -> prepared text
        for k, p in zip(keys, prepared):
            unique.setdefault(k, p.text)
        stats["unique_texts"] = len(unique)

        answers: dict[str, dict] = self.cache.get_many(list(unique))
        cached_keys = set(answers)
        stats["cache_hits"] = sum(k in cached_keys for k in keys)
        todo = [k for k in unique if k not in answers]
        stats["cache_misses"] = len(todo)
        failures: dict[str, str] = {}

        if todo:
            fresh, failures = await self._ask_all({k: unique[k] for k in todo})
            answers.update(fresh)
            stats["cache_written"] = len(fresh)
            self.cache.put_answers(fresh, unique)

        frame = self._assemble(texts, prepared, keys, answers, failures, cached_keys)
        stats["llm_rows"] = int((frame["fallback_reason"].isna()).sum())
        stats["fallback_rows"] = int(frame["fallback_reason"].notna().sum())
        stats["est_cost_usd"] = round(stats["est_cost_usd"], 6)
        stats["elapsed_s"] = round(time.perf_counter() - started, 3)
        self.last_stats = dict(stats)
        if stats["fallback_rows"]:
            reasons = frame["fallback_reason"].value_counts().to_dict()
            log.warning("%s: %d of %d rows scored offline instead: %s", self.name, stats["fallback_rows"], len(texts), reasons)
        return frame

    def _assemble(self, texts, prepared, keys, answers, failures, cached_keys) -> pd.DataFrame:
        missing = [i for i, k in enumerate(keys) if k not in answers]
        offline_rows: dict[int, dict] = {}
        if missing:
            # The offline scorer reads the redacted text too: same view of the review, no extra exposure.
            offline_texts = [prepared[i].text for i in missing]
            offline = self.fallback.score(offline_texts)
            topics = self.taxonomy.classify(pd.Series(offline_texts, dtype=object))
            for j, i in enumerate(missing):
                reason = failures.get(keys[i], "not_scored")
                offline_rows[i] = {
                    "sentiment_score": float(offline["sentiment_score"].iloc[j]),
                    "sentiment_label": str(offline["sentiment_label"].iloc[j]),
                    "confidence": float(offline["confidence"].iloc[j]),
                    "issue_category": topics["issue_category"].iloc[j],
                    "affected_surface": topics["affected_surface"].iloc[j] or OTHER,
                    "urgency": None,
                    "intent": None,
                    "rationale": None,
                    "scorer": self.fallback.name,
                    "scorer_version": f"{self.fallback.version};fallback-from={self.version};reason={reason.split(':')[0]}",
                    "fallback_reason": reason,
                }
        rows = []
        for i, key in enumerate(keys):
            row = offline_rows.get(i) or {
                **answers[key], "scorer": self.name, "scorer_version": self.version, "fallback_reason": None
            }
            rows.append({**row, "truncated": prepared[i].truncated, "cached": key in cached_keys})
        out = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), index=pd.RangeIndex(len(texts)))
        out["sentiment_score"] = out["sentiment_score"].astype("float64")
        out["confidence"] = out["confidence"].astype("float64")
        out["truncated"] = out["truncated"].astype(bool)
        out["cached"] = out["cached"].astype(bool)
        return out

    async def _ask_all(self, items: dict[str, str]) -> tuple[dict[str, dict], dict[str, str]]:
        """Score the cache misses: batches in flight under a semaphore; failures map key -> reason."""
        cfg = self.config
        keys = list(items)
        batches = [keys[i : i + cfg.batch_size] for i in range(0, len(keys), cfg.batch_size)]
        results: dict[str, dict] = {}
        failures: dict[str, str] = {}
        semaphore = asyncio.Semaphore(cfg.concurrency)
        client = make_client(self.provider, api_key=self._api_key, model=self.model, timeout=cfg.timeout,
                             base_url=cfg.base_url, azure_endpoint=self._endpoint, api_version=self._api_version)
        try:

            async def run(batch: list[str]) -> None:
                async with semaphore:
                    good, bad = await self._ask_batch(client, batch, items)
                    results.update(good)
                    if bad:
                        retry = [k for k, r in bad.items() if not r.startswith(_NOT_ANSWERED)]
                        self._stats["reasked_rows"] += len(retry)
                        final_bad = {k: r for k, r in bad.items() if k not in retry}
                        if retry:
                            good2, bad2 = await self._ask_batch(client, retry, items)
                            results.update(good2)
                            final_bad.update({k: f"invalid_output: {r}" if not r.startswith(_NOT_ANSWERED) else r for k, r in bad2.items()})
                        failures.update(final_bad)

            await asyncio.gather(*(run(b) for b in batches))
        finally:
            await client.close()
        return results, failures

    async def _ask_batch(self, client, batch: list[str], items: dict[str, str]) -> tuple[dict[str, dict], dict[str, str]]:
        """One request for a batch: (valid answers by key, reason by key for the rest). Never raises."""
        ids = {f"r{i}": k for i, k in enumerate(batch)}
        messages = batch_messages(self._system, {rid: items[k] for rid, k in ids.items()})
        try:
            hold = self._budget.reserve(messages, len(batch))
        except BudgetExhausted:
            return {}, {k: "budget_exhausted" for k in batch}
        cfg = self.config
        request = dict(model=self.model, messages=messages, response_format=self._format,
                       max_completion_tokens=len(batch) * cfg.max_completion_tokens_per_review + 50)
        if cfg.temperature is not None:
            request["temperature"] = cfg.temperature
        try:
            completion = await create_completion(
                client, request, self._retry, self._stats, scrub=self._scrub, label=self.name,
                on_response=lambda c: self._budget.account(c, messages, len(batch)),
            )
        except RequestFailed as exc:
            self._stats["failed_requests"] += 1
            return {}, {k: f"request_failed: {exc}" for k in batch}
        finally:
            self._budget.release(hold)
        try:
            parsed = parse_answer(completion)
        except InvalidAnswer as exc:
            self._stats["invalid_items"] += len(batch)
            return {}, {k: str(exc) for k in batch}
        good, bad, extra = match_answers(parsed, ids, self._topics, self._surfaces)
        self._stats["extra_ids"] += extra
        self._stats["invalid_items"] += len(bad)
        return good, bad


def config_fields() -> set[str]:
    return {f.name for f in fields(LLMConfig)}
