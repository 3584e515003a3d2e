"""The one place a scorer is chosen by name, for the assets, replay and any engine.

auto        the customer-calibrated text model where it beat the lexicon on held-out rated rows,
            else the lexicon (the default everywhere: what the assets use is what replay uses)
calibrated  the calibrated model, or an error when there is none
lexicon     VADER, no training data needed ("offline" is an older name for it)
openai      the LLM scorer on the OpenAI API or any compatible server (OPENAI_BASE_URL)
azure       the LLM scorer on Azure OpenAI
"""

from __future__ import annotations

from typing import Any

from ..taxonomy import Taxonomy
from .base import Scorer
from .calibrated import CalibratedScorer
from .lexicon import LexiconScorer

SCORER_KINDS = ("auto", "calibrated", "lexicon", "openai", "azure")
ALIASES = {"offline": "lexicon"}


def make_scorer(kind: str = "auto", taxonomy: Taxonomy | None = None, *, text_model: CalibratedScorer | None = None,
                **llm_config: Any) -> Scorer:
    """A Scorer by kind. `text_model`: the trained text model (from the model store, or `calibrated.train_on`);
    `llm_config`: LLMConfig fields for openai / azure (`model` is the LLM's name there)."""
    kind = ALIASES.get((kind or "auto").lower(), (kind or "auto").lower())
    if kind not in SCORER_KINDS:
        raise ValueError(f"scorer kind must be one of {', '.join(SCORER_KINDS)}, not {kind!r}")
    if kind in ("openai", "azure"):
        from .llm import LLMConfig, LLMScorer, config_fields

        unknown = sorted(set(llm_config) - config_fields())
        if unknown:
            raise ValueError(f"unknown LLM scorer config: {unknown}")
        return LLMScorer(kind, LLMConfig(**{k: v for k, v in llm_config.items() if v is not None}), taxonomy)
    if llm_config:
        raise ValueError(f"scorer {kind!r} takes no LLM settings, got {sorted(llm_config)}")
    if kind == "lexicon":
        return LexiconScorer()
    if text_model is not None and (kind == "calibrated" or text_model.validation.calibrated_wins):
        return text_model
    if kind == "calibrated":
        raise ValueError("scorer 'calibrated' needs a trained model: too few rated rows to train one")
    return LexiconScorer()


def runs_offline(scorer: Scorer) -> bool:
    """Whether the scorer needs nothing but a core: no network, budget or cache state (the lexicon and the
    calibrated model). Such a scorer may be copied to another process (scoring.worker); an LLM scorer may not."""
    return isinstance(scorer, (LexiconScorer, CalibratedScorer))
