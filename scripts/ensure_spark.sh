#!/usr/bin/env bash
# The Spark engine's tests need a Java runtime and delta-spark's jars. The jars come from Maven Central
# through Ivy the first time a SparkSession asks for them (spark.jars.packages); this resolves them once,
# ahead of the tests, so no test pays for (or fails on) the download. Idempotent: fast when both are there.
set -euo pipefail
PY="${1:-.venv/bin/python}"

if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_spark: no Java runtime. Install one (Debian: apt-get install openjdk-17-jre-headless) or run as root." >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

"$PY" -m rollback_assets.engines.spark_session --resolve
