"""What each day's complaints say in words, kept a day at a time: the part of a decision that needs text.

Why: evidence quotes, new terms and the review-bomb note used to re-read the judged window's negatives
with their text and tokenise them on every run: 28 days of row-level history per decision, most of a
new day's cost. Instead the relevant negatives of a day are summarised once, when `sentiment_daily`
rewrites that day, into `negatives_daily` rows per flag × release × cohort × day × repeat vote:

- total: how many relevant negatives there were (posts);
- term: for each word and word pair (`new_terms.vectorizer`), how many of them contain it. New terms are
  log-odds of document counts, so the window's counts are the sums of its days' counts: the same
  figures a tokenisation of the window's texts gives;
- quote: the EVIDENCE_CANDIDATES most confident distinct complaints per topic, as written (redacted
  when shown, as before). A window's evidence is the best of its days' candidates; cohorts partition
  the rows, so the 'all' cohort's best are among its cohorts' best;
- author: each known author's repeat posts (the ones after their counted first word), for the
  review-bomb note: an author's posts in a window are their repeats there, plus their first word if
  it was a complaint and `author_votes` puts it in the window.

Windows start and end inside days. The days wholly inside a window are read from the table; its edge
days are summarised from their rows cut at the window's edges (`daily` on those rows, `WindowText`). So
what a decision says equals what the rows say, and costs the table's days plus two days of rows,
whatever the history.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import aggregates
from .abuse import review_bomb_note
from .new_terms import rising_from_counts, vectorizer
from .schemas import ALL_COHORTS, NEGATIVES_DAILY
from .scoring.redact import redact_quote

EVIDENCE_CANDIDATES = 20  # per day, group and topic: the most evidence quotes a policy may ask for
GROUP = ["flag_key", "release_version", "cohort", "created_date", "repeat_vote"]


MASK_COLUMNS = ["attributed_flag", "release_version", "sentiment_label", "topic_excluded"]


def relevant_negatives(rows: pd.DataFrame) -> np.ndarray:
    """Mask of the rows the text summaries cover: attributed, negative, on a topic that is not excluded."""
    return (rows.attributed_flag.notna() & rows.release_version.notna()
            & (rows.sentiment_label.astype(str) == "negative") & ~rows.topic_excluded.astype(bool)).to_numpy()


def daily(rows: pd.DataFrame, repeat: np.ndarray) -> pd.DataFrame:
    """NEGATIVES_DAILY rows for `rows` (with text; `repeat`: each row's repeat-vote mark). Whole days in
    the table; any cut of rows (a window's edge day) in `WindowText`."""
    keep = relevant_negatives(rows)
    rows = rows[keep]
    if rows.empty:
        return NEGATIVES_DAILY.empty_frame()
    created_at = aggregates.utc_times(rows.created_at)
    groups = pd.DataFrame({
        "flag_key": rows.attributed_flag.astype(str).to_numpy(), "release_version": rows.release_version.astype(str).to_numpy(),
        "cohort": rows.cohort.astype(str).to_numpy(),
        "created_date": created_at.dt.tz_localize(None).to_numpy().astype("datetime64[D]").astype(object),
        "repeat_vote": np.asarray(repeat, bool)[keep],
    })
    codes = groups.groupby(GROUP, sort=False, dropna=False).ngroup().to_numpy()  # numbered in order of appearance
    keys = groups.drop_duplicates(GROUP).reset_index(drop=True)
    text = rows.text.astype(object).to_numpy()
    parts = [_totals(codes, keys), _terms(codes, keys, text), _quotes(codes, keys, rows, created_at, text),
             _authors(codes, keys, rows)]
    out = pd.concat([p for p in parts if len(p)], ignore_index=True)
    for column, default in (("issue_category", ""), ("value", "")):
        out[column] = out[column].fillna(default)
    return out[NEGATIVES_DAILY.names]


def _totals(codes, keys) -> pd.DataFrame:
    counts = np.bincount(codes, minlength=len(keys))
    return keys.assign(kind="total", value="", count=counts)


def _terms(codes, keys, text) -> pd.DataFrame:
    """Document counts per group and term: each distinct text of the day tokenised once (complaints
    repeat: "crashes", "won't load"), group sums as a matrix product."""
    present = pd.notna(text)
    if not present.any():
        return pd.DataFrame()
    which, distinct = pd.factorize(pd.Series(text[present]).str.slice(0, 2000))
    model = vectorizer()
    try:
        docs = model.fit_transform(distinct).tocsr()
    except ValueError:  # no words at all (empty or stop words only)
        return pd.DataFrame()
    # group x distinct text: how many of the group's negatives say it (duplicates sum)
    membership = sp.csr_matrix((np.ones(len(which)), (codes[present], which)), shape=(len(keys), len(distinct)))
    counts = (membership @ docs).tocoo()
    terms = model.get_feature_names_out()
    return keys.iloc[counts.row].reset_index(drop=True).assign(
        kind="term", value=terms[counts.col], count=counts.data.astype(np.int64))


def _quotes(codes, keys, rows, created_at, text) -> pd.DataFrame:
    """Per group and topic the EVIDENCE_CANDIDATES most confident complaints (earliest first on a tie,
    then by text), near-duplicates (same words, other case or punctuation) once."""
    present = pd.notna(text)
    candidates = pd.DataFrame({
        "code": codes[present], "issue_category": rows.issue_category.astype(str).to_numpy()[present],
        # times as a datetime array (sorted as numbers), not as Timestamp objects
        "confidence": rows.confidence.astype(float).to_numpy()[present], "created_at": created_at.array[present],
        "value": text[present],
    })
    which, distinct = pd.factorize(candidates.value)
    candidates["fingerprint"] = fingerprints(pd.Series(distinct)).to_numpy()[which]  # once per distinct text
    candidates = (most_confident_first(candidates)
                  .drop_duplicates(["code", "issue_category", "fingerprint"])
                  .groupby(["code", "issue_category"], sort=False).head(EVIDENCE_CANDIDATES))
    out = keys.iloc[candidates.code.to_numpy()].reset_index(drop=True)
    # In nanoseconds whatever the rows' unit (Delta reads microseconds), as when the times were Timestamp objects.
    return out.assign(kind="quote", value=candidates.value.to_numpy(), count=1,
                      issue_category=candidates.issue_category.to_numpy(), confidence=candidates.confidence.to_numpy(),
                      created_at=pd.to_datetime(candidates.created_at.array, utc=True).as_unit("ns"))


def _authors(codes, keys, rows) -> pd.DataFrame:
    author = rows.author_hash.to_numpy() if "author_hash" in rows else np.full(len(rows), None, dtype=object)
    repeat = keys.repeat_vote.to_numpy()[codes] & pd.notna(author)
    if not repeat.any():
        return pd.DataFrame()
    counted = pd.DataFrame({"code": codes[repeat], "value": author[repeat].astype(str)}).value_counts().reset_index()
    return keys.iloc[counted.code.to_numpy()].reset_index(drop=True).assign(
        kind="author", value=counted.value.to_numpy(), count=counted["count"].to_numpy())


def most_confident_first(quotes: pd.DataFrame) -> pd.DataFrame:
    """Quotes by confidence, highest first, then earliest first, then by text (no confidence or time goes
    last, as pandas places them). numpy's lexsort on the columns: pandas' multi-key sort_values encodes
    each key first, most of a window's cost at tens of thousands of quotes."""
    return quotes.iloc[_confidence_order(quotes.confidence.to_numpy(float), _sort_times(quotes.created_at),
                                         quotes.value.to_numpy())]


def _confidence_order(confidence: np.ndarray, at: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The order of `most_confident_first` over arrays (`at`: `_sort_times`). The text breaks a tie of
    confidence and time (near-duplicates score alike), so which quote is kept does not depend on the
    order the rows came in: the engines read them in different orders (a Spark task's shuffle)."""
    return np.lexsort((pd.factorize(text, sort=True)[0], at, -confidence))


def _sort_times(times: pd.Series) -> np.ndarray:
    """Times as nanoseconds to sort by (whatever the column's unit: the table's are microseconds, cut
    edge days' nanoseconds, and both parts of a window are sorted together), none last."""
    at = aggregates.utc_times(times).dt.tz_localize(None).to_numpy().astype("datetime64[ns]").view(np.int64).copy()
    at[at == np.iinfo(np.int64).min] = np.iinfo(np.int64).max
    return at


def fingerprints(texts: pd.Series) -> pd.Series:
    """A quote's words, lower case, first 80 characters: near-duplicates share it."""
    return texts.astype(str).str.lower().str.findall(r"\w+").str.join(" ").str.slice(0, 80)


def edge_keys(rows: pd.DataFrame) -> tuple[np.ndarray, list[tuple]]:
    """Each row's (flag, UTC day, release) as a code, and each code's key: grouped on integer codes
    (a group-by on the strings and dates of an edge day's rows cost more than what it decides)."""
    day = aggregates.nanoseconds(rows.created_at) // pd.Timedelta(days=1).value
    codes, (flags, days, versions) = aggregates.factorize_keys(
        [rows.attributed_flag.to_numpy(), day, rows.release_version.to_numpy()])
    days = pd.to_datetime(days, unit="D").date if len(days) else days
    return codes, list(zip(np.asarray(flags).astype(str), days, np.asarray(versions).astype(str)))


def edge_spans(rows: pd.DataFrame) -> tuple[dict[tuple, dict[str, tuple[int, int]]], np.ndarray, list[tuple]]:
    """Per (flag, day) of `rows` (relevant negatives), per release: the first and last time (ns). A
    window's edge on that day keeps all of a release's, none, or a part (`_kept`): only a part needs
    the rows. Per release, because a window that starts when a release went live keeps all of that
    release's day and cuts only its predecessor's. Also each row's key code and the keys (`edge_keys`),
    to pick the rows of the keys a window keeps part of without grouping them again."""
    if rows.empty:
        return {}, np.zeros(0, np.int64), []
    codes, keys = edge_keys(rows)
    at = aggregates.nanoseconds(rows.created_at)
    first = np.full(len(keys), np.iinfo(np.int64).max)
    last = np.full(len(keys), np.iinfo(np.int64).min)
    np.minimum.at(first, codes, at)
    np.maximum.at(last, codes, at)
    spans: dict[tuple, dict[str, tuple[int, int]]] = {}
    for (flag, day, version), lo, hi in zip(keys, first, last):
        spans.setdefault((flag, day), {})[version] = (int(lo), int(hi))
    return spans, codes, keys


def partly_kept(spans: dict[tuple, dict[str, tuple[int, int]]], windows) -> set[tuple]:
    """The (flag, day, release)s that some window (flag, start, end] keeps only part of: the rows a look
    must summarise. A window keeps all of most (a look after the newest row, a release's first day in
    the window starting at its release) or none, and those come from the table or nothing."""
    partly = set()
    for flag, start, end in windows:
        for day, lower, upper in _edges(start, end):
            for version, span in spans.get((flag, day), {}).items():
                if _kept(span, lower, upper) == "part":
                    partly.add((flag, day, version))
    return partly


def _edges(start: pd.Timestamp, end: pd.Timestamp) -> list[tuple]:
    """A window's edge days with the cut each applies: (day, lower or None, upper or None)."""
    first, last = start.date(), end.date()
    return [(day, start if day == first else None, end if day == last else None) for day in sorted({first, last})]


def _kept(span: tuple[int, int] | None, lower: pd.Timestamp | None, upper: pd.Timestamp | None) -> str:
    """How much of a release's complaints on a day (their first and last times, `edge_spans`) the cut
    (lower, upper] keeps: 'none', 'all' or 'part'."""
    if span is None:
        return "none"
    first, last = span
    if (lower is not None and last <= lower.value) or (upper is not None and first > upper.value):
        return "none"
    if (lower is None or first > lower.value) and (upper is None or last <= upper.value):
        return "all"
    return "part"


class WindowText:
    """NEGATIVES_DAILY cells of any window (start, end] of a flag: the days wholly inside it from `days`
    (table rows); an edge day from `days` too when the window keeps all of it, else from `edge_rows`
    (rows with text and `repeat_vote`, cut at the edge)."""

    def __init__(self, days: pd.DataFrame, edge_rows: pd.DataFrame, first_complaints: pd.DataFrame,
                 whole_days: set = frozenset(), spans: dict[tuple, dict[str, tuple[int, int]]] | None = None,
                 rows_read: int | None = None):
        """`first_complaints`: AUTHOR_VOTES rows whose first word was a relevant negative, for (at least) the
        authors with repeat posts in `days` and `edge_rows`. `whole_days`: the dates `days` holds in full
        (every flag's cells of the day). `spans`: `edge_spans` of the edge days' relevant negatives (default:
        of `edge_rows`); `edge_rows` must hold the relevant negatives of each (flag, day, release) a window
        keeps part of (`partly_kept`), or that `days` lacks. `rows_read`: the edge days' rows read (default:
        `edge_rows`), for the step's metadata."""
        self._whole_days = set(whole_days)
        self._spans = edge_spans(edge_rows[relevant_negatives(edge_rows)])[0] if spans is None else spans
        # Per flag, with each row's day as datetime64[D]: a window picks its days by comparing numbers in
        # its own flag's rows, not every flag's rows as dates (7 windows x 28 days of cells cost 0.3 s so).
        self._days = {}
        if len(days):
            codes, distinct = pd.factorize(days.created_date)  # a window's few dozen days, converted once each
            distinct = pd.to_datetime(pd.Series(distinct, dtype=object))
            day = distinct.to_numpy().astype("datetime64[D]")[codes]
            days = days.assign(created_date=distinct.dt.date.to_numpy()[codes])
            self._days = {flag: (days.iloc[rows], day[rows]) for (flag,), rows in _rows_by(days.flag_key.to_numpy()).items()}
        self._edge_rows = edge_rows
        self.edge_rows_read = len(edge_rows) if rows_read is None else rows_read
        # Each (flag, day)'s row positions only: a window reads two days of each flag, so a day's rows
        # are taken when a window cuts it, not split off for every day up front.
        self._edge_at = aggregates.nanoseconds(edge_rows.created_at) if len(edge_rows) else np.zeros(0, np.int64)
        self._edge_days = edge_rows.groupby([edge_rows.attributed_flag.astype(str).to_numpy(), aggregates.utc_dates(
            edge_rows.created_at)], sort=False).indices if len(edge_rows) else {}
        self._edge_cells: dict[tuple, pd.DataFrame] = {}  # an edge day cut one way, for every window cut so
        self._flag_cells: dict[tuple, _Cells] = {}
        self._first_at = {tuple(k): pd.Timestamp(t) for *k, t in first_complaints[
            ["flag_key", "release_version", "cohort", "author_hash", "first_at"]].itertuples(index=False)}

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, history: pd.DataFrame) -> "WindowText":
        """Every day summarised from `rows` (with `repeat_vote`), authors' first words from `history` (the
        rows up to the look, `rows` among them): replay's and compute_baselines' path."""
        votes = aggregates.first_votes(history)
        complaints = history.event_id[relevant_negatives(history)]
        return cls(daily(rows, rows.repeat_vote.to_numpy(bool)), rows, votes[votes.first_event_id.isin(complaints)],
                   set(aggregates.utc_dates(rows.created_at)))

    def posts_per_author(self, authors: pd.DataFrame, flag: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        """Relevant negative posts per author in (start, end]: their repeat posts there (`authors`: author
        cells), and their first word if it was a complaint and falls in the window."""
        if authors.empty:
            return pd.Series(dtype=np.int64)
        per_key = authors.groupby(["release_version", "cohort", "value"], observed=True)["count"].sum()
        first = [start < self._first_at.get((flag, *key), start) <= end for key in per_key.index]
        return (per_key + np.asarray(first, np.int64)).groupby(level="value").sum()

    def _table_day(self, flag: str, day) -> pd.DataFrame | None:
        """The table's cells of one of `flag`'s days, when `days` holds that day (None: summarise rows)."""
        if flag not in self._days or day not in self._whole_days:
            return None
        days, at = self._days[flag]
        return days[at == np.datetime64(day, "D")]

    def flag_cells(self, flag: str, one_vote_per_author: bool) -> "_Cells":
        """`flag`'s table cells of every day `days` holds, grouped once for all of its windows (a window
        takes the days strictly inside it by a mask)."""
        key = (flag, one_vote_per_author)
        if key not in self._flag_cells:
            days, day = self._days.get(flag, (NEGATIVES_DAILY.empty_frame(), np.zeros(0, "datetime64[D]")))
            self._flag_cells[key] = _Cells(days, day, one_vote_per_author)
        return self._flag_cells[key]

    def edge_cells(self, flag: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The cells of the window's first and last days, cut at its edges."""
        parts = []
        for day, lower, upper in _edges(start, end):
            cut = (flag, day, lower, upper)
            if cut not in self._edge_cells:
                self._edge_cells[cut] = self._cut(flag, day, lower, upper)
            parts.append(self._edge_cells[cut])
        return pd.concat([p for p in parts if len(p)] or [NEGATIVES_DAILY.empty_frame()], ignore_index=True)

    def _cut(self, flag: str, day, lower: pd.Timestamp | None, upper: pd.Timestamp | None) -> pd.DataFrame:
        kept = {version: _kept(span, lower, upper) for version, span in self._spans.get((flag, day), {}).items()}
        whole = [version for version, how in kept.items() if how == "all"]
        partly = {version for version, how in kept.items() if how == "part"}
        table = self._table_day(flag, day) if whole else None
        parts = []
        if table is not None:  # the releases the cut keeps whole (a look after the day's last row): the table's cells
            parts.append(table[table.release_version.isin(whole)])
        else:
            partly |= set(whole)
        if partly:
            positions = self._edge_days.get((flag, day), np.zeros(0, np.int64))
            at = self._edge_at[positions]
            rows = self._edge_rows.iloc[positions[((at > lower.value) if lower is not None else True)
                                                  & ((at <= upper.value) if upper is not None else True)]]
            rows = rows[rows.release_version.astype(str).isin(partly).to_numpy()]
            parts.append(daily(rows, rows.repeat_vote.to_numpy(bool)))
        return pd.concat([p for p in parts if len(p)] or [NEGATIVES_DAILY.empty_frame()], ignore_index=True)


def describe(frame: pd.DataFrame, text: WindowText, quotes: int, one_vote_per_author: bool) -> pd.DataFrame:
    """Evidence and new terms of baseline rows (COHORT_BASELINES) from the text cells of their windows."""
    if frame.empty:
        return frame
    frame = frame.copy()
    windows: dict[tuple, _Window] = {}
    described: dict[tuple, tuple[str, str]] = {}
    redacted: dict[str, str] = {}
    for key, group in frame.groupby(["flag_key", "release_version", "cohort", "window_start", "window_end"], sort=False):
        flag, version, cohort, start, end = key
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if (flag, start, end) not in windows:  # one flag's window, grouped once for all its releases and cohorts
            windows[(flag, start, end)] = _Window(text.flag_cells(flag, one_vote_per_author), text.edge_cells(flag, start, end),
                                                  start.date(), end.date(), one_vote_per_author)
        window = windows[(flag, start, end)]
        compared = {v for kind, vs in zip(group.baseline_kind, group.baseline_versions)
                    if kind != "rolling" for v in (vs or "").split(",") if v}
        top = (json.loads(group.top_topics.iloc[0] or "[]") or [[None]])[0][0]
        cohort = None if cohort == ALL_COHORTS else cohort
        picked = evidence(window.quotes(version, cohort, top), quotes, redacted)
        authors = window.authors[(window.authors.release_version == version)
                                 & ((window.authors.cohort == cohort) if cohort else True)]
        bomb = review_bomb_note(text.posts_per_author(authors, flag, start, end), window.posts(version, cohort),
                                one_vote_per_author)
        terms = rising_from_counts(window.vocabulary, window.terms([version], cohort), window.terms(compared, cohort),
                                   window.totals([version], cohort), window.totals(compared, cohort))
        described[key] = (json.dumps([bomb, *picked] if bomb else picked), json.dumps(terms))
    keys = list(zip(frame.flag_key, frame.release_version, frame.cohort, frame.window_start, frame.window_end))
    frame["evidence"] = [described[k][0] for k in keys]
    frame["new_terms"] = [described[k][1] for k in keys]
    return frame


class _Cells:
    """Cells grouped once by what a window asks of them, as arrays with each row's day: term rows coded
    against their sorted vocabulary and located per release x cohort, quotes most confident first and
    located per release x cohort x topic, totals and authors. The counted cells (one vote per author:
    first words only) for the figures, every post for the bomb note."""

    def __init__(self, cells: pd.DataFrame, day: np.ndarray, one_vote_per_author: bool):
        kind = cells.kind.to_numpy()
        counted = ~cells.repeat_vote.to_numpy(bool) if one_vote_per_author else np.ones(len(cells), bool)
        version, cohort, value = (_keyed(cells[c]) for c in ("release_version", "cohort", "value"))
        terms = counted & (kind == "term")
        codes, self.vocabulary = pd.factorize(value[terms], sort=True)  # sorted: ties rank as a fit's vocabulary does
        self.vocabulary = np.asarray(self.vocabulary, dtype=object)
        self.term_codes, self.term_day = codes, day[terms]
        self.term_counts = cells["count"].to_numpy(float)[terms]
        self.term_rows = {**_rows_by(version[terms], cohort[terms]), **_rows_by(version[terms], None)}
        totals = kind == "total"
        self.totals, self.totals_day = cells[counted & totals], day[counted & totals]
        self.posts, self.posts_day = cells[totals], day[totals]
        quotes = np.flatnonzero(counted & (kind == "quote"))
        confidence, at = cells.confidence.to_numpy(float)[quotes], _sort_times(cells.created_at)[quotes]
        order = _confidence_order(confidence, at, value[quotes])
        quotes = quotes[order]
        self.quote_text, self.quote_confidence, self.quote_at = value[quotes], confidence[order], at[order]
        self.quote_day = day[quotes]
        topic = _keyed(cells.issue_category)[quotes]
        self.quote_rows = {**_rows_by(version[quotes], cohort[quotes], topic), **_rows_by(version[quotes], None, topic)}
        self.authors, self.authors_day = cells[kind == "author"], day[kind == "author"]


def _keyed(column: pd.Series):
    """A column to group by: a categorical (the table's few-valued columns) keeps its codes, so
    `_rows_by` never hashes its strings; anything else as a numpy array."""
    return column.array if isinstance(column.dtype, pd.CategoricalDtype) else column.to_numpy()


class _Window:
    """One flag's window: the flag's table cells of the days strictly inside it (`inside`: grouped once
    for all the flag's windows) and its edge days' cells. Every judged release x cohort in it is a few
    lookups."""

    def __init__(self, inside: _Cells, edges: pd.DataFrame, first, last, one_vote_per_author: bool):
        self._first, self._last = np.datetime64(first, "D"), np.datetime64(last, "D")
        # The edge cells are taken whole (cut already), so their days are never compared: any day will do.
        self._inside, self._edges = inside, _Cells(edges, np.full(len(edges), self._first), one_vote_per_author)
        # One vocabulary for both parts; a term of the flag's other days counts zero here, and terms
        # seen fewer than twice are dropped (rising_from_counts), so the figures are the window's own.
        self.vocabulary, *self._remap = _merge_sorted(inside.vocabulary, self._edges.vocabulary)
        totals = _stacked(inside.totals[self._in(inside.totals_day)], self._edges.totals)
        posts = _stacked(inside.posts[self._in(inside.posts_day)], self._edges.posts)
        self._totals, self._posts = _by_key(totals), _by_key(posts)
        self.authors = _stacked(inside.authors[self._in(inside.authors_day)], self._edges.authors)

    def _in(self, day: np.ndarray) -> np.ndarray:
        """Which of the flag's table cells (by their days) lie strictly inside the window."""
        return (day > self._first) & (day < self._last)

    def terms(self, versions, cohort: str | None) -> np.ndarray:
        """Negatives containing each vocabulary term, over `versions` in `cohort` (None: every cohort)."""
        counts = np.zeros(len(self.vocabulary))
        for part, remap in zip((self._inside, self._edges), self._remap):
            rows = [part.term_rows[(v, cohort)] for v in versions if (v, cohort) in part.term_rows]
            if not rows:
                continue
            rows = np.concatenate(rows)
            if part is self._inside:
                rows = rows[self._in(part.term_day[rows])]
            counts += np.bincount(remap[part.term_codes[rows]], weights=part.term_counts[rows], minlength=len(counts))
        return counts

    def totals(self, versions, cohort: str | None) -> int:
        return int(sum(self._totals.get((v, cohort), 0) for v in versions))

    def posts(self, version: str, cohort: str | None) -> int:
        return int(self._posts.get((version, cohort), 0))

    def quotes(self, version: str, cohort: str | None, topic: str | None) -> np.ndarray:
        """The texts of the candidates on `topic`, most confident first (a tie of confidence and time by
        text, whichever part of the window, the days inside or its edges, a candidate came from)."""
        key = (version, cohort, topic)
        inside = self._inside.quote_rows.get(key, np.zeros(0, np.int64))
        inside = inside[self._in(self._inside.quote_day[inside])]
        edge = self._edges.quote_rows.get(key, np.zeros(0, np.int64))
        if not len(edge):
            return self._inside.quote_text[inside]
        if not len(inside):
            return self._edges.quote_text[edge]
        parts = (self._inside, inside), (self._edges, edge)
        confidence, at, text = (np.concatenate([getattr(part, name)[rows] for part, rows in parts])
                                for name in ("quote_confidence", "quote_at", "quote_text"))
        return text[_confidence_order(confidence, at, text)]


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted union of two sorted vocabularies and where each one's terms land in it: the edge
    days add a few terms to the flag's, so they are inserted rather than everything sorted again."""
    pos = np.searchsorted(a, b)
    found = pos < len(a)
    found[found] = a[pos[found]] == b[found]
    new = pos[~found]
    merged = np.insert(a, new, b[~found])
    return merged, np.arange(len(a)) + np.searchsorted(new, np.arange(len(a)), side="right"), np.searchsorted(merged, b)


def _stacked(inside: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """The window's cells from both parts. An empty part is left out: the table's part holds categoricals,
    the edges' part strings, and pandas is changing how an empty frame's dtypes count in a concat."""
    return pd.concat([part for part in (inside, edges) if len(part)] or [inside], ignore_index=True)


def _by_key(totals: pd.DataFrame) -> dict:
    """(version, cohort or None for every cohort) -> count."""
    return {**totals.groupby(["release_version", "cohort"], observed=True)["count"].sum().to_dict(),
            **{(v, None): n for v, n in totals.groupby("release_version", observed=True)["count"].sum().items()}}


def _rows_by(*columns: np.ndarray | None) -> dict[tuple, np.ndarray]:
    """Row positions (ascending) per distinct tuple of the columns' values; a None column is None in every
    key (every cohort). Built from integer codes: grouping string columns with pandas and cutting a
    frame per group cost more than the rest of a window (thousands of release x cohort x topic groups,
    of which a decision reads a few)."""
    present = [c for c in columns if c is not None]
    if not present or len(present[0]) == 0:
        return {}
    codes, values = aggregates.factorize_keys(present)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    per_code = iter(values)
    keys = list(zip(*[[None] * len(values[0]) if c is None else next(per_code) for c in columns]))
    return dict(zip(keys, np.split(order, bounds)))


def evidence(quotes, wanted: int, redacted: dict | None = None) -> list[str]:
    """The most confident distinct complaints: what a reviewer should read first. `quotes`: one topic's
    candidate texts, most confident first (`_Window.quotes`). Near-duplicates count once; redacted one
    by one until enough (redaction is the cost), as a person reads them and as the LLM's input is
    redacted. `redacted`: quotes already redacted in this step (the same complaint heads a release's
    'all' cohort and its own), by text."""
    if wanted == 0 or len(quotes) == 0:
        return []
    picked: dict[str, str] = {}
    redacted = {} if redacted is None else redacted
    for text in quotes:
        quote = redacted[text] = redacted[text] if text in redacted else redact_quote(text)
        picked.setdefault(" ".join(re.findall(r"\w+", quote.lower()))[:80], quote)
        if len(picked) == wanted:
            break
    return list(picked.values())
