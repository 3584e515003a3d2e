"""The heavy assets when ROLLBACK_ENGINE is spark or databricks: the Spark job, launched through Pipes.

`raw_feedback` + `enriched_feedback` are one multi-asset (one launch: ingest, then attribution), and
`scored_sentiment` + `sentiment_daily` a second launch after `sentiment_model` (scoring, then the daily
aggregation), so the model trained on this run's rows scores them, as with the pandas engine. Asset
keys, dependencies, the op name the landing-zone sensor configures (`raw_feedback`) and the metadata
keys are those of the pandas assets: checks, sensors, the decision side and the UI do not depend on
the engine.
"""

import os
import sys

import dagster as dg

from ..core import attribution, ingest as ingest_module
from ..core.schemas import TABLES
from ..core.scoring import base as scoring_base
from ..engines import Engine, spark_aggregate, spark_job
from .assets import (
    DAILY_DESCRIPTION, FEEDBACK_ASSETS, SCORED_DESCRIPTION, IngestConfig, enriched_feedback, raw_feedback, release_artifacts,
    sentiment_model,
)
from .metadata import code_version, column_schema
from .resources import LakeResource, LandingZoneResource, ScorerResource, SettingsResource

JOB_MODULE = "rollback_assets.engines.spark_job"


class SparkJobLauncher(dg.ConfigurableResource):
    """Runs the Spark job: `launch` returns its materializations. Subclasses pick where it runs."""

    def launch(self, context: dg.AssetExecutionContext, extras: dict, env: dict) -> list[dg.MaterializeResult]:
        raise NotImplementedError


class LocalSparkLauncher(SparkJobLauncher):
    """`python -m rollback_assets.engines.spark_job` in a subprocess (PipesSubprocessClient), a local
    Spark (`master`, e.g. local[2]) or whatever `spark.master` its environment sets."""

    master: str | None = "local[2]"

    def launch(self, context, extras, env):
        invocation = dg.PipesSubprocessClient().run(
            context=context, command=[sys.executable, "-m", JOB_MODULE], extras={**extras, "master": self.master}, env=env)
        return list(invocation.get_results())


class DatabricksLauncher(SparkJobLauncher):
    """The same job submitted to Databricks (PipesDatabricksClient, one-time run on a new cluster).

    `python_file` is the job's entry script on the workspace (e.g. dbfs:/rollback/spark_job_main.py,
    which calls `rollback_assets.engines.spark_job.main()`), `libraries` installs this package there
    (e.g. [{"whl": "dbfs:/rollback/rollback_assets-0.1.0-py3-none-any.whl"}]). The token comes from the
    environment (DATABRICKS_TOKEN) and never reaches logs or metadata.
    """

    host: str
    token: str
    python_file: str
    spark_version: str = "15.4.x-scala2.12"
    node_type_id: str = "i3.xlarge"
    num_workers: int = 2
    libraries: list[dict] = []
    author_salt_secret: str | None = None  # e.g. {{secrets/rollback/author_salt}}: resolved by Databricks
    poll_interval_seconds: float = 5.0
    message_interval_seconds: float = 10.0

    def launch(self, context, extras, env):
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config
        from databricks.sdk.service import jobs
        from dagster_databricks import PipesDatabricksClient
        from dagster_databricks.pipes import PipesDbfsMessageReader

        workspace = WorkspaceClient(config=Config(host=self.host, token=self.token, retry_timeout_seconds=60))
        client = PipesDatabricksClient(
            client=workspace, poll_interval_seconds=self.poll_interval_seconds,
            message_reader=PipesDbfsMessageReader(client=workspace, interval=self.message_interval_seconds),
        )
        spark_env = {spark_job.SALT_ENV: self.author_salt_secret} if self.author_salt_secret else {}
        task = jobs.SubmitTask.from_dict({
            "task_key": "rollback_heavy_steps",
            "new_cluster": {"spark_version": self.spark_version, "node_type_id": self.node_type_id,
                            "num_workers": self.num_workers, "spark_env_vars": spark_env},
            "libraries": self.libraries,
            "spark_python_task": {"python_file": self.python_file, "parameters": ["--pipes", "dbfs"]},
        })
        invocation = client.run(context=context, task=task, extras=extras,
                                submit_args={"run_name": f"rollback-assets {context.run_id[:8]}"})
        return list(invocation.get_results())


def _launch(context, launcher: SparkJobLauncher, extras: dict, landing: LandingZoneResource | None = None):
    env = {spark_job.SALT_ENV: landing.author_salt} if landing is not None and landing.author_salt else {}
    for result in launcher.launch(context, extras, env):
        table = TABLES[result.asset_key.to_user_string()]
        # Column schema and path on the Dagster side: one home for the schema metadata of every engine.
        path = dg.MetadataValue.path(f"{extras['lake'].rstrip('/')}/{table.name}")
        yield dg.MaterializeResult(
            asset_key=result.asset_key, data_version=result.data_version, tags=result.tags,
            metadata={**result.metadata, "delta_path": path, "dagster/column_schema": column_schema(table)},
        )


@dg.multi_asset(
    name="raw_feedback",  # the op name the landing-zone sensor configures, as with the pandas asset
    specs=[
        dg.AssetSpec("raw_feedback", group_name="ingest", kinds={"deltalake", "spark"},
                     code_version=code_version(spark_job, ingest_module), description=raw_feedback.descriptions_by_key[raw_feedback.key]),
        dg.AssetSpec("enriched_feedback", group_name="attribution", kinds={"deltalake", "spark"},
                     deps=["raw_feedback", "release_artifacts"], code_version=code_version(spark_job, attribution),
                     description=enriched_feedback.descriptions_by_key[enriched_feedback.key]),
    ],
)
def spark_ingest_and_attribute(context: dg.AssetExecutionContext, config: IngestConfig, lake: LakeResource,
                               landing: LandingZoneResource, settings: SettingsResource, spark_job_launcher: SparkJobLauncher):
    extras = {"steps": ["ingest", "attribute"], "lake": lake.root, "landing": landing.path,
              "mapping_dir": landing.mapping_dir, "files": config.files,
              "cohort_dimensions": list(settings.cohort_dimensions), "taxonomy_path": settings.taxonomy_path}
    yield from _launch(context, spark_job_launcher, extras, landing)


@dg.multi_asset(
    name="scored_sentiment",
    specs=[
        dg.AssetSpec("scored_sentiment", group_name="scoring", deps=[enriched_feedback, sentiment_model],
                     kinds={"deltalake", "spark"}, code_version=code_version(spark_job, scoring_base),
                     description=SCORED_DESCRIPTION),
        dg.AssetSpec("sentiment_daily", group_name="decisions", deps=["scored_sentiment", release_artifacts],
                     kinds={"deltalake", "spark"}, code_version=code_version(spark_aggregate),
                     description=DAILY_DESCRIPTION),
    ],
    can_subset=True,
)
def spark_score_and_aggregate(context: dg.AssetExecutionContext, lake: LakeResource, scorer: ScorerResource,
                              settings: SettingsResource, spark_job_launcher: SparkJobLauncher):
    """One launch scores and aggregates (a Spark job's start costs more than either step on a day's rows);
    either alone when only it is selected (a re-derivation of the daily tables, say)."""
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    steps = [step for step, key in (("score", "scored_sentiment"), ("aggregate", "sentiment_daily")) if key in selected]
    extras = {"steps": steps, "lake": lake.root, "taxonomy_path": settings.taxonomy_path}
    if "score" in steps:  # the scorer chosen here as the pandas asset chooses it
        extras["scorer"] = spark_job.dump_scorer(scorer.scorer(lake, settings.taxonomy()))
    yield from _launch(context, spark_job_launcher, extras)


SPARK_REPLACES = {raw_feedback.key, enriched_feedback.key, dg.AssetKey("scored_sentiment"), dg.AssetKey("sentiment_daily")}


def feedback_assets(engine: Engine) -> list:
    """The graph's assets for an engine: the pandas ones, with the heavy steps swapped for the Spark job."""
    if engine is Engine.PANDAS:
        return list(FEEDBACK_ASSETS)
    kept = [a for a in FEEDBACK_ASSETS if not set(a.keys) & SPARK_REPLACES]
    return [spark_ingest_and_attribute, spark_score_and_aggregate, *kept]


def launcher_from_env(engine: Engine) -> SparkJobLauncher | None:
    """ROLLBACK_SPARK_MASTER for the local launcher; DATABRICKS_HOST / DATABRICKS_TOKEN and
    ROLLBACK_DATABRICKS_PYTHON_FILE (+ optional cluster settings) for Databricks."""
    if engine is Engine.SPARK:
        return LocalSparkLauncher(master=os.environ.get("ROLLBACK_SPARK_MASTER", "local[2]"))
    if engine is Engine.DATABRICKS:
        missing = [v for v in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "ROLLBACK_DATABRICKS_PYTHON_FILE") if not os.environ.get(v)]
        if missing:
            raise ValueError(f"ROLLBACK_ENGINE=databricks needs {', '.join(missing)}")
        return DatabricksLauncher(
            host=os.environ["DATABRICKS_HOST"], token=dg.EnvVar("DATABRICKS_TOKEN"),
            python_file=os.environ["ROLLBACK_DATABRICKS_PYTHON_FILE"],
            **{k: v for k, v in {
                "spark_version": os.environ.get("ROLLBACK_DATABRICKS_SPARK_VERSION"),
                "node_type_id": os.environ.get("ROLLBACK_DATABRICKS_NODE_TYPE"),
                "num_workers": os.environ.get("ROLLBACK_DATABRICKS_WORKERS"),
                "author_salt_secret": os.environ.get("ROLLBACK_DATABRICKS_SALT_SECRET"),
            }.items() if v},
        )
    return None
