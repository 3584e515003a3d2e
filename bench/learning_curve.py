"""Learning curve of the calibrated text model: held-out accuracy and macro-F1 against training rows.

    python bench/learning_curve.py [--netflix PATH] [--generated-rows 200000] [--sizes 500,1000,...]

Why: `calibrated.TRAINING_ROWS` caps the rows a model is fitted on, because fit time grows with rows
while accuracy stops growing; this prints where it stops. Each data set is split once (20 % held out,
stratified, as the model's own validation does); each size N trains on `calibrated.training_sample`
of the rest (the rows the assets would pick) with the model's own parameters, and is judged on the same
held-out rows, beside the lexicon on them. Data: the real Netflix Play Store reviews (read from
../shared/data, never copied) and the demo generator's reviews. Writes bench/results/learning_curve.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rollback_assets.core import demo_data  # noqa: E402
from rollback_assets.core.ratings import weak_labels  # noqa: E402
from rollback_assets.core.scoring.calibrated import PARAMS, fit, training_sample  # noqa: E402
from rollback_assets.core.scoring.lexicon import LexiconScorer  # noqa: E402

NETFLIX = ROOT.parent / "shared" / "data" / "playstore_reviews_netflix.csv"
SIZES = (500, 1_000, 2_000, 4_000, 8_000, 16_000, 24_000, 32_000, 48_000, 64_000)


def netflix(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    return pd.DataFrame({"event_id": raw.reviewId.astype(str), "text": raw.content.fillna("").astype(str),
                         "rating": raw.score.astype("Int64")})


def generated(rows: int) -> pd.DataFrame:
    days = 30
    frame = demo_data.generate(demo_data.DemoSpec(rows_per_day=-(-rows // days), days=days))
    return frame[frame.rating.notna()][["event_id", "text", "rating"]].reset_index(drop=True)


def curve(name: str, frame: pd.DataFrame, sizes: tuple[int, ...]) -> dict:
    labels = weak_labels(frame.rating, pd.Series("stars", index=frame.index))
    frame = frame[labels.notna()].assign(label=labels[labels.notna()].astype(int))
    frame["text"] = frame.text.str.slice(0, PARAMS["max_chars"])
    pool, holdout = train_test_split(frame, test_size=PARAMS["holdout"], random_state=PARAMS["seed"], stratify=frame.label)
    lexicon = f1_score(holdout.label, (LexiconScorer().compound(holdout.text.tolist()) < 0).astype(int), average="macro")
    points = []
    for n in [s for s in sizes if s < len(pool)] + [len(pool)]:
        rows = training_sample(pool, n)
        started = time.perf_counter()
        vectorizer, model = fit(rows.text, rows.label)
        fit_s = time.perf_counter() - started
        predicted = model.predict(vectorizer.transform(holdout.text))
        points.append({"train_rows": len(rows), "fit_s": round(fit_s, 2),
                       "accuracy": round(float(accuracy_score(holdout.label, predicted)), 4),
                       "macro_f1": round(float(f1_score(holdout.label, predicted, average="macro")), 4)})
        print(f"{name:10s} {len(rows):>7,d} {fit_s:8.2f} {points[-1]['accuracy']:9.4f} {points[-1]['macro_f1']:9.4f}", flush=True)
    return {"labelled_rows": len(frame), "holdout_rows": len(holdout), "lexicon_macro_f1": round(float(lexicon), 4),
            "points": points}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--netflix", default=str(NETFLIX), help="the Netflix reviews CSV (skipped when absent)")
    parser.add_argument("--generated-rows", type=int, default=200_000, help="demo rows generated (about 60 %% rated)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="training sizes (the whole pool is added)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "learning_curve.json"))
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(f"{'data':10s} {'rows':>7s} {'fit s':>8s} {'accuracy':>9s} {'macro-F1':>9s}")
    results = {}
    if Path(args.netflix).exists():
        results["netflix"] = curve("netflix", netflix(Path(args.netflix)), sizes)
    results["generated"] = curve("generated", generated(args.generated_rows), sizes)
    for name, result in results.items():
        print(f"{name}: lexicon macro-F1 on the same held-out rows {result['lexicon_macro_f1']:.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
