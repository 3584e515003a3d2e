"""One reading of "a time in UTC" for every module that compares times with stored ones.

Audit rows, releases and decisions store aware UTC timestamps; callers hand in naive datetimes (a CLI
argument, a YAML value, a test's constant) or aware ones in another zone. Comparing those directly
either raises (naive vs aware) or is silently off by the zone, so everything goes through `utc`.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd


def utc(value: datetime | str | pd.Timestamp | None = None) -> pd.Timestamp:
    """`value` as an aware UTC timestamp: naive means UTC, aware is converted; None means now."""
    stamp = pd.Timestamp(value if value is not None else datetime.now(timezone.utc))
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
