"""The gateway's own quality checks are spend like any other: on the ledger, under the budgets.

Shadow evaluations (`routing.quality.shadow`) and semantic cache re-asks (`routing.cache.semantic`)
call models, and the providers bill those calls like any request's. So:

- each check's calls run under budget holds, on the budgets of the request it checks,
  exactly as a request's cascade does, failed calls billed as a request's are. A check
  its budgets cannot cover is not run: a quality measurement is never worth overspending
  a hard limit. Nor is one run while a budget degrades the request's routing (past a soft
  limit, or a non-blocking hard one): the operator asked for cheaper traffic there.
- what a check cost lands in the ledger in the transaction that stores its result: on the
  checked request's team, app, key, policy, end user and tags, on the day the check ran,
  in `cost` (so the ledger matches the provider's invoice) and again in `quality_cost`
  (so finance sees the part spent on checks), with no requests.

`routing.records.reconcile` rebuilds the same lines from the stored checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from billing.budgets.rules import BudgetRule, Degrade, Requester, applicable
from billing.budgets.store import budget_rules_load
from billing.ledger.services import ledger_append
from routing.engine.types import PolicySnapshot, Tier
from routing.models import RequestRecord
from routing.records.ledger import CheckCall, check_lines


class ChecksPaused(Exception):
    """A budget that covers the checked request degrades its routing: checks wait."""


def checks_allowed(degrade: Degrade) -> None:
    """Raise `ChecksPaused` when the budgets degrade the checked request's routing."""
    if degrade.any:
        raise ChecksPaused(f"quality checks are paused while the budget '{degrade.because}' degrades routing")


def check_budgets(record: RequestRecord) -> list[BudgetRule]:
    """The enabled budgets that apply to the request a check is about."""
    who = Requester(
        team=record.team,
        app=record.app,
        api_key_prefix=record.api_key_prefix,
        policy=record.policy_name,
        end_user=record.end_user,
    )
    return applicable(budget_rules_load(), who)


def tier_alone(policy: PolicySnapshot, tier: Tier) -> PolicySnapshot:
    """`policy` reduced to one tier: what a budget hold for one call to `tier` reserves."""
    return dataclasses.replace(policy, tiers=(tier,), task_rules=(), max_escalations=0, short_prompt_tokens=0)


def check_ledger_append(record: RequestRecord, calls: Iterable[CheckCall], at: datetime) -> None:
    """Put a check's spend on the ledger; call it in the transaction that stores the check."""
    lines = check_lines(record, list(calls), at)
    if lines:
        ledger_append(lines=lines)
