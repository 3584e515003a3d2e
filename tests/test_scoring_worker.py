"""Where chunks are scored (core/scoring/worker.py): a worker process for an offline scorer on a large run,
the step's own process otherwise; the worker scores as the step would, and ends with the step's process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa

from rollback_assets.core.scoring import worker
from rollback_assets.core.scoring.lexicon import LexiconScorer
from rollback_assets.core.scoring.llm import LLMConfig, LLMScorer
from rollback_assets.core.taxonomy import Taxonomy


def test_an_offline_scorer_scores_in_a_worker_process_and_an_llm_scorer_in_the_steps(monkeypatch):
    """The worker for the lexicon or the calibrated model when a run has two chunks or more; the step's own
    process for one chunk (a worker's start costs more than a chunk saves), on one core, and for an LLM
    scorer (its budget, cache and key stay in the step's process). Both score alike."""
    taxonomy = Taxonomy.load()
    llm = LLMScorer("openai", LLMConfig(api_key="sk-test-not-used", base_url="http://127.0.0.1:9/v1"), taxonomy)
    assert isinstance(worker.scoring(llm, taxonomy, 5), worker.InProcess)
    assert isinstance(worker.scoring(LexiconScorer(), taxonomy, 1), worker.InProcess)
    with monkeypatch.context() as one_core:
        one_core.setattr(worker.os, "cpu_count", lambda: 1)
        assert isinstance(worker.scoring(LexiconScorer(), taxonomy, 5), worker.InProcess)
    rows = pa.table({"text": ["love it", "terrible: the checkout crashes and I hate it", None], "rating": [None, None, 5.0],
                     "rating_scale": [None, None, "stars"], "sentiment_from": ["text", "text", "rating"]})
    process = worker.scoring(LexiconScorer(), taxonomy, 5)
    try:
        assert isinstance(process, worker.WorkerProcess)
        in_worker = process.submit(rows).result()
    finally:
        process.close()
    expected = worker.InProcess(LexiconScorer(), taxonomy).submit(rows).result()
    assert in_worker.equals(expected)
    assert in_worker.column("sentiment_label").to_pylist() == ["positive", "negative", "positive"]


def test_a_worker_ends_when_the_steps_process_is_killed():
    """kill -9 of the step's process (the OOM killer, a cancelled run's last resort) must not leave its
    worker waiting for chunks for ever with the scorer's memory."""
    script = textwrap.dedent("""
        import os, pathlib, time
        from rollback_assets.core.scoring import worker
        from rollback_assets.core.scoring.lexicon import LexiconScorer
        from rollback_assets.core.taxonomy import Taxonomy
        if __name__ == "__main__":
            process = worker.WorkerProcess(LexiconScorer(), Taxonomy.load())
            children = set()
            while not children:  # the worker (and multiprocessing's resource tracker)
                children = {pid for task in pathlib.Path("/proc/self/task").iterdir()
                            for pid in (task / "children").read_text().split()}
                time.sleep(0.05)
            print(" ".join(sorted(children)), flush=True)
            time.sleep(600)
    """)
    step = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        children = [int(pid) for pid in step.stdout.readline().split()]
        assert children, "the step's process started no worker"
        assert all(_alive(pid) for pid in children)
    finally:
        step.send_signal(signal.SIGKILL)
        step.wait()
    deadline = time.monotonic() + 10 * worker.PARENT_POLL_SECONDS + 20  # the worker may still be importing
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "a process of the killed step lived on"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped by its new parent, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
