"""One project's balances contract, read straight from the database through the core's
executors (``ledger.core.reads``): the 20 BALANCE_KEYS from one grouped query.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable

from ledger.core.errors import Refusal
from ledger.core.reads import Run

BALANCE_KEYS = (
    "self_funding_pledged", "self_funding_contributed", "self_funding_outstanding",
    "bid_contracted", "bid_paid_cash", "bid_paid_equity", "bid_paid_in_kind", "bid_unpaid",
    "subsidy_base", "subsidy_earned", "subsidy_released", "subsidy_payable",
    "grant_obligated", "grant_released", "grant_unreleased",
    "advances_outstanding", "fiscal_spent",
    "clawback_assessed", "clawback_collected", "clawback_outstanding",
)


# --- one project's balances contract --------------------------------------------------------


def project_balances(run: Run, code: str, *, as_of: dt.date | None = None, lane: str | None = None) -> dict[str, int]:
    """The project's (or one lane's) balances in fen, all from postings, in one grouped query.

    Project-level quantities (self-funding) are the project's; with a lane they are 0. It reads
    only what the contract needs (the project's rules version and its lanes), not the events
    ``programme.load_project`` replays.
    """
    code = code.strip().upper()
    rules_version, lanes = _project_lanes(run, code)
    funding_model = _funding_model(rules_version)  # refuses an unknown version before a lane
    where, params = ["a.project_code = ?"], [code]
    if as_of is not None:
        where.append("p.value_date <= ?")
        params.append(as_of)
    if lane is not None:
        where.append("a.lane = ?")
        params.append(lanes[lane_number(code, lanes, lane)])
    rows = run(
        "SELECT a.name, j.kind,"
        " SUM(CASE WHEN p.amount_fen > 0 THEN p.amount_fen ELSE 0 END),"
        " SUM(CASE WHEN p.amount_fen < 0 THEN -p.amount_fen ELSE 0 END)"
        " FROM postings p JOIN accounts a ON a.id = p.account_id JOIN journal_entries j ON j.id = p.entry_id"
        " WHERE " + " AND ".join(where) + " GROUP BY a.name, j.kind",
        tuple(params),
    )
    return _contract(rows, funding_model)


def _project_lanes(run: Run, code: str) -> tuple[str, dict[int, str]]:
    """The project's rules version and its lanes (number -> solver USCC), or the refusal."""
    row = next(iter(run("SELECT rules_version FROM projects WHERE code = ?", (code,))), None)
    if row is None:
        raise Refusal("project_must_exist", f"project {code} does not exist; `jiebang projects` lists the codes.")
    lanes = {int(n): uscc for n, uscc in run("SELECT lane_no, solver_uscc FROM lanes WHERE project_code = ?", (code,))}
    return row[0], lanes


def lane_number(code: str, lanes: dict[int, str], solver: str | int) -> int:
    """The lane a user named: ``L2``, ``2`` or the solver's USCC (``ProjectState.lane_of`` too)."""
    text = str(solver).strip().upper()
    if text.startswith("L") and text[1:].isdigit() and int(text[1:]) in lanes:
        return int(text[1:])
    if text.isdigit() and int(text) in lanes:
        return int(text)
    for n, uscc in lanes.items():
        if uscc == text:
            return n
    raise Refusal(
        "lane_must_exist",
        f"project {code} has no lane {text}; its lanes are "
        + ", ".join(f"L{n} {u}" for n, u in sorted(lanes.items())) + ".",
    )


@functools.lru_cache(maxsize=64)
def _funding_model(rules_version: str) -> str:
    """staged_grant or bid_subsidy, from the rules file (read once per process and version)."""
    from funding_rules.loader import get_rules

    return get_rules(rules_version).funding.model


def _contract(rows: Iterable[tuple], funding_model: str) -> dict[str, int]:
    """The 20 BALANCE_KEYS from (account, entry kind, debits, credits) rows."""
    from ledger.programme.chart import family_of

    bal: dict[str, int] = {}
    receivable_debits = receivable_collected = 0
    for name, kind, d, c in rows:
        family = family_of(name)
        if family is None:
            continue
        bal[family] = bal.get(family, 0) + int(d) - int(c)
        if family == "clawback_receivable":
            # A release netted against the clawback (an offset) settles it like a collection.
            if kind in ("collection", "release"):
                receivable_collected += int(c)
            elif kind != "reversal":
                receivable_debits += int(d)

    def g(family: str) -> int:
        return bal.get(family, 0)

    bid_subsidy = funding_model == "bid_subsidy"
    result = {
        "self_funding_pledged": -g("self_funding_pledged"),
        "self_funding_contributed": g("self_funding_contributed"),
        "self_funding_outstanding": g("self_funding_outstanding"),
        "bid_contracted": -g("bid_contracted"),
        "bid_paid_cash": g("bid_paid_cash"),
        "bid_paid_equity": g("bid_paid_equity"),
        "bid_paid_in_kind": g("bid_paid_in_kind"),
        "bid_unpaid": g("bid_unpaid"),
        "subsidy_base": g("bid_paid_cash") if bid_subsidy else 0,
        "subsidy_earned": g("subsidy_expense"),
        # Under bid-subsidy rules the memo release account holds exactly the subsidy paid out,
        # which stays true after a revocation recovers it (earned then drops, released not).
        "subsidy_released": g("grant_released") if bid_subsidy else 0,
        "subsidy_payable": -g("subsidy_payable"),
        "grant_obligated": g("grant_released") + g("grant_unreleased"),
        "grant_released": g("grant_released"),
        "grant_unreleased": g("grant_unreleased"),
        "advances_outstanding": g("advances"),
        "fiscal_spent": g("grant_spent"),
        "clawback_assessed": receivable_debits,
        "clawback_collected": receivable_collected,
        "clawback_outstanding": g("clawback_receivable"),
    }
    assert tuple(result) == BALANCE_KEYS
    return result
