"""Reports as assets, refreshed whenever flag actions are: the release-health dashboard and one
postmortem per decision that caused a flag action."""

from functools import partial
from pathlib import Path

import dagster as dg
import pandas as pd

from ..core import dashboard, postmortem, reporting
from ..core.schemas import FLAG_ACTIONS
from .assets import rollback_decisions
from .flags import flag_actions
from .metadata import POSTMORTEM_DIR, REPORTS_DIR, code_version, postmortem_page, table_value
from .resources import LakeResource, SettingsResource

DASHBOARD_DIR = REPORTS_DIR / "release-health"
# Both reports are pages computed from the lake alone, stale whenever decisions or flag actions change.
report_asset = partial(dg.asset, group_name="flags", deps=[rollback_decisions, flag_actions], kinds={"html"})


@report_asset(
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


@report_asset(
    code_version=code_version(postmortem, reporting),
    description="One postmortem (HTML + Markdown) per decision that caused a flag action: the decision, a timeline, "
                "cohorts, evidence, the actions, and its figures recomputed from the Delta versions it names.",
)
def postmortems(lake: LakeResource, settings: SettingsResource) -> dg.MaterializeResult:
    the_lake = lake.lake()
    audit = the_lake.read(FLAG_ACTIONS, columns=["decision_id"]) if the_lake.exists(FLAG_ACTIONS) else pd.DataFrame(columns=["decision_id"])
    out = Path(lake.root) / POSTMORTEM_DIR
    rows = []
    for decision_id in sorted(set(audit.decision_id.dropna())):
        report = postmortem.build(the_lake, decision_id, settings.policy())
        postmortem.write(report, out)  # rewritten each time: the flag actions section grows
        rows.append({"decision_id": decision_id, "flag_key": report.decision["flag_key"],
                     "recomputed_matches": report.matches, "page": postmortem_page(decision_id)})
    frame = pd.DataFrame(rows, columns=["decision_id", "flag_key", "recomputed_matches", "page"])
    return dg.MaterializeResult(metadata={
        "postmortems": table_value(frame, descriptions={"page": "Relative to the lake root.",
                                                        "recomputed_matches": "Figures recomputed by time travel equal the stored decision."}),
        "all_recomputed_match": bool(frame.recomputed_matches.all()) if len(frame) else True,
    })
