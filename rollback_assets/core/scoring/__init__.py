"""Scorers turn feedback text into sentiment, label and confidence; the taxonomy adds the topic."""

from .base import Scorer, score_frame

__all__ = ["Scorer", "score_frame"]
