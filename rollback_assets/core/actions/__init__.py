"""From a rollback decision to a flag change, exactly once, with an audit row before and after.

    from rollback_assets.core.actions import executor, plan
    p = plan.plan_action(decision, release, backend.get_state(flag), backend=backend.name, policy=policy)
    result = executor.execute_action(lake, backend, p, policy=policy, notifier=notifier, decision=decision)

One concern per module, so each can be read (and changed) without the others:

  plan.py       pure: decision + release + flag state -> ActionPlan. The ladder math, the guards (hold,
                the one cooldown rule, never ramp up) and the per-flag FlagPolicy. No I/O.
  ledger.py     the `flag_actions` audit table: reading rows, plan <-> row, the intent row written
                before anything that can fail, decisions left without a row.
  executor.py   carrying a plan out at most once: the pending row before the backend call, retries with
                backoff, crash reconciliation, resuming a row wherever it stopped, notifications.
  overrides.py  what humans do: holds, approvals, rejections, forced changes and the promotion gate.

Intent before effect (`executor.act`): for an acting decision the `pending` row (decision, flag,
cohort, backend, lineage: the plan's inputs) is written FIRST, before the flag's state is read or
anything else that can fail. A failure at any later point (flag file invalid, a directory, the flag
missing, the backend down, the process killed) leaves that pending row, and `executor.resume` carries
it on at the next sensor tick or the daily upkeep: a row not yet planned (automatic, no `before_*`
state) is planned then from the decision and the flag's state at that time; a planned one is retried
with its stored target. A decision killed before even its intent row is found by
`ledger.unacted_decisions` and acted on then.

Execution (`executor.execute_action`): the `flag_actions` row keyed by `action_id` (the decision id
for automatic actions) is the lock and the ledger:
  applied / rejected / failed  -> terminal: never call the backend again (re-runs, restarts).
  pending                      -> written BEFORE the backend call, only if the row is still as read
                                  (`ledger.write_if_unchanged`, like every write after a read: of two
                                  runs at once one calls, and neither overwrites the other's record; a
                                  row another live run planned is left to it); a failed call leaves it pending
                                  with attempts and a redacted last_error; the next tick retries with
                                  the same idempotency key. If the flag already shows the target
                                  (the process died after the call), the row is reconciled to applied
                                  without calling again.
  awaiting_approval            -> approval mode, an unclear decision, or a backend that wants approval.
  skipped                      -> a guard blocked it (hold, cooldown, would ramp up, already there);
                                  re-evaluated on later ticks, so a decision can act once its hold ends.
"""
