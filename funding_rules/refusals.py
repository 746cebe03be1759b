"""Every refusal code the ledger can give, with one line saying what it guards.

A code is a predicate naming what must hold (TigerBeetle's result codes); the message that
travels with it carries the numbers, the rule and the fix. This module is plain data and
imports nothing, so any layer (the core included, were it to need it) could read it without
depending on policy. tests/test_refusals.py walks the code base and fails on a code used but
not listed here, on a code listed but never used, and on an importer column map naming a code
not listed. Where a code moves or is renamed, change it here in the same commit.
"""

from __future__ import annotations

from types import MappingProxyType

_CORE = {
    # Money and rates (ledger.core.money).
    "amount_must_be_finite": "an amount is a finite number, not NaN or infinity",
    "amount_must_be_in_range": "an amount is within any plausible ledger amount",
    "amount_must_be_text": "an amount is given as text or an integer, never another type",
    "amount_must_be_well_formed": "an amount reads as digits with optional grouping, decimals or 万/亿",
    "amount_must_have_at_most_two_decimals": "an amount is whole fen: at most two decimals",
    "amount_must_not_be_empty": "an amount field is not blank",
    "amount_must_not_be_float": "an amount is never a binary float",
    "amount_must_not_be_negative": "an amount where only non-negative values make sense is not negative",
    "rate_must_be_between_0_and_1": "a rate lies in 0..1",
    "rate_must_be_well_formed": "a rate reads as 0.40 or 40%",
    "rate_must_not_be_float": "a rate is written as text, never a binary float",
    # Journal: accounts, entries, reversals (ledger.core.journal, ledger.core.bulk).
    "account_must_be_open": "a posting's account is open on the entry's value date",
    "account_must_close_after_opening": "an account closes on or after the day it opened",
    "account_must_close_once": "an account is closed at most once",
    "account_must_exist": "a posting names an account the ledger knows",
    "account_must_stay_in_its_book": "an account keeps the book it was opened in",
    "account_name_must_be_valid": "an account name is colon-separated capitalised segments",
    "amount_must_be_whole_fen": "a posting amount is an integer number of fen",
    "amount_must_not_be_zero": "a posting moves a non-zero amount",
    "book_must_be_known": "a book is one of the ledger's books (fiscal, memo)",
    "entry_must_balance_per_book": "an entry's postings sum to zero in every book",
    "entry_must_be_reversed_at_most_once": "an entry is reversed at most once",
    "entry_must_exist": "a reversal names an entry that exists",
    "entry_must_have_one_date": "the rows of one bulk transaction share one date",
    "entry_must_have_two_postings": "an entry has at least two postings",
    "kind_must_be_a_word": "an entry kind is a lower-case word",
    "reversal_must_have_reason": "a reversal gives its reason",
    "reversal_must_not_be_reversed": "a reversing entry is not itself reversed; record the event again",
    "reversal_must_not_predate_original": "a reversal is not dated before the entry it reverses",
    "voucher_must_be_short_text": "a voucher is short text within the voucher length limit",
    # Bulk files (ledger.core.bulk).
    "csv_columns_must_be_known": "a bulk CSV names each known column once and no others",
    "csv_must_be_well_formed": "a bulk CSV parses as CSV",
    "csv_must_have_columns": "a bulk CSV has the required columns",
    "csv_row_must_fit_header": "a bulk CSV row has as many cells as the header",
    "csv_row_must_have_txn_id": "a bulk CSV row names its transaction",
    "file_must_be_readable": "an input file can be read",
    "file_must_be_text": "an input file is UTF-8 or GBK text",
    "json_entry_must_have_postings": "a bulk JSON entry is an object with a postings list",
    "json_must_be_valid": "a bulk JSON file parses as JSON",
    "json_posting_must_have_account_and_amount": "a bulk JSON posting names an account and an amount",
    # Storage, backup, anchors (ledger.core.db, reads, backup, anchor).
    "anchor_file_must_be_readable": "an anchor file can be read",
    "anchor_file_must_be_valid": "an anchor file holds a well-formed anchor",
    "anchor_file_must_exist": "an anchor file named for checking exists",
    "anchor_must_be_writable": "an anchor can be written where asked",
    "anchor_must_not_overwrite": "an anchor never overwrites an existing file",
    "backup_is_for_sqlite": "jiebang backup copies SQLite ledgers; PostgreSQL uses pg_dump",
    "backup_must_be_a_ledger": "a backup file is a jiebang SQLite ledger of this version",
    "backup_must_be_another_file": "a backup is written to a file other than the ledger",
    "backup_must_be_writable": "a backup can be written where asked",
    "backup_must_exist": "a backup to restore exists",
    "backup_must_not_overwrite": "a backup overwrites an existing file only with --force",
    "backup_must_verify": "a backup's hash chain verifies before it is kept or restored",
    "backup_needs_a_file": "jiebang backup works on a SQLite ledger file, not an in-memory database",
    "database_must_accept_reads": "the database accepts the read-only operation",
    "database_must_be_at_head": "the database schema is at the migrations' head",
    "database_must_be_reachable": "the ledger database can be opened",
    "database_must_be_readable": "the ledger file's permissions allow reading",
    "database_must_be_sqlite": "a file ledger is a SQLite database",
    "database_must_exist": "the ledger database named exists",
    "database_url_must_be_valid": "a database URL is a SQLite path or a PostgreSQL URL",
    "restore_is_for_sqlite": "jiebang restore writes SQLite ledgers; PostgreSQL uses pg_restore",
    "restore_must_be_another_file": "a restore writes a file other than the backup",
    "restore_must_be_writable": "a restore can write its target",
    "restore_must_not_overwrite": "a restore overwrites an existing ledger only with --force",
    "restore_must_succeed": "a restore completes, leaving the target unchanged otherwise",
    "restore_must_verify": "a restored ledger verifies",
    "restore_needs_a_file": "jiebang restore writes a SQLite ledger file, not an in-memory database",
}

_PROGRAMME = {
    # Record lookups, idempotency and insert-only records (ledger.programme).
    "dependent_entries_must_be_reversed_first": "an event is reversed only after the later events relying on it",
    "lane_must_be_named": "an event on a project with several lanes names its lane",
    "lane_must_exist": "a lane named is one of the project's lanes",
    "party_must_be_registered": "a party in an approval is registered first",
    "party_must_be_registered_once": "a party is registered once; its details are not edited",
    "project_code_must_be_well_formed": "a project code is upper-case letters, digits and hyphens",
    "project_must_be_approved_once": "a project is approved once; approvals are not edited",
    "project_must_exist": "a project named exists",
    "revocation_must_be_covered": "a revocation clawback can be sourced from the lane's balances",
    "tranche_must_exist": "a tranche named is one of the lane's tranches",
    "voucher_must_match_first_use": "a voucher used again repeats the same request",
    "voucher_must_not_belong_to_a_reversed_entry": "a voucher of a reversed entry is not reused",
    # Maker-checker requests and settings (ledger.programme.approvals).
    "approver_must_be_a_database_role_on_postgresql": "on PostgreSQL an approver is a database role",
    "approver_must_be_named": "an approver is named",
    "approver_must_have_the_role": "only an approver approves or rejects requests",
    "approver_must_not_be_requester": "the approver of a request is not its requester",
    "rejection_must_have_reason": "a rejection gives its reason",
    "request_kind_must_be_money_out": "only money-out events are requested for approval",
    # Money out by accounts, advances within releases (ledger.programme.guards).
    "money_out_must_be_approved": "while approval is required, an entry paying fiscal money out needs an approved request, whatever its kind",
    "advances_must_not_exceed_released": "a lane's advances never exceed what was released to it, whatever the path",
    "verify_needs_staff_role": "verification reads every row: an enterprise login (row-level security) cannot verify",
    "request_must_be_new": "a request voucher is not reused for another request",
    "request_must_be_pending": "only a pending request is approved or rejected",
    "request_must_exist": "a request named exists",
    "setting_value_must_be_known": "a setting takes one of its allowed values",
    # Database roles (ledger.programme.roles).
    "database_must_be_a_ledger": "roles are created in a schema holding a jiebang ledger",
    "enterprise_login_needs_party": "an enterprise login names the party it may see",
    "login_must_be_a_plain_name": "a login is a plain lower-case name, not a reserved prefix",
    "party_must_exist": "the party of an enterprise login is registered",
    "party_only_for_enterprise": "--party applies to enterprise logins only",
    "role_must_be_known": "a role is one of the ledger's roles",
    "roles_need_postgresql": "database roles exist on PostgreSQL only",
    "schema_must_exist": "the connection has a current schema",
    # Workbook import (ledger.programme.importer).
    "date_must_be_a_date": "a date cell is a date, not a number",
    "date_must_be_iso": "a date is written YYYY-MM-DD",
    "file_must_be_a_workbook": "an .xlsx file is an Excel workbook",
    "file_must_be_csv": "a CSV import is well-formed CSV with the sheet's columns",
    "file_must_be_xlsx": "an old .xls workbook is saved as .xlsx first",
    "file_must_be_xlsx_or_csv": "an import file is .xlsx or .csv",
    "file_must_fit_the_row_limit": "an import sheet is within the row limit",
    "flag_must_be_yes_or_no": "a flag cell is yes or no (是/否)",
    "kind_must_be_known": "a CSV import names a known sheet kind",
    "misuse_must_be_voucher_equals_amount": "a misuse cell lists SPEND_VOUCHER=AMOUNT items",
    "number_must_be_whole": "a count cell is a whole number",
    "value_must_be_one_of_the_choices": "a choice cell takes one of the column's choices",
}

_POLICY = {
    # Rules files (funding_rules.loader).
    "rules_file_must_be_valid": "a rules file parses and every parameter carries its source",
    "rules_file_must_match_pinned_fingerprint": "a rules file is unchanged since projects pinned it",
    "rules_must_define_a_bid_subsidy": "a subsidy is computed only under bid-subsidy rules",
    "rules_must_define_grant_shares": "tranche amounts are computed only under staged-grant rules",
    "rules_path_must_be_a_directory": "JIEBANG_RULES_PATH names a directory",
    "rules_version_must_exist": "a rules version named has a rules file",
    "rules_versions_must_not_overlap": "one city's rules versions do not overlap in time",
    # USCC (funding_rules.uscc).
    "uscc_check_character_must_match": "a USCC's check character matches GB 32100-2015",
    "uscc_division_code_must_be_digits": "a USCC's administrative division code is six digits",
    "uscc_must_be_valid": "a USCC passes every GB 32100-2015 check (or carries an override reason)",
    "uscc_must_have_18_characters": "a USCC has 18 characters",
    "uscc_must_use_gb32100_symbols": "a USCC uses only GB 32100-2015 symbols",
    "uscc_org_code_should_pass_gb11714": "warning: the embedded organisation code fails GB 11714",
    # Appropriations and parties.
    "budget_year_must_be_plausible": "a budget year lies in 2000..2100",
    "party_kind_must_be_known": "a party is an enterprise, university, institute or other",
    "party_must_have_name": "a party has a name",
    # Approval (立项).
    "approved_grant_must_be_given": "staged-grant rules need the approved grant",
    "bid_contracts_must_match_lanes": "bid-subsidy rules need one contracted bid per solver lane (request)",
    "bid_contracts_must_match_solvers": "bid-subsidy rules need one contracted bid per solver (facts)",
    "category_must_be_known": "a project is 技术攻关 or 成果转化",
    "demand_side_must_be_within_project_limit": "a demand side is within the limit of projects in progress",
    "demand_side_must_have_clean_credit": "a demand side has no bad credit in the look-back",
    "demand_side_must_meet_one_eligibility_test": "a demand side passes a revenue, R&D intensity or 创新标兵 test",
    "grant_must_fill_every_tranche": "a staged grant gives every tranche of every lane at least one fen",
    "grant_must_fit_available_appropriation": "an obligation fits the year's unobligated appropriation",
    "grant_must_not_exceed_maximum": "an obligation is within the city's maximum grant",
    "jbgs_solver_count_must_be_exact": "a 揭榜挂帅 project has exactly the rules' number of solvers",
    "mode_must_be_jbgs_or_saima": "a project's mode is 揭榜挂帅 or 赛马",
    "period_must_end_after_start": "a project period ends after it starts",
    "period_must_not_exceed_maximum_years": "a project period is within the rules' maximum years",
    "rules_city_must_match_project": "a project uses its own city's rules",
    "rules_version_must_be_in_force_on_approval_date": "a project uses the version in force on its approval date",
    "saima_racer_count_must_not_exceed_maximum": "a 赛马 project has at most the rules' racers",
    "saima_racer_count_must_reach_minimum": "a 赛马 project has at least the rules' racers",
    "solver_must_not_be_related_to_demand_side": "no solver is related to the demand side",
    "solvers_must_be_distinct": "each solver holds one lane",
    "subsidy_should_not_exceed_warning_level": "warning: an obligation above the review level is reviewed",
    "total_investment_must_include_bid_contracts": "total investment is at least the bid contracts",
    "total_investment_must_reach_minimum": "total investment reaches the rules' minimum",
    # Any event after approval.
    "amount_must_be_positive": "an amount recorded is positive; corrections are reversals",
    "event_must_follow_approval": "an event is dated on or after the project's approval",
    "lane_must_not_be_eliminated": "an eliminated 赛马 lane takes no further events",
    "project_must_not_be_closed": "a closed project takes no further events",
    "project_must_not_be_terminated": "a terminated or revoked project takes no further events",
    # Bid contracts and payments.
    "bid_payment_must_be_positive": "a bid payment is positive (facts-level check)",
    "bid_payment_must_not_exceed_contract": "bid payments stay within the lane's contract",
    "bid_payment_must_not_precede_approval": "a bid payment is not dated before approval (facts-level check)",
    "bid_payment_must_precede_acceptance": "under bid-subsidy rules no bid payment follows acceptance",
    "lane_must_be_active": "a bid payment goes to an active lane (facts-level check)",
    "obligation_must_fit_available_budget": "added bid money's subsidy ceiling fits the unobligated budget",
    "payment_form_must_be_known": "a bid payment is cash, equity or in kind",
    # Self-funding and spending.
    "budget_category_must_be_known": "a budget category is equipment, business, labour or indirect",
    "budget_line_must_be_known": "a budget line is a category or a mapped pre-2021 line",
    "equipment_at_threshold_must_be_justified": "equipment at or above the threshold carries a justification",
    "indirect_costs_must_not_exceed_cap": "indirect costs stay within the tiered cap on direct less equipment",
    "spending_must_fall_in_project_period": "spending is dated within the period, extensions included",
    "spending_must_not_exceed_advances": "only released money not yet spent is reported spent",
    # Stages and releases.
    "release_must_fit_obligation": "a release is within the lane's unreleased obligation",
    "release_must_have_something_due": "a release pays a positive amount",
    "stage_assessment_is_for_saima": "stage assessments are recorded for 赛马 projects only",
    "stage_must_be_known": "a stage is one the ledger records",
    "tranche_condition_must_be_met": "a tranche is released only when its conditions are recorded",
    "tranche_must_not_be_released_twice": "a tranche is released once",
    # Extension, termination, closure.
    "closure_must_cite_approval": "a closure cites the acceptance document",
    "closure_must_follow_acceptance": "a closure follows a passed acceptance (and audit report where required)",
    "closure_must_follow_final_release": "a closure follows the release of all subsidy earned",
    "extension_count_must_not_exceed_maximum": "extensions are within the rules' number",
    "extension_must_be_positive": "an extension is at least one month",
    "extension_must_be_requested_before_period_ends": "an extension is requested before the period ends",
    "extension_must_cite_approval": "an extension cites the bureau's approval",
    "extension_must_not_exceed_maximum_length": "an extension is within the rules' length",
    "misuse_must_name_a_spend_voucher": "a misused amount names a spend voucher of the project",
    "misuse_must_not_exceed_the_spend": "a misused amount is positive and at most that spend",
    "project_must_be_terminated_once": "a project is terminated or revoked once",
    "revocation_must_cite_approval": "a revocation cites the bureau's decision",
    "termination_must_cite_approval": "a termination cites the bureau's decision",
    # Recovery.
    "collection_must_not_exceed_outstanding": "a collection is within the clawback outstanding",
    "remittance_must_not_exceed_amount_owed": "a remittance is within what was collected and is owed",
    "write_off_must_have_reason_and_approval": "a write-off gives its reason and approval reference",
    "write_off_must_not_exceed_outstanding": "a write-off is within the clawback outstanding",
}

_REPORTS_AND_CLI = {
    "as_of_must_follow_approval": "an audit pack's date is on or after the project's approval",
    "city_must_be_known": "a forecast names a city with rules",
    "demo_event_must_be_accepted": "every event of the demo ledger is accepted",
    "demo_ledger_must_be_fresh": "the demo is built into a new ledger",
    "forecast_amounts_must_be_simulable": "forecast amounts are within what the simulation handles",
    "forecast_condition_must_be_known": "a forecast scenario names known tranche conditions",
    "forecast_must_not_start_before_as_of": "a forecast starts on or after its as-of date",
    "forecast_past_years_need_as_of": "a forecast of past years gives an as-of date",
    "forecast_years_must_be_bounded": "a forecast covers a bounded number of years",
    "forecast_years_must_be_plausible": "forecast years are plausible calendar years",
    "output_directory_must_be_writable": "a report's output directory can be written",
    "pipeline_file_must_exist": "a forecast pipeline file exists",
    "pipeline_must_be_valid": "a forecast pipeline file is well-formed",
    "runs_must_be_bounded": "a simulation's run count is within its limit",
    "scenario_file_must_exist": "a forecast scenario file exists",
    "scenario_must_be_valid": "a forecast scenario file is well-formed",
    "database_schema_must_be_known": "the database's schema revision is one this version knows",
    "import_must_have_no_problems": "an import is committed only when no row is refused",
    "checkpoint_must_exist": "an incremental verification starts from a checkpoint a full verify recorded",
    "ledger_must_verify_before_anchoring": "a ledger is anchored only when it verifies",
    "template_must_be_writable": "an import template can be written",
    "template_must_not_overwrite": "an import template never overwrites an existing file",
}

_ALL = {}
for _part in (_CORE, _PROGRAMME, _POLICY, _REPORTS_AND_CLI):
    _overlap = set(_ALL) & set(_part)
    assert not _overlap, f"refusal codes listed twice: {sorted(_overlap)}"
    _ALL.update(_part)

REFUSALS = MappingProxyType(_ALL)
"""Code -> one line saying what must hold."""
