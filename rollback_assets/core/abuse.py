"""Abuse resistance: one vote per author over a release's whole life, and review bombs said out loud.

Two defences, both only where the source knows the author (`author_hash`):

- The statistic counts authors, not posts (`baselines.one_vote_per_author`): each author's first word
  per flag × release × cohort counts, every later row of theirs does not. "First" is over the release's
  whole history, not over the rows a run happens to read: the assets read only the judged window (plus
  the rolling baselines' weeks) while replay reads everything, so without `mark_earlier_votes` an author
  whose first review predates the read would count once more in the assets than in replay, and a
  patient bomber (one review a week) would count again in every new window.
- A burst of negative posts from few authors is reported, not silently absorbed: `review_bomb_note`
  writes the sentence that goes first in the evidence of the judged release's baseline and decision
  rows (e.g. "suspected review bomb: 300 of 340 negative reviews from 1 author; counted once"), so a
  person reading a decision sees that the numbers exclude a campaign, and sees it also when the cap is
  switched off (`one_vote_per_author: false`) and the campaign is counted in full.
"""

from __future__ import annotations

import pandas as pd

# A row of an author who already had a word on the same flag × release × cohort before the rows read:
# it is a repeat vote even when it is the author's first row among them.
VOTED_BEFORE = "voted_before"
VOTE_KEYS = ["author_hash", "attributed_flag", "release_version", "cohort"]

# A suspected bomb: authors with at least BOMB_POSTS_PER_AUTHOR negative posts on one release and cohort
# in one window (an unhappy customer writes one or two), together at least BOMB_MIN_POSTS posts and
# BOMB_MIN_SHARE of the negatives. Below that the cap still applies; it is just not worth a sentence.
BOMB_POSTS_PER_AUTHOR = 5
BOMB_MIN_POSTS = 20
BOMB_MIN_SHARE = 0.25


def mark_earlier_votes(rows: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """`rows` with VOTED_BEFORE: True where the author has a row in `earlier` (rows before the read,
    VOTE_KEYS columns) for the same flag, release and cohort."""
    if rows.empty or earlier.empty or "author_hash" not in rows:
        return rows.assign(**{VOTED_BEFORE: False})
    seen = set(_vote_keys(earlier[earlier.author_hash.notna()]))
    return rows.assign(**{VOTED_BEFORE: (rows.author_hash.notna() & _vote_keys(rows).isin(seen)).to_numpy()})


def _vote_keys(frame: pd.DataFrame) -> pd.Series:
    keys = frame[VOTE_KEYS[0]].astype(str)
    for column in VOTE_KEYS[1:]:
        keys = keys + "\x00" + frame[column].astype(str)
    return keys


def review_bomb_note(posts: pd.DataFrame, counted_once: bool) -> str | None:
    """The sentence for one judged release × cohort × window, from all its posts (before the one-vote
    cap): None unless few authors wrote a burst of its relevant negatives."""
    if posts.empty or "author_hash" not in posts:
        return None
    negative = posts[(posts.sentiment_label == "negative") & ~posts.topic_excluded.astype(bool)]
    per_author = negative.author_hash.dropna().value_counts()
    burst = per_author[per_author >= BOMB_POSTS_PER_AUTHOR]
    from_few = int(burst.sum())
    if from_few < BOMB_MIN_POSTS or from_few < BOMB_MIN_SHARE * len(negative):
        return None
    authors = len(burst)
    who = "1 author" if authors == 1 else f"{authors} authors"
    counted = ("counted once" if authors == 1 else "each counted once") if counted_once else \
        f"counted {from_few} times (one vote per author is off)"
    return f"suspected review bomb: {from_few} of {len(negative)} negative reviews from {who}; {counted}"
