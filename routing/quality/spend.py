"""The gateway's own quality checks are spend like any other: on the ledger, under the budgets.

Shadow evaluations and semantic cache re-asks run under budget holds on the checked
request's budgets (skipped when they cannot cover it, or degrade its routing), and their
cost lands on the ledger, in `cost` and `quality_cost`, in the transaction that stores the
check. See docs/quality.md.
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
