"""The programme domain: parties, budgets, projects and their events, folded from the journal.

Each business event is one service in a module of its family (``parties``, ``budget``,
``approval``, ``self_funding``, ``bids``, ``stages``, ``releases``, ``spending``,
``closing``, ``reversal``); each checks the rules the project is pinned to and posts one
journal entry carrying its facts, from which ``fold`` derives every programme table
(``projection`` writes and checks them). This package is the only code that applies the
rules and writes programme rows. Its public names are re-exported here, so callers say
``from ledger.programme import release``; lazily (PEP 562), so that importing one module of
the package (``ledger.programme.reads`` for the fast balances read) does not import them all.
"""

from __future__ import annotations

import importlib

# public name -> the module of this package that defines it
_WHERE = {
    "ApprovalInput": "approval",
    "parse_budget_line": "approval",
    "BALANCE_KEYS": "balances",
    "CATEGORIES": "common",
    "condition_hint": "state",
    "Misuse": "closing",
    "PAYMENT_FORMS": "common",
    "PartyInput": "parties",
    "PartyYearInput": "parties",
    "ProjectState": "state",
    "STAGES": "fold",
    "TrancheView": "state",
    "appropriate": "budget",
    "approve_project": "approval",
    "available_budget": "budget",
    "bid_contract": "bids",
    "bid_pay": "bids",
    "change_project": "recorded",
    "project_facts": "recorded",
    "close": "closing",
    "collect": "closing",
    "contribute": "self_funding",
    "eliminate_lane_postings": "closing",
    "extend": "closing",
    "extension_months_by_project": "state",
    "load_project": "state",
    "lock": "common",
    "pinned_rules": "state",
    "pledge": "self_funding",
    "project_balances": "balances",
    "project_folds": "state",
    "project_state": "state",
    "record_stage": "stages",
    "recover_balance": "closing",
    "register_party": "parties",
    "update_party": "parties",
    "release": "releases",
    "remit": "closing",
    "reverse_event": "reversal",
    "spend": "spending",
    "terminate": "closing",
    "tranche_views": "state",
    "write_off": "closing",
}



def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger.programme' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ledger.programme.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
