"""Money out and back, as an officer records it through the command line, on both backends.

Spending reports against the advances, extension, termination with named misuse, 赛马
elimination, revocation, collection, remittance, the offset of a clawback against a later
release, write-off and the reversal of events something else relies on. Every amount is
computed by hand in the test, to the fen; every refusal is one line and writes nothing.
"""

from __future__ import annotations

import json
import re

from programme_fixtures import (
    JM_DEMAND,
    JM_FIRM,
    JM_INSTITUTE,
    JM_UNIVERSITY,
    UR_DEMAND,
    UR_SOLVER,
    assert_verified,
    balances_of,
    cli_balances,
    cli_refused,
    cli_show,
    traces,
    tranche_statuses,
    unbalanced_entries,
    yuan,
)

from ledger.core.money import format_fen

# The balances contract, spelled out so that a change to it is a visible change to this test.
CONTRACT_KEYS = (
    "self_funding_pledged", "self_funding_contributed", "self_funding_outstanding",
    "bid_contracted", "bid_paid_cash", "bid_paid_equity", "bid_paid_in_kind", "bid_unpaid",
    "subsidy_base", "subsidy_earned", "subsidy_released", "subsidy_payable",
    "grant_obligated", "grant_released", "grant_unreleased",
    "advances_outstanding", "fiscal_spent",
    "clawback_assessed", "clawback_collected", "clawback_outstanding",
)
AVAILABLE_2025 = "Assets:Memo:Budget:Available:Y2025"
FUNDING_2025 = "Income:Fiscal:Funding:Y2025"
DUE_TO_FINANCE = "Liabilities:Fiscal:DueToFinance"
APPROPRIATION = yuan("50,000,000.00")


# --- helpers ----------------------------------------------------------------------------


def jiangmen_parties(cli) -> None:
    """The Jiangmen demand side, three solvers and the 2025 appropriation of 5000万."""
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "600,000,000.00",
        "--rnd-ratio", "0.12", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_FIRM, "--name", "江门市某科技有限公司", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_INSTITUTE, "--name", "江门某民办研究院", "--kind", "institute", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "50,000,000.00", "--date", "2025-01-10")


def approve_jiangmen(cli, code: str, grant: str, *solvers: str, start: str = "2025-03-01", end: str = "2027-02-28") -> None:
    """Approve a Jiangmen project on 2025-02-01: 揭榜挂帅 with one solver, 赛马 with several."""
    solver_args = [arg for uscc in solvers for arg in ("--solver", uscc)]
    cli(
        "project", "approve", "--code", code, "--name", "江门攻关项目", "--city", "jiangmen",
        "--category", "技术攻关", "--mode", "赛马" if len(solvers) > 1 else "揭榜挂帅", "--demand", JM_DEMAND,
        *solver_args, "--total-investment", "8,000,000.00", "--grant", grant, "--start", start, "--end", end,
        "--date", "2025-02-01",
    )


def account_balance(cli, account: str) -> int:
    """One account's balance in fen (debits positive), 0 when it has no postings."""
    rows = json.loads(cli("balances", "--account", account, "--format", "json").stdout)
    return sum(yuan(row["balance"], allow_negative=True) for row in rows if row["account"] == account)


def entry_of(result) -> int:
    """The entry number a verb printed: "...，分录 12"."""
    found = re.search(r"分录 (\d+)$", result.stdout.strip().splitlines()[0])
    assert found, result.stdout
    return int(found.group(1))


def postings_of(cli, project: str, kind: str) -> dict[int, list[tuple[str, str]]]:
    """Entry -> its postings as sorted (account, amount) pairs, for one project's entries of one kind."""
    rows = json.loads(cli("journal", "--project", project, "--kind", kind, "--format", "json").stdout)
    entries: dict[int, list[tuple[str, str]]] = {}
    for row in rows:
        entries.setdefault(row["entry"], []).append((row["account"], row["amount"]))
    return {entry: sorted(postings) for entry, postings in entries.items()}


def legs(mapping: dict[str, str | tuple[str, ...]]) -> list[tuple[str, str]]:
    """Expected postings, written account: amount (or a tuple of amounts), as sorted pairs."""
    return sorted(
        (account, amount)
        for account, amounts in mapping.items()
        for amount in ((amounts,) if isinstance(amounts, str) else amounts)
    )


def no_unbalanced_entries(engine) -> None:
    with engine.connect() as conn:
        assert unbalanced_entries(conn) == []


# --- 1. Jiangmen 揭榜挂帅 terminated after one release and partial spending ------------------


def test_termination_claws_back_advances_plus_named_misuse_and_deobligates_the_rest(cli, engine):
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-101", "2,345,678.91", JM_UNIVERSITY)
    assert account_balance(cli, AVAILABLE_2025) == APPROPRIATION - yuan("2,345,678.91")
    # 234567891 fen at 60/40: 140740734.6 and 93827156.4 floor to 140740734 and 93827156;
    # the one leftover fen goes to the earlier tranche.
    shown = cli_show(cli, "JM2025-101")
    assert [(t["name"], t["amount"]) for t in shown["tranches"]] == [("contract", "1407407.35"), ("midterm", "938271.56")]

    cli("stage", "--project", "JM2025-101", "--stage", "contract_signed", "--passed", "--date", "2025-03-01")
    cli("release", "--project", "JM2025-101", "--date", "2025-03-10", "--voucher", "ZF-2025-101")
    cli("spend", "--project", "JM2025-101", "--amount", "300,000.00", "--category", "业务费", "--counterparty", "某材料公司",
        "--date", "2025-04-01", "--voucher", "PZ-101")
    cli("spend", "--project", "JM2025-101", "--amount", "123,456.78", "--category", "劳务费", "--date", "2025-05-01",
        "--voucher", "PZ-102")
    cli("spend", "--project", "JM2025-101", "--amount", "200,000.00", "--category", "设备费", "--counterparty", "某仪器公司",
        "--date", "2025-06-01", "--voucher", "PZ-103")

    spent = yuan("300,000.00") + yuan("123,456.78") + yuan("200,000.00")
    advances = yuan("1,407,407.35") - spent
    assert advances == yuan("783,950.57")
    before = cli_balances(cli, "JM2025-101")
    assert tuple(before) == CONTRACT_KEYS
    assert before == balances_of(
        grant_obligated="2345678.91",
        grant_released="1407407.35",
        grant_unreleased="938271.56",
        advances_outstanding="783950.57",
        fiscal_spent="623456.78",
    )

    # A misused amount must cite a spend voucher of this project and not exceed that spend.
    cli_refused(cli, engine, "terminate", "--project", "JM2025-101", "--reference", "江科〔2025〕9号",
                "--misused", "PZ-999=1.00", "--date", "2025-09-01", says="PZ-999")
    cli_refused(cli, engine, "terminate", "--project", "JM2025-101", "--reference", "江科〔2025〕9号",
                "--misused", "PZ-102=123,456.79", "--date", "2025-09-01", says="exceeds that spend")

    terminated = cli("terminate", "--project", "JM2025-101", "--reference", "江科〔2025〕9号",
                     "--misused", "PZ-102=20,000.50", "--date", "2025-09-01", "--voucher", "ZZ-2025-09")
    clawback = advances + yuan("20,000.50")
    assert clawback == yuan("803,951.07")
    after_termination = balances_of(
        grant_obligated="1407407.35",  # what was released; the unreleased 40% is deobligated
        grant_released="1407407.35",
        advances_outstanding="0.00",
        fiscal_spent="603456.28",  # the misused 20,000.50 is reclassified out of spending
        clawback_assessed="803951.07",
        clawback_outstanding="803951.07",
    )
    assert cli_balances(cli, "JM2025-101") == after_termination
    # One entry assesses the clawback, reclassifies the misuse and deobligates the rest.
    assert postings_of(cli, "JM2025-101", "termination") == {
        entry_of(terminated): legs({
            "Assets:Fiscal:Advances:JM2025-101:L1": "-783950.57",
            "Expenses:Fiscal:Grant:JM2025-101:L1:Labour": "-20000.50",
            "Assets:Fiscal:ClawbackReceivable:JM2025-101:L1": "803951.07",
            "Assets:Memo:Grant:Unreleased:JM2025-101:L1": "-938271.56",
            AVAILABLE_2025: "938271.56",
        })
    }
    [trace] = traces(engine, "termination", "JM2025-101")
    assert trace["lanes"]["L1"] == {
        "advances_outstanding": "783950.57",
        "unreleased_obligation": "938271.56",
        "misused": {"PZ-102": "20000.50"},
        "formula": "advances outstanding + misused",
        "clawback": "803951.07",
        "deobligated": "938271.56",
    }
    assert trace["reference"] == "江科〔2025〕9号"
    # The unreleased 40% is back in the year's available budget.
    assert account_balance(cli, AVAILABLE_2025) == APPROPRIATION - yuan("2,345,678.91") + yuan("938,271.56")
    shown = cli_show(cli, "JM2025-101")
    assert shown["status"] == "terminated"
    assert tranche_statuses(shown) == {("L1", 1): "released", ("L1", 2): "cancelled"}

    # Nothing more happens to a terminated project except recovery.
    cli_refused(cli, engine, "terminate", "--project", "JM2025-101", "--reference", "江科〔2025〕10号",
                "--date", "2025-09-02", says=("already terminated", "2025-09-01"))
    cli_refused(cli, engine, "revoke", "--project", "JM2025-101", "--reference", "江科〔2025〕10号",
                "--date", "2025-09-02", says="already terminated")
    cli_refused(cli, engine, "spend", "--project", "JM2025-101", "--amount", "0.01", "--category", "业务费",
                "--date", "2025-09-02", says=("terminated on 2025-09-01", "spending"))
    cli_refused(cli, engine, "release", "--project", "JM2025-101", "--date", "2025-09-02",
                says=("terminated on 2025-09-01", "release"))
    cli_refused(cli, engine, "stage", "--project", "JM2025-101", "--stage", "midterm", "--passed", "--date", "2025-09-02",
                says="terminated")

    # Collection: one fen over the outstanding clawback is refused, exactly the outstanding is taken.
    cli_refused(cli, engine, "collect", "--project", "JM2025-101", "--amount", format_fen(clawback + 1),
                "--date", "2025-10-10", says=("803,951.08", "803,951.07"))
    cli("collect", "--project", "JM2025-101", "--amount", format_fen(clawback), "--date", "2025-10-10", "--voucher", "JK-2025-31")
    after_collection = after_termination | {"clawback_collected": "803951.07", "clawback_outstanding": "0.00"}
    assert cli_balances(cli, "JM2025-101") == after_collection
    # Collected money is owed to the finance bureau (应缴财政款) until remitted.
    assert account_balance(cli, DUE_TO_FINANCE) == -clawback
    assert account_balance(cli, "Assets:Fiscal:Bank:Recoveries") == clawback
    cli_refused(cli, engine, "collect", "--project", "JM2025-101", "--amount", "0.01", "--date", "2025-10-11",
                says="exceeds the clawback outstanding")

    cli_refused(cli, engine, "remit", "--amount", format_fen(clawback + 1), "--date", "2025-10-20", says="exceeds")
    cli("remit", "--amount", format_fen(clawback), "--date", "2025-10-20", "--voucher", "JK-2025-40")
    assert cli_balances(cli, "JM2025-101") == after_collection
    assert account_balance(cli, DUE_TO_FINANCE) == 0
    assert account_balance(cli, "Assets:Fiscal:Bank:Recoveries") == 0
    cli_refused(cli, engine, "remit", "--amount", "0.01", "--date", "2025-10-21", says="exceeds")

    no_unbalanced_entries(engine)
    assert_verified(cli)


# --- 2. 赛马 lane eliminated at the stage assessment ---------------------------------------


def test_eliminated_racer_owes_its_unspent_advance_and_frees_its_obligation_while_others_race_on(cli, engine):
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-102", "3,000,000.01", JM_UNIVERSITY, JM_FIRM, JM_INSTITUTE)
    # 300000001 fen among three: 100000001 / 100000000 / 100000000; each 60/40.
    amounts = {(t["lane"], t["seq"]): t["amount"] for t in cli_show(cli, "JM2025-102")["tranches"]}
    assert amounts == {
        ("L1", 1): "600000.01", ("L1", 2): "400000.00",
        ("L2", 1): "600000.00", ("L2", 2): "400000.00",
        ("L3", 1): "600000.00", ("L3", 2): "400000.00",
    }
    cli("stage", "--project", "JM2025-102", "--stage", "contract_signed", "--passed", "--date", "2025-03-01")
    for lane in ("L1", "L2", "L3"):
        cli("release", "--project", "JM2025-102", "--lane", lane, "--date", "2025-03-10")
    cli("spend", "--project", "JM2025-102", "--lane", "L2", "--amount", "150,000.00", "--category", "业务费",
        "--date", "2025-04-01", "--voucher", "PZ-L2-1")
    available_before = account_balance(cli, AVAILABLE_2025)
    assert available_before == APPROPRIATION - yuan("3,000,000.01")

    cli("stage", "--project", "JM2025-102", "--stage", "stage_assessment", "--lane", "L1", "--passed", "--date", "2025-09-01")
    cli("stage", "--project", "JM2025-102", "--stage", "stage_assessment", "--lane", "L2", "--failed", "--date", "2025-09-01",
        "--reference", "江科评〔2025〕3号")
    cli("stage", "--project", "JM2025-102", "--stage", "stage_assessment", "--lane", "L3", "--passed", "--date", "2025-09-01")

    # The eliminated lane's unspent 450,000.00 is assessed; its 400,000.00 returns to the budget.
    assert cli_balances(cli, "JM2025-102", lane="L2") == balances_of(
        grant_obligated="600000.00",
        grant_released="600000.00",
        fiscal_spent="150000.00",
        clawback_assessed="450000.00",
        clawback_outstanding="450000.00",
    )
    assert account_balance(cli, AVAILABLE_2025) == available_before + yuan("400,000.00")
    shown = cli_show(cli, "JM2025-102")
    assert shown["status"] == "active"
    assert [(lane["lane"], lane["status"]) for lane in shown["lanes"]] == [("L1", "active"), ("L2", "eliminated"), ("L3", "active")]
    assert tranche_statuses(shown)[("L2", 2)] == "cancelled"

    # The surviving lanes go on: their mid-term tranches are released and they can spend.
    cli("release", "--project", "JM2025-102", "--lane", "L1", "--date", "2025-09-10")
    cli("release", "--project", "JM2025-102", "--lane", "L3", "--date", "2025-09-10")
    cli("spend", "--project", "JM2025-102", "--lane", "L3", "--amount", "1,000,000.00", "--category", "劳务费",
        "--date", "2025-10-01")
    assert cli_balances(cli, "JM2025-102", lane="L1") == balances_of(
        grant_obligated="1000000.01", grant_released="1000000.01", advances_outstanding="1000000.01",
    )
    assert cli_balances(cli, "JM2025-102", lane="L3") == balances_of(
        grant_obligated="1000000.00", grant_released="1000000.00", fiscal_spent="1000000.00",
    )
    # The eliminated lane gets nothing more and reports no more spending.
    cli_refused(cli, engine, "release", "--project", "JM2025-102", "--lane", "L2", "--date", "2025-09-10", says="eliminated")
    cli_refused(cli, engine, "spend", "--project", "JM2025-102", "--lane", "L2", "--amount", "0.01", "--category", "业务费",
                "--date", "2025-09-10", says="eliminated")
    assert tranche_statuses(cli_show(cli, "JM2025-102")) == {
        ("L1", 1): "released", ("L1", 2): "released",
        ("L2", 1): "released", ("L2", 2): "cancelled",
        ("L3", 1): "released", ("L3", 2): "released",
    }
    assert cli_balances(cli, "JM2025-102") == balances_of(
        grant_obligated="2600000.01",
        grant_released="2600000.01",
        advances_outstanding="1000000.01",
        fiscal_spent="1150000.00",
        clawback_assessed="450000.00",
        clawback_outstanding="450000.00",
    )
    # Its clawback is collected like any other, lane by lane.
    cli_refused(cli, engine, "collect", "--project", "JM2025-102", "--lane", "L2", "--amount", "450,000.01",
                "--date", "2025-10-10", says="exceeds the clawback outstanding")
    cli_refused(cli, engine, "collect", "--project", "JM2025-102", "--lane", "L1", "--amount", "0.01",
                "--date", "2025-10-10", says="exceeds the clawback outstanding")
    cli("collect", "--project", "JM2025-102", "--lane", "L2", "--amount", "450,000.00", "--date", "2025-10-10")
    assert cli_balances(cli, "JM2025-102", lane="L2")["clawback_outstanding"] == "0.00"
    no_unbalanced_entries(engine)
    assert_verified(cli)


def test_misuse_named_on_an_eliminated_lanes_voucher_is_assessed(cli, engine):
    """Terminating a 赛马 project with --misused citing a spend of an already eliminated lane
    assesses that misuse on the eliminated lane, on top of its earlier clawback."""
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-108", "1,000,000.00", JM_UNIVERSITY, JM_FIRM)
    cli("stage", "--project", "JM2025-108", "--stage", "contract_signed", "--passed", "--date", "2025-03-01")
    cli("release", "--project", "JM2025-108", "--lane", "L2", "--date", "2025-03-10")
    cli("spend", "--project", "JM2025-108", "--lane", "L2", "--amount", "100,000.00", "--category", "业务费",
        "--date", "2025-04-01", "--voucher", "PZ-E")
    cli("stage", "--project", "JM2025-108", "--stage", "stage_assessment", "--lane", "L2", "--failed", "--date", "2025-05-01")
    assert cli_balances(cli, "JM2025-108", lane="L2")["clawback_assessed"] == "200000.00"
    result = cli("terminate", "--project", "JM2025-108", "--reference", "江科〔2025〕11号", "--misused", "PZ-E=50,000.00",
                 "--date", "2025-06-01", expect=None)
    assert result.exit_code == 0, result.output
    assert cli_balances(cli, "JM2025-108", lane="L2")["clawback_assessed"] == "250000.00"
    assert cli_balances(cli, "JM2025-108", lane="L2")["fiscal_spent"] == "50000.00"


# --- 3. Recoveries go back to the treasury, never netted against another project -------------


def _terminated_owing_600k(cli) -> None:
    """JM2025-201 (揭榜挂帅, solved by JM_FIRM): 600,000.00 released, nothing spent, terminated."""
    approve_jiangmen(cli, "JM2025-201", "1,000,000.00", JM_FIRM)
    cli("stage", "--project", "JM2025-201", "--stage", "contract_signed", "--passed", "--date", "2025-03-01")
    cli("release", "--project", "JM2025-201", "--date", "2025-03-10")  # 60% of 1,000,000.00
    cli("terminate", "--project", "JM2025-201", "--reference", "江科〔2025〕90号", "--date", "2025-09-01")
    assert cli_balances(cli, "JM2025-201")["clawback_outstanding"] == "600000.00"


def test_a_clawback_stays_owed_while_the_same_solver_is_paid_in_full_on_another_project(cli, engine):
    """The issue's scenario: two Jiangmen projects with the same solver; one terminated with
    600,000.00 outstanding, the other's first tranche paid in full from the treasury; the
    clawback stays outstanding until collected and remitted (应缴财政款)."""
    jiangmen_parties(cli)
    _terminated_owing_600k(cli)
    approve_jiangmen(cli, "JM2025-202", "1,000,000.00", JM_FIRM)
    cli("stage", "--project", "JM2025-202", "--stage", "contract_signed", "--passed", "--date", "2025-10-01")
    funding_before = account_balance(cli, FUNDING_2025)

    released = cli("release", "--project", "JM2025-202", "--date", "2025-10-10", "--voucher", "ZF-2025-202")

    # The whole 600,000.00 leaves the treasury; nothing is netted.
    assert account_balance(cli, FUNDING_2025) - funding_before == -yuan("600,000.00")
    assert postings_of(cli, "JM2025-202", "release") == {
        entry_of(released): legs({
            "Assets:Memo:Grant:Released:JM2025-202:L1": "600000.00",
            "Assets:Memo:Grant:Unreleased:JM2025-202:L1": "-600000.00",
            "Assets:Fiscal:Advances:JM2025-202:L1": "600000.00",
            FUNDING_2025: "-600000.00",
        })
    }
    [trace] = traces(engine, "release", "JM2025-202")
    assert "offset" not in trace
    owing = balances_of(grant_obligated="600000.00", grant_released="600000.00",
                        clawback_assessed="600000.00", clawback_outstanding="600000.00")
    assert cli_balances(cli, "JM2025-201") == owing
    # An officer cannot ask for netting where the rules send recoveries back (one line, nothing written).
    cli("stage", "--project", "JM2025-202", "--stage", "midterm", "--passed", "--date", "2026-03-01")
    cli_refused(cli, engine, "release", "--project", "JM2025-202", "--date", "2026-03-10", "--offset-approval", "江科〔2026〕1号",
                says=("asks to net a clawback", "收回结余和违规使用的财政资金", "jiebang collect"))
    assert cli_balances(cli, "JM2025-201") == owing
    assert account_balance(cli, DUE_TO_FINANCE) == 0

    # Collected: owed to the finance bureau until remitted; one fen over is refused each time.
    cli_refused(cli, engine, "collect", "--project", "JM2025-201", "--amount", "600,000.01", "--date", "2025-11-01",
                says="exceeds the clawback outstanding")
    cli("collect", "--project", "JM2025-201", "--amount", "600,000.00", "--date", "2025-11-01", "--voucher", "JK-2025-77")
    assert cli_balances(cli, "JM2025-201") == owing | {"clawback_collected": "600000.00", "clawback_outstanding": "0.00"}
    assert account_balance(cli, DUE_TO_FINANCE) == -yuan("600,000.00")
    assert account_balance(cli, "Assets:Fiscal:Bank:Recoveries") == yuan("600,000.00")
    cli_refused(cli, engine, "remit", "--amount", "600,000.01", "--date", "2025-11-20", says="exceeds")
    cli("remit", "--amount", "600,000.00", "--date", "2025-11-20", "--voucher", "JK-2025-80")
    assert account_balance(cli, DUE_TO_FINANCE) == 0
    assert account_balance(cli, "Assets:Fiscal:Bank:Recoveries") == 0
    no_unbalanced_entries(engine)
    assert_verified(cli)


OFFSET_RULES = "jiangmen-offset-example"


def _rules_allowing_offsets(tmp_path, monkeypatch) -> None:
    """A later Jiangmen version that allows netting (with approval), found via JIEBANG_RULES_PATH."""
    from funding_rules.loader import RULES_DIR

    text = (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8")
    text = text.replace('version = "jiangmen-2023-trial"', f'version = "{OFFSET_RULES}"')
    text = text.replace("effective_from = 2023-01-01", "effective_from = 2024-06-01")
    old = text[text.index("clawback_offset_allowed = {"):text.index("\n", text.index("clawback_offset_allowed = {"))]
    text = text.replace(old, 'clawback_offset_allowed = { value = true, source = "DEFAULT: test rules that allow netting with approval" }')
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / f"{OFFSET_RULES}.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("JIEBANG_RULES_PATH", str(folder))


def test_where_netting_is_allowed_another_projects_clawback_is_still_never_netted(cli, engine, tmp_path, monkeypatch):
    _rules_allowing_offsets(tmp_path, monkeypatch)
    jiangmen_parties(cli)
    _terminated_owing_600k(cli)
    assert cli_show(cli, "JM2025-201")["rules_version"] == OFFSET_RULES
    approve_jiangmen(cli, "JM2025-202", "1,000,000.00", JM_FIRM)
    cli("stage", "--project", "JM2025-202", "--stage", "contract_signed", "--passed", "--date", "2025-10-01")
    funding_before = account_balance(cli, FUNDING_2025)
    # The approval is accepted under these rules, but the clawback is on another project.
    cli("release", "--project", "JM2025-202", "--date", "2025-10-10", "--offset-approval", "江科〔2025〕91号")
    assert account_balance(cli, FUNDING_2025) - funding_before == -yuan("600,000.00")
    assert cli_balances(cli, "JM2025-201")["clawback_outstanding"] == "600000.00"
    assert "offset" not in traces(engine, "release", "JM2025-202")[0]
    assert_verified(cli)


def test_netting_takes_only_the_same_projects_clawback_owed_by_the_same_unit():
    from funding_rules.checks import Receivable, offset_takes

    owed = [
        Receivable("Assets:Fiscal:ClawbackReceivable:JM2025-201:L1", "JM2025-201", JM_FIRM, yuan("600,000.00")),
        Receivable("Assets:Fiscal:ClawbackReceivable:JM2025-202:L2", "JM2025-202", JM_INSTITUTE, yuan("50,000.00")),
        Receivable("Assets:Fiscal:ClawbackReceivable:JM2025-202:L1", "JM2025-202", JM_FIRM, yuan("70,000.00")),
    ]
    assert offset_takes(owed, "JM2025-202", JM_FIRM, yuan("600,000.00")) == [
        ("Assets:Fiscal:ClawbackReceivable:JM2025-202:L1", yuan("70,000.00")),
    ]
    # Never more than the release, one fen either side.
    assert offset_takes(owed, "JM2025-202", JM_FIRM, yuan("70,000.00") - 1) == [
        ("Assets:Fiscal:ClawbackReceivable:JM2025-202:L1", yuan("70,000.00") - 1),
    ]
    assert offset_takes(owed, "JM2025-202", JM_FIRM, yuan("70,000.00") + 1) == [
        ("Assets:Fiscal:ClawbackReceivable:JM2025-202:L1", yuan("70,000.00")),
    ]
    assert offset_takes(owed, "JM2025-203", JM_FIRM, yuan("600,000.00")) == []
    assert offset_takes(owed, "JM2025-201", JM_INSTITUTE, yuan("600,000.00")) == []


# --- 4. Spending rules ------------------------------------------------------------------------


def test_spending_is_bounded_by_advances_period_equipment_justification_and_indirect_cap(cli, engine):
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-301", "3,000,000.00", JM_UNIVERSITY, start="2025-03-01", end="2027-02-28")
    project = ("--project", "JM2025-301")
    # Before the release there is nothing to spend.
    cli_refused(cli, engine, "spend", *project, "--amount", "0.01", "--category", "业务费", "--date", "2025-03-05",
                says="exceeds its advances outstanding 0.00")
    cli("stage", *project, "--stage", "contract_signed", "--passed", "--date", "2025-02-10")
    cli("release", *project, "--date", "2025-02-15")  # 1,800,000.00

    # The project period, both ends inclusive.
    cli_refused(cli, engine, "spend", *project, "--amount", "100.00", "--category", "业务费", "--date", "2025-02-28",
                says=("outside JM2025-301's period", "2025-03-01..2027-02-28"))
    cli("spend", *project, "--amount", "100.00", "--category", "业务费", "--date", "2025-03-01")
    cli_refused(cli, engine, "spend", *project, "--amount", "100.00", "--category", "业务费", "--date", "2027-03-01",
                says="outside JM2025-301's period")
    cli("spend", *project, "--amount", "100.00", "--category", "业务费", "--date", "2027-02-28")

    # Equipment at the 500,000.00 threshold needs a justification; one fen below does not.
    cli_refused(cli, engine, "spend", *project, "--amount", "500,000.00", "--category", "设备费", "--date", "2025-04-01",
                says=("500,000.00", "--justification"))
    cli("spend", *project, "--amount", "500,000.00", "--category", "设备费", "--date", "2025-04-01",
        "--justification", "五轴联动测试台：规格与必要性说明见附件3")
    cli("spend", *project, "--amount", "499,999.99", "--category", "设备费", "--date", "2025-04-02")

    # A pre-2021 budget line maps onto the 2021 classes: 材料费 is 业务费 (business).
    material = cli("spend", *project, "--amount", "123,456.59", "--category", "材料费", "--date", "2025-05-01",
                   "--voucher", "PZ-CL-1")
    assert postings_of(cli, "JM2025-301", "spend")[entry_of(material)] == legs({
        "Expenses:Fiscal:Grant:JM2025-301:L1:Business": "123456.59",
        "Assets:Fiscal:Advances:JM2025-301:L1": "-123456.59",
    })
    cli("spend", *project, "--amount", "100,000.00", "--category", "labour", "--date", "2025-05-02")

    # Indirect costs: 30% of (direct − equipment) below 5,000,000.00, floored to the fen.
    direct = yuan("200.00") + yuan("500,000.00") + yuan("499,999.99") + yuan("123,456.59") + yuan("100,000.00")
    equipment = yuan("999,999.99")
    cap = (direct - equipment) * 3 // 10
    assert (direct - equipment, cap) == (yuan("223,656.59"), yuan("67,096.97"))  # 67,096.977 -> 67,096.97
    message = cli_refused(
        cli, engine, "spend", *project, "--amount", format_fen(cap + 1), "--category", "间接费用", "--date", "2025-06-01",
        says=("67,096.98", "above the cap 67,096.97", "direct 1,223,656.58", "equipment 999,999.99"),
    )
    assert "国办发〔2021〕32号" in message  # the rule the cap comes from
    cli("spend", *project, "--amount", format_fen(cap), "--category", "间接费用", "--date", "2025-06-01")
    cli_refused(cli, engine, "spend", *project, "--amount", "0.01", "--category", "indirect", "--date", "2025-06-02",
                says="above the cap 67,096.97")

    # Advances: one fen over what is left is refused, exactly what is left is accepted.
    left = yuan("1,800,000.00") - direct - cap
    assert cli_balances(cli, "JM2025-301")["advances_outstanding"] == format_fen(left) == "509246.45"
    cli_refused(cli, engine, "spend", *project, "--amount", format_fen(left + 1), "--category", "业务费", "--date", "2025-07-01",
                says=("509,246.46", "exceeds its advances outstanding 509,246.45"))
    cli("spend", *project, "--amount", format_fen(left), "--category", "业务费", "--date", "2025-07-01")
    assert cli_balances(cli, "JM2025-301") == balances_of(
        grant_obligated="3000000.00", grant_released="1800000.00", grant_unreleased="1200000.00",
        advances_outstanding="0.00", fiscal_spent="1800000.00",
    )
    # Unknown categories are refused with the list of known ones.
    cli_refused(cli, engine, "spend", *project, "--amount", "0.01", "--category", "招待费", "--date", "2025-07-02",
                says="budget category")
    no_unbalanced_entries(engine)
    assert_verified(cli)


# --- 5. Extension ---------------------------------------------------------------------------


def test_one_extension_of_at_most_twelve_months_requested_in_time_moves_the_period_end(cli, engine):
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-401", "3,000,000.00", JM_UNIVERSITY, start="2025-03-01", end="2027-02-28")
    project = ("--project", "JM2025-401")
    cli("stage", *project, "--stage", "contract_signed", "--passed", "--date", "2025-03-01")
    cli("release", *project, "--date", "2025-03-10")

    cli_refused(cli, engine, "extend", *project, "--months", "13", "--reference", "江科〔2027〕1号", "--reason", "不可抗力", "--date", "2027-01-15",
                says=("13 months", "the limit is 12"))
    cli_refused(cli, engine, "extend", *project, "--months", "12", "--reference", "江科〔2027〕1号", "--reason", "不可抗力", "--date", "2027-03-01",
                says="after the period ended on 2027-02-28")
    # Spending after the end is refused until the extension is recorded.
    cli_refused(cli, engine, "spend", *project, "--amount", "1,000.00", "--category", "业务费", "--date", "2027-03-01",
                says="outside JM2025-401's period")

    # On the last day of the period, twelve months are still accepted.
    cli("extend", *project, "--months", "12", "--reference", "江科〔2027〕2号", "--reason", "不可抗力", "--date", "2027-02-28")
    assert cli_show(cli, "JM2025-401")["end_date"] == "2028-02-28"
    [trace] = traces(engine, "extension", "JM2025-401")
    assert (trace["end_before"], trace["end_after"], trace["reference"]) == ("2027-02-28", "2028-02-28", "江科〔2027〕2号")
    cli("spend", *project, "--amount", "1,000.00", "--category", "业务费", "--date", "2027-03-01")
    cli("spend", *project, "--amount", "1,000.00", "--category", "业务费", "--date", "2028-02-28")
    cli_refused(cli, engine, "spend", *project, "--amount", "1,000.00", "--category", "业务费", "--date", "2028-02-29",
                says="2025-03-01..2028-02-28")

    # A second extension is refused: the rules allow one.
    cli_refused(cli, engine, "extend", *project, "--months", "1", "--reference", "江科〔2028〕1号", "--reason", "不可抗力", "--date", "2027-06-01",
                says=("number 2", "the limit is 1"))
    assert cli_balances(cli, "JM2025-401")["fiscal_spent"] == "2000.00"
    assert_verified(cli)


# --- 6. Revocation and write-off --------------------------------------------------------------


def test_revocation_recovers_everything_released_and_a_write_off_needs_reason_and_approval(cli, engine):
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-501", "3,000,000.00", JM_UNIVERSITY)
    project = ("--project", "JM2025-501")
    cli("stage", *project, "--stage", "contract_signed", "--passed", "--date", "2025-03-01")
    cli("release", *project, "--date", "2025-03-10")  # 1,800,000.00
    cli("spend", *project, "--amount", "300,000.00", "--category", "设备费", "--date", "2025-04-01")
    cli("spend", *project, "--amount", "200,000.00", "--category", "业务费", "--date", "2025-04-02")
    cli("spend", *project, "--amount", "0.01", "--category", "劳务费", "--date", "2025-04-03")
    available_before = account_balance(cli, AVAILABLE_2025)

    revoked = cli("revoke", *project, "--reference", "江科〔2025〕77号", "--date", "2025-08-01")
    # Rate 1.00 × 1,800,000.00 released: the unspent advance first, then what was spent.
    assert cli_balances(cli, "JM2025-501") == balances_of(
        grant_obligated="1800000.00", grant_released="1800000.00",
        advances_outstanding="0.00", fiscal_spent="0.00",
        clawback_assessed="1800000.00", clawback_outstanding="1800000.00",
    )
    assert postings_of(cli, "JM2025-501", "revocation") == {
        entry_of(revoked): legs({
            "Assets:Fiscal:Advances:JM2025-501:L1": "-1299999.99",
            "Expenses:Fiscal:Grant:JM2025-501:L1:Equipment": "-300000.00",
            "Expenses:Fiscal:Grant:JM2025-501:L1:Business": "-200000.00",
            "Expenses:Fiscal:Grant:JM2025-501:L1:Labour": "-0.01",
            "Assets:Fiscal:ClawbackReceivable:JM2025-501:L1": "1800000.00",
            "Assets:Memo:Grant:Unreleased:JM2025-501:L1": "-1200000.00",
            AVAILABLE_2025: "1200000.00",
        })
    }
    [trace] = traces(engine, "revocation", "JM2025-501")
    assert (trace["lanes"]["L1"]["rate"], trace["lanes"]["L1"]["clawback"]) == ("1.00", "1800000.00")
    assert account_balance(cli, AVAILABLE_2025) == available_before + yuan("1,200,000.00")
    assert cli_show(cli, "JM2025-501")["status"] == "terminated"
    cli_refused(cli, engine, "revoke", *project, "--reference", "江科〔2025〕78号", "--date", "2025-08-02", says="already")

    cli("collect", *project, "--amount", "1,000,000.00", "--date", "2025-09-01")
    # A write-off needs a reason and an approval reference: blank is refused, missing is a usage error.
    cli_refused(cli, engine, "write-off", *project, "--amount", "1.00", "--reason", " ", "--approval", "江财〔2025〕2号",
                "--date", "2025-10-01", says=("--reason", "--approval"))
    cli_refused(cli, engine, "write-off", *project, "--amount", "1.00", "--reason", "单位注销", "--approval", "",
                "--date", "2025-10-01", says="--approval")
    cli("write-off", *project, "--amount", "1.00", "--reason", "单位注销", "--date", "2025-10-01", expect=2)
    # It cannot exceed what is outstanding: one fen over is refused, exactly the rest is accepted.
    cli_refused(cli, engine, "write-off", *project, "--amount", "800,000.01", "--reason", "单位注销",
                "--approval", "江财〔2025〕2号", "--date", "2025-10-01", says=("800,000.01", "800,000.00"))
    cli("write-off", *project, "--amount", "800,000.00", "--reason", "单位注销", "--approval", "江财〔2025〕2号",
        "--date", "2025-10-01")
    assert cli_balances(cli, "JM2025-501") == balances_of(
        grant_obligated="1800000.00", grant_released="1800000.00",
        clawback_assessed="1800000.00", clawback_collected="1000000.00", clawback_outstanding="0.00",
    )
    assert account_balance(cli, "Expenses:Fiscal:WriteOffs:JM2025-501") == yuan("800,000.00")
    [trace] = traces(engine, "write_off", "JM2025-501")
    assert (trace["reason"], trace["approval"], trace["outstanding_before"]) == ("单位注销", "江财〔2025〕2号", "800000.00")
    cli_refused(cli, engine, "write-off", *project, "--amount", "0.01", "--reason", "单位注销",
                "--approval", "江财〔2025〕3号", "--date", "2025-10-02", says="exceeds the clawback outstanding")
    no_unbalanced_entries(engine)
    assert_verified(cli)


def test_urumqi_revocation_recovers_the_released_subsidy_and_forfeits_the_unpaid_one(cli, engine):
    cli("party", "add", "--uscc", UR_DEMAND, "--name", "新疆某光伏有限公司", "--date", "2025-01-02")
    cli("party", "add", "--uscc", UR_SOLVER, "--name", "新疆某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "50,000,000.00", "--date", "2025-01-10")
    cli("project", "approve", "--code", "UR2025-601", "--name", "光伏组件智能运维", "--city", "urumqi",
        "--category", "成果转化", "--mode", "jbgs", "--demand", UR_DEMAND, "--solver", UR_SOLVER,
        "--total-investment", "8,000,000.00", "--bid", "3,000,000.00", "--start", "2025-07-01", "--end", "2027-06-30",
        "--date", "2025-06-20")
    project = ("--project", "UR2025-601")
    cli("stage", *project, "--stage", "contract_signed", "--date", "2025-07-01")
    cli("bid", "pay", *project, "--amount", "1,000,000.00", "--form", "cash", "--date", "2025-07-10")
    cli("release", *project, "--date", "2025-07-15")  # the 400,000.00 earned
    # 0.40 × 1,500,000.01 = 600,000.004 -> 600,000.00 earned: 200,000.00 earned but unpaid.
    cli("bid", "pay", *project, "--amount", "500,000.01", "--form", "cash", "--date", "2025-08-01")
    paid = balances_of(
        bid_contracted="3000000.00", bid_paid_cash="1500000.01", bid_unpaid="1499999.99", subsidy_base="1500000.01",
    )
    assert cli_balances(cli, "UR2025-601") == paid | {
        "subsidy_earned": "600000.00", "subsidy_released": "400000.00", "subsidy_payable": "200000.00",
        "grant_obligated": "1200000.00", "grant_released": "400000.00", "grant_unreleased": "800000.00",
    }
    available_before = account_balance(cli, AVAILABLE_2025)

    revoked = cli("revoke", *project, "--reference", "乌科〔2025〕77号", "--date", "2025-09-01")
    # Everything released is recovered (rate 1.00); the unpaid 200,000.00 is forfeited (rules
    # default); the 800,000.00 never released goes back to the budget.
    # The subsidy paid stays on record as released; what it earns net of the recovery is 0.
    assert cli_balances(cli, "UR2025-601") == paid | {
        "subsidy_released": "400000.00",
        "grant_obligated": "400000.00", "grant_released": "400000.00",
        "clawback_assessed": "400000.00", "clawback_outstanding": "400000.00",
    }
    assert postings_of(cli, "UR2025-601", "revocation") == {
        entry_of(revoked): legs({
            # 400,000.00 recovered from the subsidy paid, 200,000.00 forfeited unpaid.
            "Expenses:Fiscal:Subsidy:UR2025-601:L1": ("-400000.00", "-200000.00"),
            "Liabilities:Fiscal:SubsidyPayable:UR2025-601:L1": "200000.00",
            "Assets:Fiscal:ClawbackReceivable:UR2025-601:L1": "400000.00",
            "Assets:Memo:Grant:Unreleased:UR2025-601:L1": "-800000.00",
            AVAILABLE_2025: "800000.00",
            # The use register (备查): the recovered subsidy leaves it, none was reported spent.
            "Assets:Memo:Subsidy:Unreported:UR2025-601:L1": "-400000.00",
            "Equity:Memo:Subsidy:Released:UR2025-601:L1": "400000.00",
        })
    }
    [trace] = traces(engine, "revocation", "UR2025-601")
    assert trace["lanes"]["L1"]["subsidy_forfeited"] == "200000.00"
    assert account_balance(cli, AVAILABLE_2025) == available_before + yuan("800,000.00")
    cli_refused(cli, engine, "bid", "pay", *project, "--amount", "1.00", "--date", "2025-09-02", says="terminated")
    cli_refused(cli, engine, "release", *project, "--date", "2025-09-02", says="terminated")
    no_unbalanced_entries(engine)
    assert_verified(cli)


# --- 7. Reversal of an event another one relies on --------------------------------------------


def test_a_stage_pass_cannot_be_reversed_while_a_release_relies_on_it(cli, engine):
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-701", "3,000,000.00", JM_UNIVERSITY)
    project = ("--project", "JM2025-701")
    approved = balances_of(grant_obligated="3000000.00", grant_unreleased="3000000.00")
    available = account_balance(cli, AVAILABLE_2025)
    stage = entry_of(cli("stage", *project, "--stage", "contract_signed", "--passed", "--date", "2025-03-01"))
    release = entry_of(cli("release", *project, "--date", "2025-03-10", "--voucher", "ZF-701-1"))

    cli_refused(cli, engine, "reverse", str(stage), "--reason", "合同签订日期录错",
                says=(f"entry {stage} (stage)", f"rely on it: {release};", "reverse those first"))

    cli("reverse", str(release), "--reason", "拨付凭证作废")
    assert cli_balances(cli, "JM2025-701") == approved
    cli("reverse", str(stage), "--reason", "合同签订日期录错")
    assert cli_balances(cli, "JM2025-701") == approved
    assert account_balance(cli, AVAILABLE_2025) == available
    shown = cli_show(cli, "JM2025-701")
    assert tranche_statuses(shown) == {("L1", 1): "planned", ("L1", 2): "planned"}
    assert shown["tranches"][0]["unmet"] == ["contract_signed"]
    # With the stage reversed, the tranche waits on it again.
    cli_refused(cli, engine, "release", *project, "--date", "2025-03-11", says="contract signing")
    # Each entry is reversed at most once.
    cli_refused(cli, engine, "reverse", str(release), "--reason", "again", says=str(release))

    # Recorded again under new vouchers, the stage and the release stand.
    cli("stage", *project, "--stage", "contract_signed", "--passed", "--date", "2025-03-05", "--voucher", "HT-701-2")
    cli("release", *project, "--date", "2025-03-12", "--voucher", "ZF-701-2")
    assert cli_balances(cli, "JM2025-701")["advances_outstanding"] == "1800000.00"
    no_unbalanced_entries(engine)
    assert_verified(cli)


def test_repeating_a_reversed_release_is_refused_until_a_new_voucher_is_given(cli, engine):
    """After `reverse`, the same `release` (default voucher REL-CODE-L1-T1) is refused, naming
    the reversed entry; with a new voucher the tranche is released again."""
    jiangmen_parties(cli)
    approve_jiangmen(cli, "JM2025-702", "3,000,000.00", JM_UNIVERSITY)
    cli("stage", "--project", "JM2025-702", "--stage", "contract_signed", "--passed", "--date", "2025-03-01")
    release = entry_of(cli("release", "--project", "JM2025-702", "--date", "2025-03-10"))
    cli("reverse", str(release), "--reason", "拨付凭证作废")
    again = cli("release", "--project", "JM2025-702", "--date", "2025-03-10", expect=1)
    assert f"entry {release}" in again.stderr and "new --voucher" in again.stderr
    cli("release", "--project", "JM2025-702", "--date", "2025-03-10", "--voucher", "ZF-2")
    assert cli_balances(cli, "JM2025-702")["advances_outstanding"] == "1800000.00"
