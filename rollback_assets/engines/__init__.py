"""Where the heavy steps (ingest, attribution, scoring, daily aggregation) run, chosen per deployment.

`pandas` runs them in the Dagster process through `core.pipeline` (the default). `spark` runs
`spark_job` as a PySpark job launched through Dagster Pipes (`PipesSubprocessClient`), `databricks`
submits the same job to a Databricks cluster (`PipesDatabricksClient`). Both Spark engines call the
same core functions inside the executors and write the same Delta tables, so everything downstream
(decisions, checks, replay) reads one lake whatever the engine. Nothing here imports Dagster: the
job runs where only PySpark, delta-spark and dagster-pipes are installed.
"""

from __future__ import annotations

import os
from enum import Enum

ENGINE_ENV = "ROLLBACK_ENGINE"


class Engine(str, Enum):
    PANDAS = "pandas"
    SPARK = "spark"
    DATABRICKS = "databricks"


def engine_from_env(environ=None) -> Engine:
    """The engine named by ROLLBACK_ENGINE (default pandas); anything else fails at load, naming the choices."""
    value = (environ if environ is not None else os.environ).get(ENGINE_ENV, Engine.PANDAS.value)
    try:
        return Engine(value.strip().lower())
    except ValueError:
        allowed = ", ".join(e.value for e in Engine)
        raise ValueError(f"{ENGINE_ENV} must be one of {allowed}; got {value!r}") from None
