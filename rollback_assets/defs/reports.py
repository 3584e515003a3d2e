"""Reports as assets: the release-health dashboard, refreshed whenever flag actions are."""

from pathlib import Path

import dagster as dg
import pandas as pd

from ..core import dashboard, reporting
from .assets import rollback_decisions
from .flags import flag_actions
from .metadata import code_version, table_value
from .resources import LakeResource

DASHBOARD_DIR = Path("reports") / "release-health"  # under the lake root


@dg.asset(
    group_name="flags",
    deps=[rollback_decisions, flag_actions],
    kinds={"html"},
    code_version=code_version(dashboard, reporting),
    description="Release-health dashboard, one offline HTML page per flag: sentiment per release, decisions and "
                "actions over time, rollbacks, time to mitigation, open holds and approvals.",
)
def release_health(lake: LakeResource) -> dg.MaterializeResult:
    out = Path(lake.root) / DASHBOARD_DIR
    result = dashboard.write(lake.lake(), out)
    summary = [{"flag_key": flag, "rollbacks": h.rollbacks, "open_holds": len(h.open_holds),
                "awaiting_approval": h.awaiting_approval, "page": str(DASHBOARD_DIR / dashboard.file_name(flag))}
               for flag, h in result.items()]
    return dg.MaterializeResult(metadata={
        "index": dg.MetadataValue.path(str(DASHBOARD_DIR / "index.html")),
        "flags": table_value(pd.DataFrame(summary, columns=["flag_key", "rollbacks", "open_holds", "awaiting_approval", "page"]),
                             descriptions={"page": "Relative to the lake root."}),
        **{f"{flag}/rollbacks": h.rollbacks for flag, h in result.items()},
    })
