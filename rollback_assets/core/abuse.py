"""Abuse resistance: one vote per author over a release's whole life, and review bombs said out loud.

Two defences, both only where the source knows the author (`author_hash`):

- The statistic counts authors, not posts (`aggregates.first_votes` / `repeat_votes`, kept in the
  `author_votes` table): each author's first word per flag × release × cohort counts, every later row
  of theirs does not. "First" is over the release's whole history, not over the rows a run happens to
  read, so the assets (which read a window of `sentiment_daily`) count what replay (which reads
  everything) counts, and a patient bomber (one review a week) does not count again in every window.
- A burst of negative posts from few authors is reported, not silently absorbed: `review_bomb_note`
  writes the sentence that goes first in the evidence of the judged release's baseline and decision
  rows (e.g. "suspected review bomb: 300 of 340 negative reviews from 1 author; counted once"), so a
  person reading a decision sees that the numbers exclude a campaign, and sees it also when the cap is
  switched off (`one_vote_per_author: false`) and the campaign is counted in full.
"""

from __future__ import annotations

import pandas as pd

# A suspected bomb: authors with at least BOMB_POSTS_PER_AUTHOR negative posts on one release and cohort
# in one window (an unhappy customer writes one or two), together at least BOMB_MIN_POSTS posts and
# BOMB_MIN_SHARE of the negatives. Below that the cap still applies; it is just not worth a sentence.
BOMB_POSTS_PER_AUTHOR = 5
BOMB_MIN_POSTS = 20
BOMB_MIN_SHARE = 0.25


def review_bomb_note(posts_per_author: pd.Series, negatives: int, counted_once: bool) -> str | None:
    """The sentence for one judged release × cohort × window: None unless few authors wrote a burst of its
    relevant negatives. `posts_per_author`: relevant negative posts per known author (before the
    one-vote cap); `negatives`: all its relevant negative posts."""
    burst = posts_per_author[posts_per_author >= BOMB_POSTS_PER_AUTHOR]
    from_few = int(burst.sum())
    if from_few < BOMB_MIN_POSTS or from_few < BOMB_MIN_SHARE * negatives:
        return None
    authors = len(burst)
    who = "1 author" if authors == 1 else f"{authors} authors"
    counted = ("counted once" if authors == 1 else "each counted once") if counted_once else \
        f"counted {from_few} times (one vote per author is off)"
    return f"suspected review bomb: {from_few} of {negatives} negative reviews from {who}; {counted}"
