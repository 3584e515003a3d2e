"""Accuracy benchmark: four rollback rules on simulated release streams with known truth, and on real reviews.

Methods, side by side on the same streams and looks (every 6 h for 21 days after each release):
  fixed-rule   the seed article's rule (rollback_assets.core.policy.fixed_rule, policy_fixed_rule.yaml)
  kayenta      Kayenta-style judge: Mann-Whitney U / Hodges-Lehmann 98 % interval on 12-hour negative
               shares of the release vs the previous version, last 7 days, flag level; acts when the
               interval lies above 0
  growthbook   GrowthBook-style one-sided always-valid CS (alpha 0.05) on the flag-level difference of
               negative shares since release; acts when its lower end is above 0
  sequential   this project's policy (rollback_assets.core.sequential_policy, the default policy.yaml)

Simulated streams (at the level of scored-row counts per 6-hour bucket, so thousands of streams run in
seconds): 4 cohorts (device x locale) at ~400 relevant reviews per cohort-week once the release is
fully adopted; the previous version keeps being reviewed (decaying to 20 %); weekly seasonality in
volume and negative share; a 2-day holiday spike (volume x1.8, negative share x1.25 on every
version); an off-topic shipping incident (excluded topic) in half of the streams; 15 % of buckets
arrive 1-8 steps late. Regressions: +10..60 % relative negative share from release time, global or
confined to one cohort; the extra complaints sit on a high-risk surface.

Then the real-text streams (bench/real_streams.py): real review texts on synthetic release schedules,
fed through `rollback-assets replay`, and the real Netflix file's per-release table.

Run:  .venv/bin/python bench/accuracy.py [--quick] [--no-netflix] [--real-only | --no-real] [--real-null N] [--real-per-effect N]
Writes bench/results/accuracy.json and bench/results/real_streams.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rollback_assets.core.policy import PolicyConfig, fixed_rule  # noqa: E402
from rollback_assets.core.schemas import ALL_COHORTS  # noqa: E402
from rollback_assets.core.sequential_policy import sequential_rule  # noqa: E402
from comparators import growthbook_cs_lower, hl_lower_batch  # noqa: E402  (bench/ is on sys.path when run)

CONFIG_DIR = ROOT / "rollback_assets" / "config"
STEP_H = 6
STEPS_PER_DAY = 24 // STEP_H
PRE_DAYS, POST_DAYS = 28, 21
K = 4
COHORTS = ["device=mobile|locale=de-DE", "device=mobile|locale=en-US", "device=desktop|locale=de-DE", "device=desktop|locale=en-US"]
METHODS = ["fixed-rule", "kayenta", "growthbook", "sequential"]


# ----------------------------------------------------------------------------------- simulation

def simulate(n_streams: int, effect: float, confined: bool, rng: np.random.Generator, rate_per_cohort_week: float = 400.0) -> dict:
    """Bucket counts (stream, version[0=prev,1=current], cohort, step) plus arrival delays."""
    pre, post = PRE_DAYS * STEPS_PER_DAY, POST_DAYS * STEPS_PER_DAY
    T = pre + post
    t = np.arange(T)
    since = np.clip(t - pre, 0, None) / STEPS_PER_DAY  # days since release
    rate = rate_per_cohort_week / (7 * STEPS_PER_DAY)
    weekly = 1 + 0.3 * np.sin(2 * np.pi * t / (7 * STEPS_PER_DAY) + rng.uniform(0, 2 * np.pi, (n_streams, 1)))
    holiday_day = rng.integers(pre // STEPS_PER_DAY, (T // STEPS_PER_DAY) - 2, n_streams)
    holiday = (t[None, :] >= holiday_day[:, None] * STEPS_PER_DAY) & (t[None, :] < (holiday_day[:, None] + 2) * STEPS_PER_DAY)
    volume = weekly * np.where(holiday, 1.8, 1.0)                                        # (S, T)
    prev_rate = np.where(t < pre, 1.0, 0.2 + 0.8 * np.exp(-since / 3.0))
    cur_rate = np.where(t < pre, 0.0, 1.0 - np.exp(-since / 2.0))
    lam = rate * volume[:, None, None, :] * np.stack([prev_rate, cur_rate])[None, :, None, :]  # (S, 2, 1, T)
    lam = np.broadcast_to(lam, (n_streams, 2, K, T))
    n = rng.poisson(lam)
    p0 = rng.uniform(0.2, 0.4, (n_streams, 1, 1, 1)) * rng.uniform(0.8, 1.2, (n_streams, 1, K, 1))
    p = p0 * (1 + 0.1 * np.sin(2 * np.pi * t / (7 * STEPS_PER_DAY)))[None, None, None, :]
    p = p * np.where(holiday, 1.25, 1.0)[:, None, None, :]
    affected = np.zeros((1, 2, K, 1), bool)
    affected[0, 1, 0 if confined else slice(None), 0] = True
    p_eff = np.where(affected & (t >= pre)[None, None, None, :], p * (1 + effect), p)
    p_eff = np.clip(p_eff, 0, 0.95)
    neg = rng.binomial(n, p_eff)
    # Baseline complaints: 60 % on a high-risk surface; the regression's extra complaints all are.
    hr_prob = np.clip((0.6 * p + (p_eff - p)) / np.maximum(p_eff, 1e-9), 0, 1)
    neg_hr = rng.binomial(neg, hr_prob)
    conf = np.clip(rng.normal(0.84, 0.03, n.shape), 0.5, 1.0)
    # Off-topic incident: 3 days of shipping complaints on the new version in half the streams (excluded topic).
    incident = rng.random(n_streams) < 0.5
    inc_day = rng.integers(pre // STEPS_PER_DAY, (T // STEPS_PER_DAY) - 3, n_streams)
    inc_mask = incident[:, None] & (t[None, :] >= inc_day[:, None] * STEPS_PER_DAY) & (t[None, :] < (inc_day[:, None] + 3) * STEPS_PER_DAY)
    n_excl = rng.poisson(2 * rate * inc_mask[:, None, None, :] * np.array([0.0, 1.0])[None, :, None, None] * np.ones((1, 1, K, 1)))
    late = rng.random(n.shape) < 0.15
    delay = np.where(late, rng.integers(1, 9, n.shape), 0)
    return {"n": n, "neg": neg, "neg_hr": neg_hr, "conf_sum": conf * n, "n_excl": n_excl, "delay": delay, "pre": pre, "post": post}


def baseline_frames(sim: dict, tag: str, window_days: float) -> tuple[pd.DataFrame, dict]:
    """COHORT_BASELINES-shaped rows for every stream x look x cohort x kind, as compute_baselines defines
    them (current = release rows since max(release, look - window); concurrent = previous version in the
    same window; rolling = previous version in the 28 days before the release), counting only rows that
    have arrived by the look. Also returns per-look Kayenta buckets and flag-level current n."""
    n, neg, hr, cs, excl, delay, pre, post = (sim[k] for k in ("n", "neg", "neg_hr", "conf_sum", "n_excl", "delay", "pre", "post"))
    S, _, _, T = n.shape
    W = int(window_days * STEPS_PER_DAY)
    arrival = np.arange(T)[None, None, None, :] + delay
    rolling_mask = (np.arange(T) < pre)
    roll_n = n[:, 0, :, :][..., rolling_mask].sum(-1)
    roll_x = neg[:, 0, :, :][..., rolling_mask].sum(-1)
    rows = []
    cur_all_n = np.zeros((S, post))
    for li, look in enumerate(range(pre + 1, T + 1)):  # look at end of step look-1
        start = max(pre, look - W)
        created = (np.arange(T) >= start) & (np.arange(T) < look)
        vis = created[None, None, None, :] & (arrival < look)
        def tot(a):
            return (a * vis).sum(-1)  # (S, 2, K)
        cn, cx, chr_, ccs, cex = tot(n), tot(neg), tot(hr), tot(cs), tot(excl)
        cur_all_n[:, li] = cn[:, 1].sum(-1)
        for ci, cohort in enumerate([ALL_COHORTS] + COHORTS):
            sl = slice(None) if ci == 0 else ci - 1
            def pick(a, v):
                return a[:, v, :].sum(-1) if ci == 0 else a[:, v, sl]
            cur_n, cur_x = pick(cn, 1), pick(cx, 1)
            base = {"concurrent": (pick(cn, 0), pick(cx, 0)),
                    "rolling": (roll_n.sum(-1) if ci == 0 else roll_n[:, sl], roll_x.sum(-1) if ci == 0 else roll_x[:, sl])}
            for kind, (bn, bx) in base.items():
                rows.append(pd.DataFrame({
                    "flag_key": [f"{tag}:{s}" for s in range(S)], "release_version": f"L{li:03d}", "cohort": cohort,
                    "baseline_kind": kind, "baseline_versions": "prev", "n": cur_n, "n_negative": cur_x,
                    "n_negative_high_risk": pick(chr_, 1), "n_excluded": pick(cex, 1), "n_excluded_negative": pick(cex, 1),
                    "mean_confidence": np.where(cur_n > 0, pick(ccs, 1) / np.maximum(cur_n, 1), np.nan),
                    "baseline_n": bn, "baseline_n_negative": bx,
                    "top_topics": '[["checkout", 1]]', "mean_urgency_high": np.nan,
                    # each look is its own release_version here, so one window_end serves every look
                    "window_end": SIM_CLOCK, "release_live": True,
                }))
    frame = pd.concat(rows, ignore_index=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["negative_share"] = np.where(frame.n > 0, frame.n_negative / frame.n.clip(lower=1), np.nan)
        frame["baseline_negative_share"] = np.where(frame.baseline_n > 0, frame.baseline_n_negative / frame.baseline_n.clip(lower=1), np.nan)
    return frame, {"cur_all_n": cur_all_n}


def kayenta_acts(sim: dict, window_days: float = 7.0, bucket_steps: int = 2, min_buckets: int = 4) -> np.ndarray:
    """(S, looks) bool: the 98 % Hodges-Lehmann interval of (release - previous) 12-hour negative shares is above 0."""
    n, neg, delay, pre = sim["n"], sim["neg"], sim["delay"], sim["pre"]
    S, _, _, T = n.shape
    W = int(window_days * STEPS_PER_DAY)
    arrival = np.arange(T)[None, None, None, :] + delay
    out = np.zeros((S, T - pre), bool)
    nb = W // bucket_steps
    for li, look in enumerate(range(pre + 1, T + 1)):
        start = max(pre, look - W)
        steps = np.arange(T)
        vis = ((steps >= start) & (steps < look))[None, None, None, :] & (arrival < look)
        vn = (n * vis).sum(2)   # flag level (S, 2, T)
        vx = (neg * vis).sum(2)
        # buckets aligned to the look, newest last
        idx = look - 1 - np.arange(nb * bucket_steps)[::-1]
        idx = idx[idx >= start]
        if len(idx) < bucket_steps * min_buckets:
            continue
        cut = len(idx) - len(idx) % bucket_steps
        idx = idx[len(idx) - cut:]
        bn = vn[:, :, idx].reshape(S, 2, -1, bucket_steps).sum(-1)
        bx = vx[:, :, idx].reshape(S, 2, -1, bucket_steps).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(bn > 0, bx / bn, np.nan)
        enough = ((~np.isnan(share[:, 0])).sum(-1) >= min_buckets) & ((~np.isnan(share[:, 1])).sum(-1) >= min_buckets)
        _, lower = hl_lower_batch(share[:, 1], share[:, 0], 0.98)
        out[:, li] = enough & (lower > 0)
    return out


# ----------------------------------------------------------------------------------- evaluation
SIM_CLOCK = pd.Timestamp("2026-01-01", tz="UTC")

def acts_from_verdicts(verdicts: pd.DataFrame, S: int, looks: int, tag: str, cohorts: list[str] | None) -> np.ndarray:
    v = verdicts.reset_index()
    v = v[v.state == "act"]
    if cohorts is not None:
        v = v[v.cohort.isin(cohorts)]
    out = np.zeros((S, looks), bool)
    if len(v):
        s = v.flag_key.str.slice(len(tag) + 1).astype(int).to_numpy()
        li = v.release_version.str.slice(1).astype(int).to_numpy()
        out[s, li] = True
    return out


def growthbook_acts(frame: pd.DataFrame, S: int, looks: int, min_n: int = 50) -> np.ndarray:
    f = frame[(frame.cohort == ALL_COHORTS) & (frame.baseline_kind == "concurrent")]
    lower, _ = growthbook_cs_lower(f.n, f.n_negative, f.baseline_n, f.baseline_n_negative, alpha=0.05)
    hit = (lower > 0) & (f.n >= min_n).to_numpy() & (f.baseline_n >= min_n).to_numpy()
    out = np.zeros((S, looks), bool)
    s = f.flag_key.str.split(":").str[-1].astype(int).to_numpy()
    li = f.release_version.str.slice(1).astype(int).to_numpy()
    out[s[hit], li[hit]] = True
    return out


def run_scenario(name, effect, confined, n_streams, rng, configs, extra_fixed) -> dict:
    sim = simulate(n_streams, effect, confined, rng)
    looks = sim["post"]
    frame7, meta = baseline_frames(sim, name, configs["fixed-rule"].windows.window_days)
    frame28, _ = baseline_frames(sim, name, configs["sequential"].windows.window_days)
    relevant = None if not confined else [ALL_COHORTS, COHORTS[0]]
    acts = {
        "fixed-rule": acts_from_verdicts(fixed_rule(frame7, configs["fixed-rule"]), n_streams, looks, name, relevant),
        "kayenta": kayenta_acts(sim),
        "growthbook": growthbook_acts(frame28, n_streams, looks),
        "sequential": acts_from_verdicts(sequential_rule(frame28, configs["sequential"]), n_streams, looks, name, relevant),
    }
    for label, cfg in extra_fixed.items():
        acts[label] = acts_from_verdicts(fixed_rule(frame7, cfg), n_streams, looks, name, relevant)
    result = {}
    for method, a in acts.items():
        hit = a.any(1)
        first = np.where(hit, a.argmax(1), -1)
        hours = (first[hit] + 1) * STEP_H
        reviews = meta["cur_all_n"][np.where(hit)[0], first[hit]]
        result[method] = {
            "streams": n_streams, "acted": int(hit.sum()), "rate": float(hit.mean()),
            "median_hours": float(np.median(hours)) if hit.any() else None,
            "median_reviews": float(np.median(reviews)) if hit.any() else None,
        }
    return result


# ----------------------------------------------------------------------------------- main

CONFIGS = {
    "fixed-rule": PolicyConfig.load(CONFIG_DIR / "policy_fixed_rule.yaml"),
    "sequential": PolicyConfig.load(CONFIG_DIR / "policy.yaml"),
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer streams, daily Netflix clock (< 60 s)")
    parser.add_argument("--no-netflix", action="store_true")
    parser.add_argument("--seed", type=int, default=20240219)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "accuracy.json"))
    parser.add_argument("--real-only", action="store_true", help="only the real-text streams (bench/real_streams.py)")
    parser.add_argument("--no-real", action="store_true", help="skip the real-text streams")
    parser.add_argument("--real-null", type=int, default=None, help="real-text null streams (default 20, --quick 6)")
    parser.add_argument("--real-per-effect", type=int, default=None, help="real-text streams per effect (default 10, --quick 3)")
    parser.add_argument("--jobs", type=int, default=2, help="replay processes for the real-text streams")
    args = parser.parse_args(argv)
    if args.real_only:
        return real_text_streams(args)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n_null, n_eff = (150, 60) if args.quick else (600, 200)
    base_fixed = CONFIGS["fixed-rule"]
    from dataclasses import replace
    extra_fixed = {} if args.quick else {
        f"fixed-rule(n>={m})": replace(base_fixed, defaults=base_fixed.defaults.model_copy(update={"min_sample": m, "min_baseline_sample": m}))
        for m in (600, 1200)
    }
    scenarios = [("null", 0.0, False, n_null)]
    for effect in (0.1, 0.2, 0.3, 0.45, 0.6):
        scenarios.append((f"global+{effect:.0%}", effect, False, n_eff))
    for effect in (0.3, 0.6):
        scenarios.append((f"one-cohort+{effect:.0%}", effect, True, n_eff))
    results = {}
    for name, effect, confined, count in scenarios:
        t0 = time.perf_counter()
        results[name] = run_scenario(name, effect, confined, count, rng, CONFIGS, extra_fixed)
        print(f"  {name}: {count} streams in {time.perf_counter() - t0:.1f} s", flush=True)
    methods = list(results["null"])
    flag_weeks = n_null * POST_DAYS / 7
    table = []
    for m in methods:
        row = {"method": m, "false_rollbacks_per_flag_week": results["null"][m]["acted"] / flag_weeks}
        for name, *_ in scenarios[1:]:
            r = results[name][m]
            row[name] = {"detection": r["rate"], "median_hours": r["median_hours"], "median_reviews": r["median_reviews"]}
        table.append(row)
    print_table(table, scenarios)
    report = {"seed": args.seed, "quick": args.quick, "null_streams": n_null, "effect_streams": n_eff,
              "looks": f"every {STEP_H} h for {POST_DAYS} days", "reviews_per_cohort_week": 400, "cohorts": K,
              "table": table, "raw": results}
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"total {report['seconds']} s -> {args.out}")
    if not args.no_real:
        real_text_streams(args)
    return report


def real_text_streams(args) -> dict:
    """Real review texts on synthetic release schedules through `rollback-assets replay` (bench/real_streams.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import real_streams

    quick = args.quick
    return real_streams.run(n_null=args.real_null or (6 if quick else 20), per_effect=args.real_per_effect or (3 if quick else 10),
                            jobs=args.jobs, netflix=not args.no_netflix)


def _fmt(v, pct=False):
    if v is None:
        return "-"
    return f"{v:.0%}" if pct else f"{v:.0f}"


def print_table(table, scenarios):
    print(f"\n{'method':22s} {'FP/flag-wk':>10s} " + " ".join(f"{name:>22s}" for name, *_ in scenarios[1:]))
    print(f"{'':22s} {'':>10s} " + " ".join(f"{'det% / h / reviews':>22s}" for _ in scenarios[1:]))
    for row in table:
        cells = []
        for name, *_ in scenarios[1:]:
            c = row[name]
            cells.append(f"{_fmt(c['detection'], True)} / {_fmt(c['median_hours'])} / {_fmt(c['median_reviews'])}")
        print(f"{row['method']:22s} {row['false_rollbacks_per_flag_week']:>10.2%} " + " ".join(f"{c:>22s}" for c in cells))


if __name__ == "__main__":
    main()
