# The two commands a new user needs: `make demo` and `make test`. Both set everything up themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: demo test ui bench services

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/rollback-assets demo

# Services the tests talk to for real: PostgreSQL (installed and started if missing; needs root once),
# Debian's Chromium for the browser test (tests/test_ui_browser.py), a Java runtime and delta-spark's jars
# for the Spark engine (resolved from Maven Central once).
services: $(VENV)/.installed
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_spark.sh $(PY)

test: $(VENV)/.installed services
	$(PY) -m pytest

ui: $(VENV)/.installed
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(VENV)/.installed
	$(PY) bench/pipeline.py
	$(PY) bench/accuracy.py
	$(PY) bench/llm.py
	$(PY) bench/flag_latency.py
	$(PY) bench/chaos.py
	$(PY) bench/spark_engine.py
