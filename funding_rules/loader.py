"""Load, validate and select the versioned city rules files in ``funding_rules/rules/``.

A rules file is TOML. Every policy parameter is an inline table ``{ value = ..., source = ... }``
so the clause travels with the number into every report. Amounts and rates are strings (never
TOML floats, which are binary); ``"none"`` means "no limit" or "not applicable", and the source
says which. A new city or policy version is a new file, never new code. Validation is strict:
the first problem is refused with the file, the key and the reason in one line.

A loaded file carries a fingerprint: the SHA-256 of its parsed document in canonical JSON, so
comments, whitespace and key order do not change it but any value or source text does. A
project is pinned to a version and its fingerprint at approval; ``get_rules(version,
fingerprint=...)`` refuses a file edited in place since, because a change of policy is a new
file with a new ``version``, never an edit of the one projects were approved under.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ledger.core.errors import Refusal
from ledger.core.money import parse_fen, parse_rate

RULES_DIR = Path(__file__).parent / "rules"
RULES_PATH_ENV = "JIEBANG_RULES_PATH"
# Packaged content that projects pinned before a release corrected a file in place
# (``superseded_rules``); never a version in force for a new project.
SUPERSEDED_DIR = "superseded"
NONE = "none"  # TOML has no null; this word stands for "no limit / not applicable".
# The packaged files are a few KB; a limit keeps a stray or hostile file from eating memory.
RULES_FILE_BYTES_MAX = 1 << 20

FUNDING_MODELS = ("staged_grant", "bid_subsidy")
PAYMENT_FORMS = ("cash", "equity", "in_kind")
TRANCHE_BASES = ("grant_share", "subsidy_earned")
# The closed set of events a tranche can wait on; each is a stage event the ledger records.
CONDITIONS = (
    "approved",
    "contract_signed",
    "first_bid_payment",
    "midterm_passed",
    "stage_passed",
    "acceptance_passed",
    "audit_report_received",
)
RECOVERY_KINDS = ("unspent", "misused")
# Limits a rules file may mark ``principle = true`` (written “原则上” in the text): each is a
# bound whose check can be lifted by a recorded exception (reference and reason). A key not
# here stays hard whatever the file says; the loader refuses ``principle`` on it.
PRINCIPLE_KEYS = (
    "approval.demand_min_revenue",
    "approval.max_period_years",
    "approval.saima_max_racers",
    "approval.max_extensions",
    "approval.max_extension_years",
)
PRINCIPLE_WORD = "原则上"
PARTY_KINDS = ("enterprise", "university", "institute", "other")


class RulesFileError(Refusal):
    """A rules file that cannot be used, named with the offending key and the reason."""

    def __init__(self, path: Path | str, key: str, reason: str):
        super().__init__("rules_file_must_be_valid", f"Rules file {path}: {key}: {reason}.")
        self.path = str(path)
        self.key = key


class RulesChangedError(Refusal):
    """A rules file whose content no longer matches the fingerprint a project was pinned to.

    Attributes:
      path: the file, as loaded.
      version: the rules version the file defines.
      expected: the fingerprint pinned at approval.
      actual: the fingerprint of the file as it is now.
      project: the project code once ``for_project`` named it, else None.
      pinned_on: the date the project pinned the version, once named, else None.
    """

    def __init__(
        self,
        path: Path | str,
        version: str,
        expected: str,
        actual: str,
        *,
        message: str | None = None,
        project: str | None = None,
        pinned_on: date | str | None = None,
    ):
        self.path = str(path)
        self.version = version
        self.expected = expected
        self.actual = actual
        self.project = project
        self.pinned_on = pinned_on
        super().__init__(
            "rules_file_must_match_pinned_fingerprint",
            message
            or (
                f"rules file {self.path} ({version}) changed since it was pinned "
                f"(fingerprint {expected[:12]} now {actual[:12]}); "
                "publish the change as a new version"
            ),
        )

    def for_project(self, code: str, pinned_on: date | str) -> RulesChangedError:
        """The same refusal, worded for the officer handling project ``code``."""
        return RulesChangedError(
            self.path,
            self.version,
            self.expected,
            self.actual,
            project=code,
            pinned_on=pinned_on,
            message=(
                f"rules file {self.path} changed since project {code} pinned it on {pinned_on}; "
                "publish the change as a new version (a new file with a new `version`)"
            ),
        )


@dataclass(frozen=True, slots=True)
class ApprovalRules:
    """Eligibility and shape rules checked at 立项.

    Attributes:
      min_total_investment_fen: the project's total R&D investment must reach this.
      demand_eligibility_required: whether the demand side must pass the tests below.
      demand_min_revenue_fen: prior-year main revenue that qualifies the demand side, or None.
      demand_min_rnd_intensity: prior-year R&D / revenue that qualifies it, or None.
      demand_innovation_star_qualifies: whether an 创新标兵 high-tech firm qualifies.
      demand_credit_lookback_years: years without bad credit required, or None.
      jbgs_solvers: exact solver count for 揭榜挂帅.
      saima_min_racers: least solver count for 赛马.
      saima_max_racers: most solver count for 赛马, or None for no limit.
      related_party_ban: whether solver and demand side must not be related.
      solver_locked_after_approval: whether the solver may not change after 立项.
      max_period_years: longest project period in whole years, or None.
      max_extensions: how many extensions a project may have, or None.
      max_extension_years: longest single extension in years, or None.
      project_limit: most projects in progress for one demand side (限项), or None.
      max_grant_fen: largest approved grant or subsidy ceiling, or None.
      subsidy_warn_above_fen: a subsidy ceiling above this draws a warning, or None.
      demand_registration_prefixes: administrative-division prefixes (USCC positions 3–8) a
        demand side must be registered under, e.g. ("4407",); empty for no such rule.
      demand_kinds: party kinds a demand side may be, e.g. ("enterprise",).
      demand_solver_distinct: whether the demand side may not be its own solver.
      solver_credit_lookback_years: years without bad credit required of solvers, or None.
      grant_max_share_of_total_investment: the grant (or subsidy ceiling) is at most this
        share of the project's total investment, or None.
      start_before_approval_max_days: the period may start at most this many days before the
        approval date, or None.
      rnd_route_requires_above_scale: whether the R&D-intensity route needs a 规模以上 firm.
    """

    min_total_investment_fen: int
    demand_eligibility_required: bool
    demand_min_revenue_fen: int | None
    demand_min_rnd_intensity: Decimal | None
    demand_innovation_star_qualifies: bool
    demand_credit_lookback_years: int | None
    jbgs_solvers: int
    saima_min_racers: int
    saima_max_racers: int | None
    related_party_ban: bool
    solver_locked_after_approval: bool
    max_period_years: int | None
    max_extensions: int | None
    max_extension_years: int | None
    project_limit: int | None
    max_grant_fen: int | None
    subsidy_warn_above_fen: int | None
    demand_registration_prefixes: tuple[str, ...]
    demand_kinds: tuple[str, ...]
    demand_solver_distinct: bool
    solver_credit_lookback_years: int | None
    grant_max_share_of_total_investment: Decimal | None
    start_before_approval_max_days: int | None
    rnd_route_requires_above_scale: bool


@dataclass(frozen=True, slots=True)
class FundingRules:
    """How fiscal money is earned, split and recovered.

    Attributes:
      model: "staged_grant" (an approved grant paid in tranches) or "bid_subsidy" (a rate of
        the cash bid payments the demand side makes to the solver).
      subsidy_rate: the bid_subsidy rate, or None for staged_grant.
      eligible_payment_forms: bid payment forms that count toward the subsidy base.
      excluded_payment_forms: bid payment forms recorded but never counted.
      subsidy_cap_rate_of_contract: the subsidy never exceeds this rate of the contract, or None.
      subsidy_recipient: "demand" or "solver" for bid_subsidy, else None.
      unpaid_subsidy_on_termination: "forfeit" or "payable".
      saima_stage1_split: "equal", or None where nothing is split between lanes.
      eliminated_racer_recovers_balance: whether an eliminated lane's fiscal balance is recovered.
      revocation_recovery_rate: share of disbursed fiscal money recovered on revocation.
      clawback_offset_allowed: whether a clawback may be netted against a later release of the
        same project to the same unit (with an approval reference recorded on the release).
      subsidy_use_tracked: whether a released bid subsidy is tracked at its recipient until it is
        reported spent by category, so termination recovers its unspent and misused part.
      pledge_at_first_release: what a lane's first release does when no self-funding pledge
        (承诺函) is on file: "warn", "refuse" or "none" (optional key, see _OPTIONAL).
    """

    model: str
    subsidy_rate: Decimal | None
    eligible_payment_forms: tuple[str, ...]
    excluded_payment_forms: tuple[str, ...]
    subsidy_cap_rate_of_contract: Decimal | None
    subsidy_recipient: str | None
    unpaid_subsidy_on_termination: str
    saima_stage1_split: str | None
    eliminated_racer_recovers_balance: bool
    revocation_recovery_rate: Decimal
    clawback_offset_allowed: bool
    subsidy_use_tracked: bool
    pledge_at_first_release: str = "none"


@dataclass(frozen=True, slots=True)
class Tranche:
    """One scheduled slice of fiscal money and the events it waits on.

    Attributes:
      name: unique within the rules file, e.g. "contract".
      basis: "grant_share" (share of the approved grant) or "subsidy_earned" (subsidy earned
        to date, less what earlier tranches released).
      share: the grant share for grant_share, else None.
      ceiling_rate_of_contract: a cap on cumulative subsidy at this tranche, or None.
      conditions: events that must all be recorded before release in 揭榜挂帅.
      saima_conditions: the same for each 赛马 lane (defaults to ``conditions``).
      source: the clause or DEFAULT reason.
    """

    name: str
    basis: str
    share: Decimal | None
    ceiling_rate_of_contract: Decimal | None
    conditions: tuple[str, ...]
    saima_conditions: tuple[str, ...]
    source: str

    def conditions_for(self, mode: str) -> tuple[str, ...]:
        """The conditions for a project mode ("jbgs" or "saima")."""
        return self.saima_conditions if mode == "saima" else self.conditions


@dataclass(frozen=True, slots=True)
class IndirectTier:
    """A marginal band of the indirect-cost base and its cap rate.

    Attributes:
      up_to_fen: the band's upper edge in fen, or None for the open last band.
      cap: the most indirect cost allowed per fen of base inside the band.
    """

    up_to_fen: int | None
    cap: Decimal


@dataclass(frozen=True, slots=True)
class SpendingRules:
    """Budget categories and spending limits.

    Attributes:
      equipment_justify_threshold_fen: equipment priced at or above this needs a justification.
      indirect_tiers: marginal bands, ascending, the last one open.
      pure_theory_cap: flat indirect cap for pure-theory basic research.
      budget_categories: category key (equipment, business, labour, indirect) → Chinese name.
      legacy_category_map: pre-2021 budget line (Chinese) → category key.
    """

    equipment_justify_threshold_fen: int
    indirect_tiers: tuple[IndirectTier, ...]
    pure_theory_cap: Decimal
    budget_categories: Mapping[str, str]
    legacy_category_map: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ClosureRules:
    """Acceptance, audit and balance rules at the end of a project.

    Attributes:
      audit_required: "always", "never" or "at_or_above_threshold".
      audit_threshold_fen: fiscal funding from which an audit is required, or None.
      acceptance_apply_within_months: months after the period ends to apply for acceptance.
      balance_after_acceptance: "retained" or "recover_after_years".
      recover_after_years: years after acceptance when a balance is recovered, or None.
      termination_recovers: what is recovered on termination: "unspent", "misused".
      failed_acceptance: what a failed 验收 does: "terminate" (the same entry terminates the
        project and assesses termination_recovers) or "officer" (a fact, and a due item for
        the officer to decide) (optional key, see _OPTIONAL).
    """

    audit_required: str
    audit_threshold_fen: int | None
    acceptance_apply_within_months: int
    balance_after_acceptance: str
    recover_after_years: int | None
    termination_recovers: tuple[str, ...]
    failed_acceptance: str = "terminate"


@dataclass(frozen=True, slots=True)
class Rules:
    """One city's rules under one policy version, as loaded from one file.

    Attributes:
      version: unique id, equal to the file name without ``.toml``.
      city: lowercase code, e.g. "jiangmen".
      city_name: Chinese name, e.g. "江门市".
      document: Chinese title of the policy document.
      effective_from: first approval date the version governs.
      effective_to: last approval date it governs, or None while in force.
      approval, funding, spending, closure: the parsed sections.
      tranches: the release schedule in order.
      sources: "section.key" → clause or DEFAULT reason (read-only), e.g.
        sources["funding.subsidy_rate"]; tranches are "tranches.<name>".
      path: the file it came from.
      fingerprint: SHA-256 (64 lowercase hex) of the parsed document in canonical JSON; the
        same for any two files that say the same thing, whatever their comments or layout.
      principles: "section.key" of the limits marked ``principle = true`` (written “原则上”):
        each may be exceeded only with a recorded exception; every other limit is hard.
    """

    version: str
    city: str
    city_name: str
    document: str
    effective_from: date
    effective_to: date | None
    approval: ApprovalRules
    funding: FundingRules
    tranches: tuple[Tranche, ...]
    spending: SpendingRules
    closure: ClosureRules
    sources: Mapping[str, str]
    path: str
    fingerprint: str
    principles: frozenset[str] = frozenset()

    def is_principle(self, key: str) -> bool:
        """Whether the limit ``section.key`` is a principle (原则上), not a hard bound."""
        return key in self.principles

    def clause(self, key: str) -> str:
        """The source of ``section.key``, for messages that cite the rule."""
        return self.sources.get(key, f"{self.version} {key}")

    def in_force_on(self, on_date: date) -> bool:
        return self.effective_from <= on_date and (
            self.effective_to is None or on_date <= self.effective_to
        )


# ---------------------------------------------------------------------------------------------
# Value parsers. Each takes (file, key, raw value) and returns the parsed value or fails.


class _File:
    """The file being parsed, so every failure names it."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, reason: str) -> Any:
        raise RulesFileError(self.path, key, reason)


Parser = Callable[[_File, str, Any], Any]


def _amount(f: _File, key: str, raw: Any) -> int:
    if not isinstance(raw, str):
        f.fail(key, f'bad amount {raw!r}: write it as a string such as "3000000.00"')
    try:
        return parse_fen(raw, field=key)
    except Refusal as refusal:
        return f.fail(key, f"bad amount {raw!r} ({refusal.message.rstrip('.')})")


def _rate(f: _File, key: str, raw: Any) -> Decimal:
    if not isinstance(raw, str):
        f.fail(key, f'bad rate {raw!r}: write it as a string such as "0.40"')
    try:
        return parse_rate(raw, field=key)
    except Refusal as refusal:
        if refusal.code == "rate_must_be_between_0_and_1":
            return f.fail(key, f"rate {raw} is outside [0, 1]")
        return f.fail(key, f"bad rate {raw!r}")


def _count(f: _File, key: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        f.fail(key, f"expected a whole number >= 0, got {raw!r}")
    return raw


def _flag(f: _File, key: str, raw: Any) -> bool:
    if not isinstance(raw, bool):
        f.fail(key, f"expected true or false, got {raw!r}")
    return raw


def _optional(parser: Parser) -> Parser:
    return lambda f, key, raw: None if raw == NONE else parser(f, key, raw)


def _choice(*options: str) -> Parser:
    def parse(f: _File, key: str, raw: Any) -> str:
        if raw not in options:
            f.fail(key, f"{raw!r} is not one of {', '.join(options)}")
        return raw

    return parse


def _choices(*options: str) -> Parser:
    def parse(f: _File, key: str, raw: Any) -> tuple[str, ...]:
        if not isinstance(raw, list):
            f.fail(key, f"expected a list drawn from {', '.join(options)}")
        for item in raw:
            _choice(*options)(f, key, item)
        if len(set(raw)) != len(raw):
            f.fail(key, "list has duplicates")
        return tuple(raw)

    return parse


def _division_prefixes(f: _File, key: str, raw: Any) -> tuple[str, ...]:
    """GB/T 2260 administrative-division prefixes: 2, 4 or 6 digits each."""
    if not isinstance(raw, list) or not all(isinstance(p, str) and re.fullmatch(r"[0-9]{2}(?:[0-9]{2}){0,2}", p) for p in raw):
        f.fail(key, 'expected a list of 2-, 4- or 6-digit division codes such as ["4407"]')
    if len(set(raw)) != len(raw):
        f.fail(key, "list has duplicates")
    return tuple(raw)


def _text_map(f: _File, key: str, raw: Any) -> Mapping[str, str]:
    if (
        not isinstance(raw, dict)
        or not raw
        or not all(isinstance(v, str) and v for v in raw.values())
    ):
        f.fail(key, "expected a table of names to non-empty strings")
    return MappingProxyType(dict(raw))


def _tiers(f: _File, key: str, raw: Any) -> tuple[IndirectTier, ...]:
    if not isinstance(raw, list) or not raw:
        f.fail(key, "expected a list of { up_to, cap } tables")
    tiers: list[IndirectTier] = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or set(item) != {"up_to", "cap"}:
            f.fail(where, "each tier needs exactly up_to and cap")
        tier = IndirectTier(
            _optional(_amount)(f, where + ".up_to", item["up_to"]),
            _rate(f, where + ".cap", item["cap"]),
        )
        last = i == len(raw) - 1
        # Bands are marginal, so edges must rise and only the last band may be open.
        if (tier.up_to_fen is None) != last:
            f.fail(where, 'only the last tier is open (up_to = "none")')
        if tiers and tier.up_to_fen is not None and tier.up_to_fen <= tiers[-1].up_to_fen:  # type: ignore[operator]
            f.fail(where, "tier edges must rise")
        tiers.append(tier)
    return tuple(tiers)


# Section schemas: TOML key → (dataclass field, parser). A key absent here is an unknown key.
_APPROVAL: dict[str, tuple[str, Parser]] = {
    "min_total_investment": ("min_total_investment_fen", _amount),
    "demand_eligibility_required": ("demand_eligibility_required", _flag),
    "demand_min_revenue": ("demand_min_revenue_fen", _optional(_amount)),
    "demand_min_rnd_intensity": ("demand_min_rnd_intensity", _optional(_rate)),
    "demand_innovation_star_qualifies": ("demand_innovation_star_qualifies", _flag),
    "demand_credit_lookback_years": ("demand_credit_lookback_years", _optional(_count)),
    "jbgs_solvers": ("jbgs_solvers", _count),
    "saima_min_racers": ("saima_min_racers", _count),
    "saima_max_racers": ("saima_max_racers", _optional(_count)),
    "related_party_ban": ("related_party_ban", _flag),
    "solver_locked_after_approval": ("solver_locked_after_approval", _flag),
    "max_period_years": ("max_period_years", _optional(_count)),
    "max_extensions": ("max_extensions", _optional(_count)),
    "max_extension_years": ("max_extension_years", _optional(_count)),
    "project_limit": ("project_limit", _optional(_count)),
    "max_grant": ("max_grant_fen", _optional(_amount)),
    "subsidy_warn_above": ("subsidy_warn_above_fen", _optional(_amount)),
    "demand_registration_prefixes": ("demand_registration_prefixes", _division_prefixes),
    "demand_kinds": ("demand_kinds", _choices(*PARTY_KINDS)),
    "demand_solver_distinct": ("demand_solver_distinct", _flag),
    "solver_credit_lookback_years": ("solver_credit_lookback_years", _optional(_count)),
    "grant_max_share_of_total_investment": ("grant_max_share_of_total_investment", _optional(_rate)),
    "start_before_approval_max_days": ("start_before_approval_max_days", _optional(_count)),
    "rnd_route_requires_above_scale": ("rnd_route_requires_above_scale", _flag),
}
_FUNDING: dict[str, tuple[str, Parser]] = {
    "model": ("model", _choice(*FUNDING_MODELS)),
    "subsidy_rate": ("subsidy_rate", _optional(_rate)),
    "eligible_payment_forms": ("eligible_payment_forms", _choices(*PAYMENT_FORMS)),
    "excluded_payment_forms": ("excluded_payment_forms", _choices(*PAYMENT_FORMS)),
    "subsidy_cap_rate_of_contract": ("subsidy_cap_rate_of_contract", _optional(_rate)),
    "subsidy_recipient": ("subsidy_recipient", _optional(_choice("demand", "solver"))),
    "unpaid_subsidy_on_termination": (
        "unpaid_subsidy_on_termination",
        _choice("forfeit", "payable"),
    ),
    "saima_stage1_split": ("saima_stage1_split", _optional(_choice("equal"))),
    "eliminated_racer_recovers_balance": ("eliminated_racer_recovers_balance", _flag),
    "revocation_recovery_rate": ("revocation_recovery_rate", _rate),
    "clawback_offset_allowed": ("clawback_offset_allowed", _flag),
    "subsidy_use_tracked": ("subsidy_use_tracked", _flag),
    "pledge_at_first_release": ("pledge_at_first_release", _choice("warn", "refuse", "none")),
}
_SPENDING: dict[str, tuple[str, Parser]] = {
    "equipment_justify_threshold": ("equipment_justify_threshold_fen", _amount),
    "indirect_tiers": ("indirect_tiers", _tiers),
    "pure_theory_cap": ("pure_theory_cap", _rate),
    "budget_categories": ("budget_categories", _text_map),
    "legacy_category_map": ("legacy_category_map", _text_map),
}
_CLOSURE: dict[str, tuple[str, Parser]] = {
    "audit_required": ("audit_required", _choice("always", "never", "at_or_above_threshold")),
    "audit_threshold": ("audit_threshold_fen", _optional(_amount)),
    "acceptance_apply_within_months": ("acceptance_apply_within_months", _count),
    "balance_after_acceptance": (
        "balance_after_acceptance",
        _choice("retained", "recover_after_years"),
    ),
    "recover_after_years": ("recover_after_years", _optional(_count)),
    "termination_recovers": ("termination_recovers", _choices(*RECOVERY_KINDS)),
    "failed_acceptance": ("failed_acceptance", _choice("terminate", "officer")),
}
# Parameters a rules file may leave out (issue 14 point 8): absent, the loader uses the value
# and the DEFAULT source below, each a function of the section's fields parsed before it. A
# file that omits them says nothing new, so its fingerprint (and every project pinned to it)
# stays as it was; a file that states one is fingerprinted with it like any other key.
_OPTIONAL: dict[str, dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], str]]]] = {
    "funding": {
        "pledge_at_first_release": (
            lambda fields: "warn" if fields["model"] == "staged_grant" else "none",
            lambda fields: (
                "DEFAULT: S1 江门 工作方案 二(一)2 (有能力并承诺保障发榜项目的科研投入) and its 附件2 (自投研发资金承诺函) ask for "
                "the demand side's commitment letter; a lane's first release with no pledge on file is warned, not refused "
                "(set refuse where the bureau pays only against the letter)"
                if fields["model"] == "staged_grant"
                else "DEFAULT: a bid subsidy is paid on cash the demand side has already paid its solver (S2 二(六)), which "
                "evidences its investment; no pledge is checked at release"
            ),
        ),
    },
    "closure": {
        "failed_acceptance": (
            lambda fields: "terminate",
            lambda fields: (
                "DEFAULT: neither text says what a failed 验收 does to the money; it ends the project as a termination "
                "(S1 江门 工作方案 五(三): 项目终止的，收回结余和违规使用的财政资金), recovering what termination_recovers "
                "names in the same entry (set officer to leave the decision to the bureau, listed by `due`)"
            ),
        ),
    },
}
_SECTIONS = {"approval": _APPROVAL, "funding": _FUNDING, "spending": _SPENDING, "closure": _CLOSURE}
_TOP_KEYS = {"rules", "tranches", *_SECTIONS}
_HEADER_KEYS = {
    "version",
    "city",
    "city_name",
    "document",
    "effective_from",
    "effective_to",
    "source",
}
_TRANCHE_KEYS = {
    "name",
    "basis",
    "share",
    "ceiling_rate_of_contract",
    "conditions",
    "saima_conditions",
    "source",
}
_CATEGORY_KEYS = {"equipment", "business", "labour", "indirect"}
_VERSION_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")


def _require_keys(
    f: _File, where: str, table: Any, allowed: Iterable[str], required: Iterable[str]
) -> None:
    if not isinstance(table, dict):
        f.fail(where, "expected a table")
    for key in table:
        if key not in allowed:
            f.fail(f"{where}.{key}", "unknown key")
    for key in required:
        if key not in table:
            f.fail(f"{where}.{key}", "missing key")


def _parse_section(
    f: _File, name: str, table: Any, sources: dict[str, str], principles: set[str] | None = None
) -> dict[str, Any]:
    schema = _SECTIONS[name]
    optional = _OPTIONAL.get(name, {})
    _require_keys(f, name, table, schema, [k for k in schema if k not in optional])
    fields: dict[str, Any] = {}
    for key, (field_name, parser) in schema.items():
        where = f"{name}.{key}"
        if key not in table:  # an optional key left out: its DEFAULT value and source
            value, source = optional[key]
            fields[field_name] = parser(f, where, value(fields))
            sources[where] = source(fields)
            continue
        entry = table[key]
        if not isinstance(entry, dict) or "value" not in entry:
            f.fail(where, 'expected { value = ..., source = "..." }')
        if set(entry) - {"value", "source", "principle"}:
            f.fail(
                where,
                f"unknown key {min(set(entry) - {'value', 'source', 'principle'})!r} in the parameter",
            )
        if not isinstance(entry.get("source"), str) or not entry["source"].strip():
            f.fail(where, "missing source (cite the clause, or start with DEFAULT: and say why)")
        fields[field_name] = parser(f, where, entry["value"])
        sources[where] = entry["source"].strip()
        if "principle" in entry and _principle(f, where, entry) and principles is not None:
            principles.add(where)
    return fields


def _principle(f: _File, where: str, entry: dict) -> bool:
    """A parameter's ``principle`` flag, validated: only on a limit in PRINCIPLE_KEYS that is
    set (not "none"), and only where the source quotes the text's “原则上” or says DEFAULT:."""
    flag = _flag(f, where + ".principle", entry["principle"])
    if not flag:
        return False
    if where not in PRINCIPLE_KEYS:
        f.fail(where + ".principle", f"only these limits can be a principle: {', '.join(PRINCIPLE_KEYS)}")
    if entry["value"] == NONE:
        f.fail(where + ".principle", 'true, but the value is "none": there is no limit to make an exception to')
    source = entry["source"].strip()
    if PRINCIPLE_WORD not in source and not source.startswith("DEFAULT:"):
        f.fail(where + ".principle", f"true, but the source does not quote the text's {PRINCIPLE_WORD} (or start with DEFAULT: and say why)")
    return True


def _text(f: _File, key: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        f.fail(key, "expected non-empty text")
    return raw.strip()


def _date(f: _File, key: str, raw: Any) -> date:
    # tomllib returns datetime for date-times; datetime is a date subclass, so test exactly.
    if type(raw) is not date:
        f.fail(key, f"expected a TOML date such as 2024-01-01, got {raw!r}")
    return raw


def _parse_tranche(f: _File, i: int, table: Any, model: str, sources: dict[str, str]) -> Tranche:
    where = f"tranches[{i}]"
    _require_keys(f, where, table, _TRANCHE_KEYS, ("name", "basis", "conditions", "source"))
    name = _text(f, where + ".name", table["name"])
    where = f"tranches.{name}"
    basis = _choice(*TRANCHE_BASES)(f, where + ".basis", table["basis"])
    expected_basis = "grant_share" if model == "staged_grant" else "subsidy_earned"
    if basis != expected_basis:
        f.fail(
            where + ".basis",
            f"basis {basis} does not fit funding model {model} (use {expected_basis})",
        )
    if basis == "grant_share" and "share" not in table:
        f.fail(where + ".share", "missing key (a grant_share tranche needs a share)")
    if basis == "subsidy_earned" and "share" in table:
        f.fail(where + ".share", "a subsidy_earned tranche has no share")
    if basis == "grant_share" and "ceiling_rate_of_contract" in table:
        f.fail(where + ".ceiling_rate_of_contract", "only a subsidy_earned tranche has a ceiling")
    share = _rate(f, where + ".share", table["share"]) if "share" in table else None
    ceiling = (
        _optional(_rate)(f, where + ".ceiling_rate_of_contract", table["ceiling_rate_of_contract"])
        if "ceiling_rate_of_contract" in table
        else None
    )
    conditions = _choices(*CONDITIONS)(f, where + ".conditions", table["conditions"])
    saima = _choices(*CONDITIONS)(
        f, where + ".saima_conditions", table.get("saima_conditions", list(conditions))
    )
    if not conditions or not saima:
        f.fail(where + ".conditions", "a tranche needs at least one condition")
    source = _text(f, where + ".source", table["source"])
    sources[where] = source
    return Tranche(name, basis, share, ceiling, conditions, saima, source)


def _canonical(value: Any) -> Any:
    """The document as JSON values: TOML dates, date-times and times become ISO strings."""
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, (date, time)):  # datetime is a date subclass, so it is covered too.
        return value.isoformat()
    return value


def _document_fingerprint(f: _File, doc: Mapping[str, Any]) -> str:
    try:
        return _fingerprint(doc)
    except RecursionError:
        # Validation leaves no deep nesting; this guards the walk should a schema ever allow it.
        return f.fail("TOML", "is nested too deeply to read; a rules file nests a few levels")


def _fingerprint(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a parsed rules document, as 64 lowercase hex."""
    canonical = json.dumps(
        _canonical(doc), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _check_file(path: Path, info: os.stat_result) -> None:
    """Refuse what is not a regular file of a sensible size, before anything opens it."""
    if not stat.S_ISREG(info.st_mode):
        raise RulesFileError(
            path,
            "(file)",
            f"is {_file_kind(info.st_mode)}, not a regular file; point at a .toml file",
        )
    if info.st_size > RULES_FILE_BYTES_MAX:
        raise _too_large(path, f"is {info.st_size:,} bytes")


def _too_large(path: Path, size: str) -> RulesFileError:
    return RulesFileError(
        path,
        "(file)",
        f"{size}, over the {RULES_FILE_BYTES_MAX:,}-byte limit for a rules file "
        "(the packaged ones are a few KB)",
    )


def _read(path: Path) -> bytes:
    """The bytes of a regular rules file of at most RULES_FILE_BYTES_MAX, or a refusal.

    The file is opened non-blocking and checked again through its descriptor, so a FIFO that
    replaces the file after the caller's stat is refused instead of hanging the read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise RulesFileError(path, "(file)", f"cannot be read ({error.strerror})") from None
    with open(descriptor, "rb", closefd=True) as handle:
        _check_file(path, os.fstat(descriptor))
        try:
            data = handle.read(RULES_FILE_BYTES_MAX + 1)
        except OSError as error:
            raise RulesFileError(path, "(file)", f"cannot be read ({error.strerror})") from None
    if len(data) > RULES_FILE_BYTES_MAX:  # The file grew after the check.
        raise _too_large(path, "grew while being read")
    return data


def _parse(path: Path, data: bytes) -> Rules:
    f = _File(path)
    try:
        # What tomllib.load does with a binary handle, on the bytes already read and checked.
        doc = tomllib.loads(data.decode())
    except tomllib.TOMLDecodeError as error:
        # The message already carries "(at line N, column M)".
        return f.fail("TOML", f"syntax error {error}")
    except UnicodeDecodeError as error:
        return f.fail("TOML", f"is not UTF-8 text (byte {error.start}); save it as UTF-8")
    except RecursionError:
        # tomllib recurses once per nesting level; thousands of [[[ ... exhaust the stack.
        return f.fail("TOML", "is nested too deeply to read; a rules file nests a few levels")
    _require_keys(f, "(top)", doc, _TOP_KEYS, _TOP_KEYS)
    head = doc["rules"]
    _require_keys(f, "rules", head, _HEADER_KEYS, _HEADER_KEYS - {"effective_to"})
    version = _text(f, "rules.version", head["version"])
    if not _VERSION_RE.match(version) or version != path.stem:
        f.fail(
            "rules.version", f"{version!r} must be lowercase and equal the file name {path.stem!r}"
        )
    city = _text(f, "rules.city", head["city"])
    if not re.fullmatch(r"[a-z][a-z0-9_]*", city):
        f.fail("rules.city", f"{city!r} must be a lowercase code such as jiangmen")
    effective_from = _date(f, "rules.effective_from", head["effective_from"])
    effective_to = (
        _date(f, "rules.effective_to", head["effective_to"]) if "effective_to" in head else None
    )
    if effective_to is not None and effective_to < effective_from:
        f.fail(
            "rules.effective_to",
            f"effective_to {effective_to} is before effective_from {effective_from}",
        )
    sources = {"rules.effective_from": _text(f, "rules.source", head["source"])}

    principles: set[str] = set()
    sections = {name: _parse_section(f, name, doc[name], sources, principles) for name in _SECTIONS}
    approval = ApprovalRules(**sections["approval"])
    funding = FundingRules(**sections["funding"])
    spending = SpendingRules(**sections["spending"])
    closure = ClosureRules(**sections["closure"])
    _check_consistency(f, approval, funding, spending, closure)

    raw_tranches = doc["tranches"]
    if not isinstance(raw_tranches, list) or not raw_tranches:
        f.fail("tranches", "expected at least one [[tranches]] table")
    tranches = tuple(
        _parse_tranche(f, i, t, funding.model, sources) for i, t in enumerate(raw_tranches)
    )
    names = [t.name for t in tranches]
    if len(set(names)) != len(names):
        f.fail("tranches", "tranche names must be unique")
    shares = [t.share for t in tranches if t.share is not None]
    # Exact Decimal sum: "0.6" + "0.4" == 1 exactly; a schedule short by a hundredth is refused.
    if funding.model == "staged_grant" and sum(shares, Decimal(0)) != 1:
        f.fail("tranches", f"grant shares sum to {sum(shares, Decimal(0))}, not 1")

    return Rules(
        version=version,
        city=city,
        city_name=_text(f, "rules.city_name", head["city_name"]),
        document=_text(f, "rules.document", head["document"]),
        effective_from=effective_from,
        effective_to=effective_to,
        approval=approval,
        funding=funding,
        tranches=tranches,
        spending=spending,
        closure=closure,
        sources=MappingProxyType(sources),
        path=str(path),
        fingerprint=_document_fingerprint(f, doc),
        principles=frozenset(principles),
    )


def _check_consistency(
    f: _File,
    approval: ApprovalRules,
    funding: FundingRules,
    spending: SpendingRules,
    closure: ClosureRules,
) -> None:
    """Rules between keys, so a file cannot say two things at once."""
    if approval.demand_eligibility_required and not (
        approval.demand_min_revenue_fen is not None
        or approval.demand_min_rnd_intensity is not None
        or approval.demand_innovation_star_qualifies
    ):
        f.fail(
            "approval.demand_eligibility_required",
            "true, but no revenue, intensity or 创新标兵 test is set",
        )
    if (
        approval.saima_max_racers is not None
        and approval.saima_max_racers < approval.saima_min_racers
    ):
        f.fail("approval.saima_max_racers", "is below saima_min_racers")
    if funding.model == "bid_subsidy":
        for key in ("subsidy_rate", "subsidy_cap_rate_of_contract", "subsidy_recipient"):
            if getattr(funding, key) is None:
                f.fail(f"funding.{key}", "bid_subsidy needs a value, not none")
    if not approval.demand_kinds:
        f.fail("approval.demand_kinds", "name at least one party kind")
    if funding.subsidy_use_tracked and funding.model != "bid_subsidy":
        f.fail("funding.subsidy_use_tracked", "true, but only a bid_subsidy is released to a recipient to track")
    if set(funding.eligible_payment_forms) & set(funding.excluded_payment_forms):
        f.fail("funding.excluded_payment_forms", "a form is both eligible and excluded")
    if set(spending.budget_categories) != _CATEGORY_KEYS:
        f.fail(
            "spending.budget_categories",
            f"keys must be exactly {', '.join(sorted(_CATEGORY_KEYS))}",
        )
    for line, category in spending.legacy_category_map.items():
        if category not in _CATEGORY_KEYS:
            f.fail("spending.legacy_category_map", f"{line} maps to unknown category {category!r}")
    if closure.audit_required == "at_or_above_threshold" and closure.audit_threshold_fen is None:
        f.fail(
            "closure.audit_threshold",
            "audit_required is at_or_above_threshold but no threshold is set",
        )
    if (
        closure.balance_after_acceptance == "recover_after_years"
        and closure.recover_after_years is None
    ):
        f.fail(
            "closure.recover_after_years",
            "balance_after_acceptance is recover_after_years but no years are set",
        )


# ---------------------------------------------------------------------------------------------
# Loading and selection.


@functools.lru_cache(maxsize=256)
def _load_cached(path: str, mtime_ns: int, size: int) -> Rules:
    # mtime and size are in the key so an edited file is read again; a refusal is never cached.
    # An edit that keeps the size within one mtime tick is missed here, which is why a caller
    # holding a pinned fingerprint goes through _load_fresh instead.
    return _parse_content(path, _read(Path(path)))


@functools.lru_cache(maxsize=64)
def _parse_content(path: str, data: bytes) -> Rules:
    # Keyed by the bytes themselves, so a hit is the same content and can never be stale. The
    # cache holds the bytes, hence the smaller size: at most 64 MiB even for files at the limit.
    return _parse(Path(path), data)


def _stat(path: Path) -> os.stat_result:
    try:
        info = path.stat()
    except OSError as error:
        raise RulesFileError(path, "(file)", f"cannot be read ({error.strerror})") from None
    _check_file(path, info)
    return info


def load_rules_file(path: str | os.PathLike[str]) -> Rules:
    """Load and validate one rules file, or raise RulesFileError naming the key and reason."""
    resolved = Path(path).resolve()
    info = _stat(resolved)
    return _load_cached(str(resolved), info.st_mtime_ns, info.st_size)


def _load_fresh(path: Path) -> Rules:
    """The file as it is on disk now: read and hashed every call, parsed only when it changed."""
    _stat(path)
    return _parse_content(str(path), _read(path))


def rules_dirs(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The packaged rules directory, then ``extra_dirs``, then those in $JIEBANG_RULES_PATH."""
    env = [p for p in os.environ.get(RULES_PATH_ENV, "").split(os.pathsep) if p.strip()]
    dirs: list[Path] = []
    for raw in [RULES_DIR, *extra_dirs, *env]:
        resolved = Path(raw).resolve()
        if not resolved.is_dir():
            raise Refusal(
                "rules_path_must_be_a_directory",
                f"Rules directory {raw} does not exist; fix {RULES_PATH_ENV} or the path given.",
            )
        if resolved not in dirs:
            dirs.append(resolved)
    return dirs


def available_rules(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[Rules]:
    """Every rules file found, validated, sorted by city then effective_from."""
    found: dict[str, Rules] = {}
    for directory in rules_dirs(extra_dirs):
        for path in sorted(directory.glob("*.toml")):
            rules = load_rules_file(path)
            if rules.version in found:
                raise RulesFileError(
                    path,
                    "rules.version",
                    f"{rules.version} is also defined in {found[rules.version].path}",
                )
            found[rules.version] = rules
    return sorted(found.values(), key=lambda r: (r.city, r.effective_from, r.version))


def _describe(rules: Rules) -> str:
    return f"{rules.version} ({rules.effective_from}..{rules.effective_to or ''})"


def rules_in_force(
    city: str, on_date: date, *, extra_dirs: Iterable[str | os.PathLike[str]] = ()
) -> Rules:
    """The version that governs a project of ``city`` approved on ``on_date``.

    Where two versions cover the date, the one with the later effective_from wins: a newer
    policy supersedes an open-ended older one without anyone editing the older file.
    """
    if isinstance(on_date, datetime) or not isinstance(on_date, date):
        raise TypeError("on_date must be a date")
    versions = [r for r in available_rules(extra_dirs) if r.city == city]
    matching = [r for r in versions if r.in_force_on(on_date)]
    if not matching:
        known = ", ".join(_describe(r) for r in versions) or "none"
        raise Refusal(
            "rules_version_must_exist",
            f"No rules for city {city!r} are in force on {on_date}; versions for that city: "
            f"{known}. Check the approval date, or add a rules file for that period.",
        )
    latest = max(r.effective_from for r in matching)
    winners = [r for r in matching if r.effective_from == latest]
    if len(winners) > 1:
        raise Refusal(
            "rules_versions_must_not_overlap",
            f"Rules {', '.join(r.version for r in winners)} for {city!r} all start on {latest}; "
            "give one of them a different effective_from.",
        )
    return winners[0]


def get_rules(
    version: str,
    *,
    fingerprint: str | None = None,
    extra_dirs: Iterable[str | os.PathLike[str]] = (),
) -> Rules:
    """The rules version a project is pinned to, or a refusal listing the known versions.

    With ``fingerprint`` (the one pinned at approval) the file is read afresh, never from the
    mtime cache, and RulesChangedError refuses it if its content has changed since.
    """
    if fingerprint is not None and not _FINGERPRINT_RE.fullmatch(fingerprint):
        raise ValueError(f"fingerprint must be 64 lowercase hex digits, got {fingerprint!r}")
    try:
        return _get_rules(version, fingerprint=fingerprint, extra_dirs=extra_dirs)
    except RulesChangedError:
        kept = superseded_rules(version, fingerprint)
        if kept is None:
            raise
        return kept


def superseded_rules(version: str, fingerprint: str | None) -> Rules | None:
    """The packaged content a project pinned before a jiebang release corrected the file in
    place, kept in ``rules/superseded/<first 16 hex digits>/<version>.toml``; None when there
    is none or it does not hold exactly the pinned content.

    Only packaged files are kept this way: a file in JIEBANG_RULES_PATH edited in place stays
    refused. The copy is read afresh and its own fingerprint must equal the pin, so an edited
    copy is refused like an edited file.
    """
    if fingerprint is None or not _FINGERPRINT_RE.fullmatch(fingerprint):
        return None
    path = RULES_DIR / SUPERSEDED_DIR / fingerprint[:16] / f"{version}.toml"
    if not path.is_file():
        return None
    kept = _load_fresh(path)
    return kept if kept.version == version and kept.fingerprint == fingerprint else None


def _get_rules(
    version: str,
    *,
    fingerprint: str | None = None,
    extra_dirs: Iterable[str | os.PathLike[str]] = (),
) -> Rules:
    if fingerprint is not None and not extra_dirs:
        # A pinned version is read from the file it was last found in, afresh (so an edit is
        # always seen) but without scanning every rules folder again on each call; a file
        # that moved or no longer defines the version falls back to the scan.
        known = _PINNED_PATHS.get(version)
        if known is not None and known[0] == os.environ.get(RULES_PATH_ENV, ""):
            try:
                fresh = _load_fresh(known[1])
            except Refusal:
                fresh = None
            if fresh is not None and fresh.version == version:
                if fresh.fingerprint != fingerprint:
                    raise RulesChangedError(fresh.path, fresh.version, fingerprint, fresh.fingerprint)
                return fresh
    versions = available_rules(extra_dirs)
    for rules in versions:
        if rules.version == version:
            if fingerprint is None:
                return rules
            if not extra_dirs:
                _PINNED_PATHS[version] = (os.environ.get(RULES_PATH_ENV, ""), Path(rules.path))
            return _pinned(rules, fingerprint)
    raise Refusal(
        "rules_version_must_exist",
        f"Rules version {version!r} is unknown; known versions: "
        f"{', '.join(r.version for r in versions) or 'none'}.",
    )


# version -> (the JIEBANG_RULES_PATH it was found under, its file), for get_rules(fingerprint=).
_PINNED_PATHS: dict[str, tuple[str, Path]] = {}


def _pinned(rules: Rules, fingerprint: str) -> Rules:
    # The version equals the file name, so the same path still defines the same version.
    fresh = _load_fresh(Path(rules.path))
    if fresh.fingerprint != fingerprint:
        raise RulesChangedError(fresh.path, fresh.version, fingerprint, fresh.fingerprint)
    return fresh


def fingerprints(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> dict[str, str]:
    """Every rules version found → the fingerprint of its file as it is on disk now.

    For verify: each file is read afresh, so an in-place edit is seen even where the mtime
    cache would miss it.
    """
    return {
        rules.version: _load_fresh(Path(rules.path)).fingerprint
        for rules in available_rules(extra_dirs)
    }
