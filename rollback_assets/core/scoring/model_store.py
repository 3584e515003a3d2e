"""Where trained text models live: `<lake>/models/<version>.pkl` plus a pointer to the current one.

The assets write it (sentiment_model) and read it (scored_sentiment); replay, a Spark job or a notebook
read the same store, so every engine scores with the model the graph chose.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from .calibrated import CalibratedScorer

RETRAIN_GROWTH = 0.2  # retrain once rated feedback has grown by this share since the last fit


class ModelStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def pointer(self) -> dict | None:
        path = self.root / "current.json"
        return json.loads(path.read_text()) if path.exists() else None

    def current(self) -> CalibratedScorer | None:
        """The newest trained model, whether or not it beat the lexicon (the scorer choice decides)."""
        chosen = self.pointer()
        if not chosen:
            return None
        with open(self.root / chosen["file"], "rb") as handle:
            return pickle.load(handle)

    def needs_training(self, rated_rows: int) -> bool:
        """Train the first time, then only once rated feedback grew by RETRAIN_GROWTH: a model per run
        would change every scored row's version for a negligible gain."""
        previous = self.pointer()
        return previous is None or rated_rows >= self.retrain_at(previous["rated_rows"])

    @staticmethod
    def retrain_at(rated_rows: int) -> int:
        return int(rated_rows * (1 + RETRAIN_GROWTH))

    def save(self, model: CalibratedScorer, rated_rows: int) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{model.version}.pkl"
        with open(path, "wb") as handle:
            pickle.dump(model, handle)
        (self.root / "current.json").write_text(json.dumps(
            {"file": path.name, "version": model.version, "rated_rows": rated_rows,
             "use_calibrated": model.validation.calibrated_wins}))
        return path
