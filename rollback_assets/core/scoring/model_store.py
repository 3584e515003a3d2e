"""Where trained text models live: `<lake>/models/<version>.pkl` plus a pointer to the current one.

The assets write it (sentiment_model) and read it (scored_sentiment); replay, a Spark job or a notebook
read the same store, so every engine scores with the model the graph chose. It sits under the lake
root, local or object storage (`core/storage.Files`).
"""

from __future__ import annotations

import json
import pickle

from ..storage import Files
from .calibrated import CalibratedScorer

POINTER = "current.json"
RETRAIN_GROWTH = 0.2  # retrain once rated feedback has grown by this share since the last fit


class ModelStore:
    def __init__(self, files: Files):
        self.files = files

    def pointer(self) -> dict | None:
        return json.loads(self.files.read_bytes(POINTER)) if self.files.exists(POINTER) else None

    def current(self) -> CalibratedScorer | None:
        """The newest trained model, whether or not it beat the lexicon (the scorer choice decides)."""
        chosen = self.pointer()
        return pickle.loads(self.files.read_bytes(chosen["file"])) if chosen else None

    def needs_training(self, rated_rows: int) -> bool:
        """Train the first time, then only once rated feedback grew by RETRAIN_GROWTH: a model per run
        would change every scored row's version for a negligible gain."""
        previous = self.pointer()
        return previous is None or rated_rows >= self.retrain_at(previous["rated_rows"])

    @staticmethod
    def retrain_at(rated_rows: int) -> int:
        return int(rated_rows * (1 + RETRAIN_GROWTH))

    def save(self, model: CalibratedScorer, rated_rows: int) -> str:
        """The model file first, then the pointer: a reader sees the old model or the new one, whole."""
        name = f"{model.version}.pkl"
        uri = self.files.write_bytes(name, pickle.dumps(model))
        self.files.write_bytes(POINTER, json.dumps(
            {"file": name, "version": model.version, "rated_rows": rated_rows,
             "use_calibrated": model.validation.calibrated_wins}).encode())
        return uri
