"""Where a step's chunks are scored: in a second process beside the step, or in the step's own.

Scoring is most of a large run's time and holds one core (its Python holds the GIL), and Dagster's
in-process executor runs nothing beside it. An offline scorer (`registry.runs_offline`: no network,
budget or cache state) is therefore sent once to a spawned worker process that scores each chunk it is
given, while the step's process writes the chunk before and sums its days on the other core (at 1M rows
the worker's start, ~1.5 s, is repaid several times over). An LLM scorer stays in the step's process:
its budget, cache table and key live there, and it waits on the network, not on a core. Spawned, not
forked: the Dagster process runs threads.

Both kinds return the same thing, `score_fields`: the SCORE_COLUMNS fields of a chunk's rows as Arrow
(Arrow crosses a process boundary as buffers, a frame of Python strings one object at a time).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

import pyarrow as pa

from ..schemas import SCORE_COLUMNS, SCORE_FIELDS, Table
from ..taxonomy import Taxonomy
from .base import Scorer, score_frame
from .registry import runs_offline

_SCORE_FIELDS_ONLY = Table("score_fields", SCORE_COLUMNS, key=())
PARENT_POLL_SECONDS = 0.5  # how often a worker checks that the step's process is alive


def score_fields(scorer: Scorer, taxonomy: Taxonomy, rows: pa.Table) -> pa.Table:
    """`score_frame` of the rows (the columns it reads), as the SCORE_COLUMNS fields in the rows' order."""
    scored = score_frame(scorer, taxonomy, rows.to_pandas())
    return _SCORE_FIELDS_ONLY.to_arrow(scored[list(SCORE_FIELDS)].reset_index(drop=True))


class InProcess:
    """Scores a chunk when it is submitted, in this process (`ahead`: chunks submitted before the oldest
    result is taken; none here, so no second chunk's scores wait in memory)."""

    ahead = 0
    where = "step process"

    def __init__(self, scorer: Scorer, taxonomy: Taxonomy):
        self.scorer, self.taxonomy = scorer, taxonomy

    def submit(self, rows: pa.Table) -> Future:
        done: Future = Future()
        done.set_result(score_fields(self.scorer, self.taxonomy, rows))
        return done

    def close(self) -> None:
        pass


class WorkerProcess:
    """Scores submitted chunks in order in one spawned process holding the scorer and the taxonomy. One
    chunk waits queued behind the one being scored (`ahead`), so the worker never idles while the step
    handles a result. A worker that dies fails the step (BrokenProcessPool) like any error in it; a step
    process that dies (kill -9, the OOM killer) takes its worker with it (`_exit_with_parent`): an idle
    worker would otherwise wait on its queue for ever, holding the scorer's memory."""

    ahead = 1
    where = "worker process"

    def __init__(self, scorer: Scorer, taxonomy: Taxonomy):
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_load,
                                         initargs=(pickle.dumps((scorer, taxonomy)), os.getpid()))
        self._pool.submit(os.getpid)  # starts the process now: its imports overlap the step's first read

    def submit(self, rows: pa.Table) -> Future:
        return self._pool.submit(_score_loaded, rows)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def scoring(scorer: Scorer, taxonomy: Taxonomy, chunks: int) -> InProcess | WorkerProcess:
    """A worker process for an offline scorer and a run of two chunks or more on a machine with a second
    core; this process otherwise (a day's run is one chunk: a worker's start would cost more than it saves)."""
    if chunks >= 2 and (os.cpu_count() or 1) >= 2 and runs_offline(scorer):
        return WorkerProcess(scorer, taxonomy)
    return InProcess(scorer, taxonomy)


_loaded: tuple[Scorer, Taxonomy] | None = None  # the worker process's scorer and taxonomy


def _load(payload: bytes, parent: int) -> None:
    global _loaded
    _loaded = pickle.loads(payload)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="exit-with-parent").start()


def _exit_with_parent(parent: int) -> None:
    """Ends the worker once its parent is gone (it is then adopted by another process): a process pool's
    worker only notices a dead parent when it next writes a result."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _score_loaded(rows: pa.Table) -> pa.Table:
    return score_fields(*_loaded, rows)
