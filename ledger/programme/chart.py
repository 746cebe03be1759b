"""The chart of accounts: the one place that knows how account names are built.

Two books, as in Chinese government accounting's parallel 财务会计 / 预算会计 recording:

fiscal (where the money is)
  Income:Fiscal:Funding:Y2025                  treasury money paid out in 2025 (财政拨款收入)
  Assets:Fiscal:Advances:P:L1                  released grant not yet reported spent (结余)
  Expenses:Fiscal:Grant:P:L1:Equipment         grant spent, by budget category
  Expenses:Fiscal:Subsidy:P:L1                 bid subsidy earned (Urumqi)
  Liabilities:Fiscal:SubsidyPayable:P:L1       subsidy earned, not yet paid (应付政府补贴款)
  Assets:Fiscal:ClawbackReceivable:P:L1        recovery assessed, not yet collected (其他应收款)
  Assets:Fiscal:Bank:Recoveries                recoveries collected, not yet remitted
  Liabilities:Fiscal:DueToFinance              recoveries owed to the finance bureau (应缴财政款)
  Income:Fiscal:RecoveriesOwed:Y2026           contra-income for recoveries collected in 2026
  Expenses:Fiscal:WriteOffs:P                  recoveries written off with approval

memo (commitments, 备查)
  Equity:Memo:Budget:Appropriated:Y2025 / Assets:Memo:Budget:Available:Y2025
  Assets:Memo:Grant:Unreleased:P:L1 / Assets:Memo:Grant:Released:P:L1
  Equity:Memo:SelfFunding:Pledged:P / Assets:Memo:SelfFunding:Outstanding:P
  Assets:Memo:SelfFunding:Contributed:P:Equipment
  Equity:Memo:Bid:Contracted:P:L1 / Assets:Memo:Bid:Unpaid:P:L1
  Assets:Memo:Bid:PaidCash:P:L1, PaidEquity, PaidInKind
  Equity:Memo:Subsidy:Released:P:L1            bid subsidy released to its recipient (Urumqi)
  Assets:Memo:Subsidy:Unreported:P:L1          of which not yet reported spent (its 结余)
  Assets:Memo:Subsidy:Reported:P:L1:Equipment  of which reported spent, by budget category
"""

from __future__ import annotations

import datetime as dt
import re

from ledger.core.errors import Refusal

CATEGORY_SEGMENTS = {"equipment": "Equipment", "business": "Business", "labour": "Labour", "indirect": "Indirect"}
PAYMENT_FORM_SEGMENTS = {"cash": "PaidCash", "equity": "PaidEquity", "in_kind": "PaidInKind"}
PROJECT_CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9\-]{1,38}$")


def check_project_code(code: str) -> str:
    code = code.strip().upper()
    if not PROJECT_CODE_RE.match(code):
        raise Refusal(
            "project_code_must_be_well_formed",
            f"project code {code!r} must be 2–39 capital letters, digits or hyphens, e.g. JM2025-003.",
        )
    return code


def lane(n: int) -> str:
    return f"L{n}"


def year(y: int) -> str:
    return f"Y{y}"


def year_accounts_open_on(y: int) -> dt.date:
    """Year accounts open a year early, so a budget can be recorded before its year begins."""
    return dt.date(y - 1, 1, 1)


# memo book
def budget_available(y: int) -> str:
    return f"Assets:Memo:Budget:Available:{year(y)}"


def budget_appropriated(y: int) -> str:
    return f"Equity:Memo:Budget:Appropriated:{year(y)}"


def grant_unreleased(p: str, n: int) -> str:
    return f"Assets:Memo:Grant:Unreleased:{p}:{lane(n)}"


def grant_released(p: str, n: int) -> str:
    return f"Assets:Memo:Grant:Released:{p}:{lane(n)}"


def self_funding_pledged(p: str) -> str:
    return f"Equity:Memo:SelfFunding:Pledged:{p}"


def self_funding_outstanding(p: str) -> str:
    return f"Assets:Memo:SelfFunding:Outstanding:{p}"


def self_funding_contributed(p: str, category: str) -> str:
    return f"Assets:Memo:SelfFunding:Contributed:{p}:{CATEGORY_SEGMENTS[category]}"


def bid_contracted(p: str, n: int) -> str:
    return f"Equity:Memo:Bid:Contracted:{p}:{lane(n)}"


def bid_unpaid(p: str, n: int) -> str:
    return f"Assets:Memo:Bid:Unpaid:{p}:{lane(n)}"


def bid_paid(p: str, n: int, form: str) -> str:
    return f"Assets:Memo:Bid:{PAYMENT_FORM_SEGMENTS[form]}:{p}:{lane(n)}"


def subsidy_use_released(p: str, n: int) -> str:
    return f"Equity:Memo:Subsidy:Released:{p}:{lane(n)}"


def subsidy_unreported(p: str, n: int) -> str:
    return f"Assets:Memo:Subsidy:Unreported:{p}:{lane(n)}"


def subsidy_reported(p: str, n: int, category: str) -> str:
    return f"Assets:Memo:Subsidy:Reported:{p}:{lane(n)}:{CATEGORY_SEGMENTS[category]}"


# fiscal book
def funding(y: int) -> str:
    return f"Income:Fiscal:Funding:{year(y)}"


def advances(p: str, n: int) -> str:
    return f"Assets:Fiscal:Advances:{p}:{lane(n)}"


def grant_spent(p: str, n: int, category: str) -> str:
    return f"Expenses:Fiscal:Grant:{p}:{lane(n)}:{CATEGORY_SEGMENTS[category]}"


def subsidy_expense(p: str, n: int) -> str:
    return f"Expenses:Fiscal:Subsidy:{p}:{lane(n)}"


def subsidy_payable(p: str, n: int) -> str:
    return f"Liabilities:Fiscal:SubsidyPayable:{p}:{lane(n)}"


def clawback_receivable(p: str, n: int) -> str:
    return f"Assets:Fiscal:ClawbackReceivable:{p}:{lane(n)}"


def recoveries_owed(y: int) -> str:
    """Contra-income: recovered money that is owed back, not the bureau's to spend."""
    return f"Income:Fiscal:RecoveriesOwed:{year(y)}"


RECOVERIES_BANK = "Assets:Fiscal:Bank:Recoveries"
DUE_TO_FINANCE = "Liabilities:Fiscal:DueToFinance"


def write_offs(p: str) -> str:
    return f"Expenses:Fiscal:WriteOffs:{p}"


# Which account families feed which balance in the project contract. Each pattern is matched
# against the project's own accounts (a handful), never against postings.
FAMILIES = {
    "self_funding_pledged": "Equity:Memo:SelfFunding:Pledged:",
    "self_funding_outstanding": "Assets:Memo:SelfFunding:Outstanding:",
    "self_funding_contributed": "Assets:Memo:SelfFunding:Contributed:",
    "bid_contracted": "Equity:Memo:Bid:Contracted:",
    "bid_unpaid": "Assets:Memo:Bid:Unpaid:",
    "bid_paid_cash": "Assets:Memo:Bid:PaidCash:",
    "bid_paid_equity": "Assets:Memo:Bid:PaidEquity:",
    "bid_paid_in_kind": "Assets:Memo:Bid:PaidInKind:",
    "grant_unreleased": "Assets:Memo:Grant:Unreleased:",
    "grant_released": "Assets:Memo:Grant:Released:",
    "advances": "Assets:Fiscal:Advances:",
    "grant_spent": "Expenses:Fiscal:Grant:",
    "subsidy_expense": "Expenses:Fiscal:Subsidy:",
    "subsidy_payable": "Liabilities:Fiscal:SubsidyPayable:",
    "clawback_receivable": "Assets:Fiscal:ClawbackReceivable:",
    "write_offs": "Expenses:Fiscal:WriteOffs:",
    "subsidy_use_released": "Equity:Memo:Subsidy:Released:",
    "subsidy_unreported": "Assets:Memo:Subsidy:Unreported:",
    "subsidy_reported": "Assets:Memo:Subsidy:Reported:",
}


def family_of(account_name: str) -> str | None:
    for family, prefix in FAMILIES.items():
        if account_name.startswith(prefix):
            return family
    return None


_LANE_SEGMENT = re.compile(r"^L([1-9][0-9]*)$")


def project_and_lane(account_name: str) -> tuple[str, int | None] | None:
    """The project code and lane number a chart account's name gives, or None off the chart.

    Project accounts are ``<family prefix><project>[:L<n>][:<more>]``; the name alone fixes
    which project (and lane) an account belongs to, so ``verify`` can check both columns.
    """
    family = family_of(account_name)
    if family is None:
        return None
    rest = account_name[len(FAMILIES[family]):].split(":")
    lane_no = None
    if len(rest) > 1:
        match = _LANE_SEGMENT.match(rest[1])
        lane_no = int(match.group(1)) if match else None
    return rest[0], lane_no
