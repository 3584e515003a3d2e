"""Evidence quotes as a reader sees them: near-duplicates say nothing new."""

from __future__ import annotations

import re


def distinct_quotes(quotes: list[str], similarity: float = 0.7) -> list[str]:
    """Drop a quote whose word set overlaps an earlier one by `similarity` (Jaccard) or more."""
    kept: list[tuple[str, set[str]]] = []
    for quote in quotes:
        words = set(re.findall(r"[a-z0-9']+", quote.lower()))
        if words and all(len(words & seen) / len(words | seen) < similarity for _, seen in kept):
            kept.append((quote, words))
    return [q for q, _ in kept]
