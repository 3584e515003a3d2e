"""LLM scorer throughput against the stub server at 300 ms per request, then a cached rerun.

    .venv/bin/python bench/llm.py [--reviews 2000] [--latency 0.3] [--batch-size 20] [--concurrency 16]

Starts the stub (`tests/llm_stub_server.py`) as a subprocess on a free loopback port, scores
generated reviews through the real openai SDK, reruns with a fresh scorer on the same Delta cache,
prints a table and writes bench/results/llm.json.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rollback_assets.core.scoring.registry import make_scorer  # noqa: E402

KEY = "bench-key-not-a-secret"
SUBJECTS = ["checkout", "the search", "login", "playback", "the recommendations", "the app", "payments", "the ads"]
VERDICTS = [
    "is broken since the update", "works great now", "is so slow it takes forever", "keeps crashing",
    "is fine", "is the best it's ever been", "charged me twice", "shows irrelevant results", "is ok I guess",
]


def reviews(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERDICTS)}. Order #{rng.randrange(10**6)} "
        f"{'!' * rng.randrange(3)}"
        for _ in range(n)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stub_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_stub/stats", timeout=5) as response:
        return json.load(response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "llm.json"))
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "llm_stub_server.py"), "--port", str(port), "--latency", str(args.latency),
         "--api-key", KEY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        proc.stdout.readline()  # "listening on ..."
        texts = reviews(args.reviews)
        runs = []
        with tempfile.TemporaryDirectory() as cache:
            for label in ("cold", "cached rerun"):
                scorer = make_scorer(
                    "openai", base_url=f"{url}/v1", api_key=KEY, batch_size=args.batch_size,
                    concurrency=args.concurrency, cache_root=cache,
                )
                before = stub_stats(url)["requests"]
                started = time.perf_counter()
                out = scorer.score(texts)
                elapsed = time.perf_counter() - started
                sent = stub_stats(url)["requests"] - before
                s = scorer.last_stats
                runs.append(
                    {
                        "run": label,
                        "reviews": len(texts),
                        "seconds": round(elapsed, 3),
                        "reviews_per_s": round(len(texts) / elapsed, 1),
                        "requests_at_server": sent,
                        "requests_per_1k_reviews": round(sent * 1000 / len(texts), 1),
                        "cache_hits": s["cache_hits"],
                        "llm_rows": s["llm_rows"],
                        "fallback_rows": s["fallback_rows"],
                        "tokens_in": s["tokens_in"],
                        "tokens_out": s["tokens_out"],
                        "est_cost_usd": s["est_cost_usd"],
                    }
                )
                assert len(out) == len(texts)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    config = {"latency_s": args.latency, "batch_size": args.batch_size, "concurrency": args.concurrency}
    cols = ["run", "reviews", "seconds", "reviews_per_s", "requests_at_server", "requests_per_1k_reviews",
            "cache_hits", "fallback_rows", "tokens_in", "tokens_out", "est_cost_usd"]
    print(f"LLM scorer vs stub ({config})")
    widths = [max(len(c), *(len(str(r[c])) for r in runs)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in runs:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))
    cold = runs[0]
    print(f"target >= 100 reviews/s: {'PASS' if cold['reviews_per_s'] >= 100 else 'FAIL'}; "
          f"rerun requests: {runs[1]['requests_at_server']} ({'PASS' if runs[1]['requests_at_server'] == 0 else 'FAIL'})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"config": config, "runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
