"""The pure core: schemas, ingestion, attribution, scoring, statistics, policy and flag clients.

Nothing under this package imports Dagster, so the same code runs in a Dagster asset, in the
replay command, in a Spark job or in a notebook.
"""
