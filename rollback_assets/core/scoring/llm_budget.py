"""The LLM scorer's spend cap, in US dollars and/or tokens, for one `score` call.

A request is priced BEFORE it is sent (prompt characters / 3, plus the answer allowance per review)
and its estimate is held against the cap while it is in flight, so concurrent requests cannot
overshoot together; a request that would cross the cap is not sent, and the budget stays exhausted
for the rest of the call (its rows and all later ones are scored offline). What a request really
cost comes from the server's `usage`, or the same estimate when the server reports none.

The counters live in the scorer's stats dict (`tokens_in`, `tokens_out`, `est_cost_usd`,
`budget_exhausted`), which is what Dagster metadata and the benchmark show.
"""

from __future__ import annotations

from dataclasses import dataclass


class BudgetExhausted(Exception):
    """The next request would cross the cap; nothing was sent."""


@dataclass
class Budget:
    stats: dict
    usd: float | None = None
    tokens: int | None = None
    price_in_per_1k: float = 0.00015
    price_out_per_1k: float = 0.0006
    out_tokens_per_review: int = 120
    _held_usd: float = 0.0
    _held_tokens: int = 0

    def estimate(self, messages: list[dict], n: int) -> tuple[int, int]:
        """(prompt tokens, answer tokens) expected for `n` reviews in `messages`."""
        tokens_in = sum(len(m["content"]) for m in messages) // 3 + 20
        return tokens_in, n * self.out_tokens_per_review

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in / 1000 * self.price_in_per_1k + tokens_out / 1000 * self.price_out_per_1k

    def reserve(self, messages: list[dict], n: int) -> tuple[float, int]:
        """Hold the estimated cost of a request against the budget before sending it, or refuse."""
        s = self.stats
        if s["budget_exhausted"]:
            raise BudgetExhausted
        t_in, t_out = self.estimate(messages, n)
        cost = self.cost(t_in, t_out)
        over_usd = self.usd is not None and s["est_cost_usd"] + self._held_usd + cost > self.usd
        over_tok = self.tokens is not None and (
            s["tokens_in"] + s["tokens_out"] + self._held_tokens + t_in + t_out > self.tokens
        )
        if over_usd or over_tok:
            s["budget_exhausted"] = True
            raise BudgetExhausted
        self._held_usd += cost
        self._held_tokens += t_in + t_out
        return cost, t_in + t_out

    def release(self, hold: tuple[float, int]) -> None:
        """The request is over (answered or failed): its estimate no longer counts."""
        self._held_usd -= hold[0]
        self._held_tokens -= hold[1]

    def account(self, completion, messages: list[dict], n: int) -> None:
        """Add what an answered request cost: the server's usage, else the estimate."""
        usage = getattr(completion, "usage", None)
        t_in = getattr(usage, "prompt_tokens", None)
        t_out = getattr(usage, "completion_tokens", None)
        if not isinstance(t_in, int) or not isinstance(t_out, int):
            est_in, _ = self.estimate(messages, n)
            content = completion.choices[0].message.content if getattr(completion, "choices", None) else ""
            t_in, t_out = est_in, len(content or "") // 3
        self.stats["tokens_in"] += t_in
        self.stats["tokens_out"] += t_out
        self.stats["est_cost_usd"] += self.cost(t_in, t_out)
