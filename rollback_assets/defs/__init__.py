"""The thin Dagster shell: assets, checks, sensors and resources wiring the pure core."""
