"""Renderings of a budget exposure forecast: an aligned table, JSON and CSV for stdout, an xlsx
workbook, and a PDF whose first page carries the exposure-by-year chart (expected, the P10–P90
band, the committed schedule and the appropriation) with the scenario's assumptions beside it.

The chart is drawn with reportlab.graphics (a LinePlot for axes and lines, a Polygon for the
band), so nothing beyond reportlab is needed. Fonts, tables and the deterministic document
come from ``reports.pdf`` and ``reports.xlsx``: the same forecast gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
from pathlib import Path

import pandas as pd

from ledger.core.money import format_fen, format_fen_grouped
from ledger.programme.words import CITY_ZH, MODE_ZH, PROJECT_CATEGORY_ZH, TRANCHE_ZH
from reports.forecast import PERCENTILES, Forecast
from reports.text import csv_cell, table_text

CITY_NAMES = CITY_ZH
CATEGORY_NAMES = PROJECT_CATEGORY_ZH
MODE_NAMES = MODE_ZH
DIMENSION_NAMES = {"city": "城市", "category": "类别", "mode": "组织方式"}
SOURCE_NAMES = {"ledger": "专账", "pipeline": "储备"}
ITEM_NAMES = {"subsidy payable": "应付补助"}
SUMMARY_AMOUNTS = ("appropriation", "schedule", "expected", *(f"p{q}" for q in PERCENTILES), "recoveries",
                   "recoveries_expected", "headroom", "headroom_p90", "unreleased_after")
NOTES = (
    ("计划拨付：假定每项拨付条件均在预期日期满足（立项后签订合同、实施期过半时中期检查、实施期满后验收）；"
     "期望值与 Pn：按情景做蒙特卡洛模拟，各年取最近秩百分位数。"),
    "余量 = 当年预算指标 − 计划拨付（负数为缺口）；预算指标为专账中整个预算年度的数额，不分城市。",
    "清退：尚未收回的追回款，属应缴财政款，不增加余量。",
    "回测：截止日之后实际记录的拨付（追回抵扣前的总额）；“已知项目”只计截止日前已立项、预测能看到的项目。",
)


def _empty(value) -> bool:
    """None, or the NaN pandas may hold in an empty cell."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fen(value) -> str | None:
    """fen as "1234.50", or None for an empty cell."""
    return None if _empty(value) else format_fen(int(value))


def _grouped(value) -> str:
    text = _fen(value)
    return "" if text is None else format_fen_grouped(int(value))


def _int_or_none(value):
    return None if _empty(value) else int(value)


def _title(forecast: Forecast) -> str:
    w = forecast.window
    scope = CITY_NAMES.get(forecast.city, forecast.city) if forecast.city else "全部城市"
    return (f"截至 {w.as_of} 的预算支出预测，{w.from_year}–{w.from_year + w.years - 1} 年，{scope}；"
            f"情景“{forecast.scenario.name}”；模拟 {forecast.runs:,} 次，随机种子 {forecast.seed}")


def _chain_head(forecast: Forecast) -> str:
    return f"专账链头：第 {forecast.chain_head[0]} 笔分录 {forecast.chain_head[1]}"


# --- JSON ---------------------------------------------------------------------------------


def report_dict(forecast: Forecast) -> dict:
    """The whole forecast as plain JSON-able values; amounts as "1234.50" strings."""
    w = forecast.window
    flows = forecast.schedule.flows
    return {
        "report": "budget_exposure_forecast",
        "as_of": w.as_of.isoformat(),
        "from": w.from_year,
        "years": w.years,
        "city": forecast.city,
        "runs": forecast.runs,
        "seed": forecast.seed,
        "chain_head": {"entry": forecast.chain_head[0], "hash": forecast.chain_head[1]},
        "scenario": dict(forecast.scenario.assumptions()),
        "pipeline": forecast.pipeline_source,
        "summary": [
            {"period": r["period"], "year": _int_or_none(r["year"]), **{k: _fen(r[k]) for k in SUMMARY_AMOUNTS}}
            for r in forecast.summary.to_dict("records")
        ],
        "groups": [
            {"dimension": r["dimension"], "key": r["key"], "period": r["period"],
             **{k: _fen(r[k]) for k in ("schedule", "expected", *(f"p{q}" for q in PERCENTILES))}}
            for r in forecast.groups.to_dict("records")
        ],
        "projects": [
            {**{k: r[k] for k in ("code", "name", "city", "category", "mode", "source", "period")},
             **{k: _fen(r[k]) for k in ("schedule", "expected", "recoveries")}}
            for r in forecast.projects.to_dict("records")
        ],
        "schedule": [
            {"code": r["code"], "lane": f"L{r['lane_no']}", "item": r["item"], "stage": int(r["stage"]),
             "from": r["first"].isoformat(), "to": (r["last"] if r["last"] == r["first"] else r["last"] - _DAY).isoformat(),
             "period": w.label(int(r["bucket"])), "amount": _fen(r["amount_fen"])}
            for r in flows.to_dict("records")
        ],
        "back_test": None if forecast.back_test is None else {
            "through": forecast.actual_through.isoformat() if forecast.actual_through else None,
            "rows": [{"period": r["period"], **{k: _fen(r[k]) for k in ("schedule", "expected", "actual_known", "actual_all", "schedule_error")}}
                     for r in forecast.back_test.to_dict("records")],
        },
        "notes": list(NOTES),
    }


def render_json(forecast: Forecast) -> str:
    return json.dumps(report_dict(forecast), ensure_ascii=False, indent=2) + "\n"


# --- CSV ----------------------------------------------------------------------------------

CSV_COLUMNS = ("section", "key", "period", *SUMMARY_AMOUNTS, "actual_known", "actual_all")


def render_csv(forecast: Forecast) -> str:
    """One flat table: the summary (section "total"), the city/category/mode breakdowns, the
    projects (section "project", key = code) and the back-test, all with the same columns."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in forecast.summary.to_dict("records"):
        _write_row(writer, {"section": "total", "key": "all", "period": r["period"], **{k: _fen(r[k]) for k in SUMMARY_AMOUNTS}})
    for r in forecast.groups.to_dict("records"):
        _write_row(writer, {"section": r["dimension"], "key": r["key"], "period": r["period"],
                         **{k: _fen(r[k]) for k in ("schedule", "expected", *(f"p{q}" for q in PERCENTILES))}})
    for r in forecast.projects.to_dict("records"):
        _write_row(writer, {"section": "project", "key": r["code"], "period": r["period"],
                         **{k: _fen(r[k]) for k in ("schedule", "expected", "recoveries")}})
    if forecast.back_test is not None:
        for r in forecast.back_test.to_dict("records"):
            _write_row(writer, {"section": "back_test", "key": "all", "period": r["period"],
                             **{k: _fen(r[k]) for k in ("schedule", "expected", "actual_known", "actual_all")}})
    return out.getvalue()


def _write_row(writer: csv.DictWriter, row: dict) -> None:
    """A CSV row with every cell through ``csv_cell`` (a pipeline's codes come from a file)."""
    writer.writerow({key: csv_cell(value) for key, value in row.items()})


# --- the table ------------------------------------------------------------------------------


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _aligned(header: list[str], rows: list[list[str]], *, right_from: int) -> list[str]:
    rows = [[table_text(v) for v in r] for r in rows]
    widths = [max(_width(h), *(_width(r[i]) for r in rows)) if rows else _width(h) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        cells = []
        for i, v in enumerate(values):
            pad = " " * (widths[i] - _width(v))
            cells.append(pad + v if i >= right_from else v + pad)
        return "  ".join(cells).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_table(forecast: Forecast) -> list[str]:
    """The year table, the breakdowns (schedule per year), the projects and the back-test."""
    w = forecast.window
    lines = [_title(forecast), _chain_head(forecast)]
    if forecast.pipeline_source:
        lines.append(f"pipeline: {forecast.pipeline_source}")
    lines.append("")
    header = ["period", "appropriation", "schedule", "expected", "P50", "P90", "P95", "recoveries", "headroom", "unreleased after"]
    rows = [[r["period"], _grouped(r["appropriation"]), _grouped(r["schedule"]), _grouped(r["expected"]), _grouped(r["p50"]),
             _grouped(r["p90"]), _grouped(r["p95"]), _grouped(r["recoveries_expected"]), _grouped(r["headroom"]),
             _grouped(r["unreleased_after"])] for r in forecast.summary.to_dict("records")]
    lines += _aligned(header, rows, right_from=1)
    periods = [w.label(b) for b in w.shown()]
    # Brackets would read as a negative amount to an accountant, so the expected value is named.
    lines += ["", "schedule by city, category and mode (and the expected value where the scenario changes it)"]
    group_rows = []
    for (dimension, key), part in forecast.groups.groupby(["dimension", "key"], sort=False):
        cells = []
        for r in part.to_dict("records"):
            cell = _grouped(r["schedule"])
            cells.append(cell if r["expected"] == r["schedule"] else f"{cell}; expected {_grouped(r['expected'])}")
        group_rows.append([DIMENSION_NAMES.get(dimension, dimension), _display(dimension, key), *cells])
    lines += _aligned(["by", "key", *periods], group_rows, right_from=2)
    lines += ["", "schedule by project"]
    project_rows = []
    for code, part in forecast.projects.groupby("code", sort=False):
        first = part.iloc[0]
        project_rows.append([code, _display("city", first["city"]), _display("mode", first["mode"]),
                             SOURCE_NAMES.get(first["source"], first["source"]),
                             *(_grouped(v) for v in part["schedule"]), _grouped(part["recoveries"].sum())])
    lines += _aligned(["project", "city", "mode", "source", *periods, "recoveries"], project_rows, right_from=4)
    if forecast.back_test is not None:
        lines += ["", f"back-test: releases recorded after {w.as_of} (through {forecast.actual_through})"]
        rows = [[r["period"], _grouped(r["schedule"]), _grouped(r["expected"]), _grouped(r["actual_known"]),
                 _grouped(r["actual_all"]), _grouped(r["schedule_error"])] for r in forecast.back_test.to_dict("records")]
        lines += _aligned(["period", "schedule", "expected", "actual (known)", "actual (all)", "schedule − actual"], rows, right_from=1)
    lines += ["", *(f"note: {n}" for n in NOTES)]
    return lines


def _display(dimension: str, key: str) -> str:
    """A city, category or mode by its Chinese name (the code stays in JSON and CSV)."""
    names = {"city": CITY_NAMES, "category": CATEGORY_NAMES, "mode": MODE_NAMES}.get(dimension, {})
    return names.get(key, key)


def _period(label: str) -> str:
    """A period as a document writes it: 2027, 2026 年以前, 2030 年以后, 合计 (JSON and CSV
    keep "before 2026", "after 2030", "total")."""
    if label == "total":
        return "合计"
    before, _, year = label.partition(" ")
    return {"before": f"{year} 年以前", "after": f"{year} 年以后"}.get(before, label)


def _item(item: str) -> str:
    """A schedule item: a tranche by what it waits for, or the subsidy payable."""
    return ITEM_NAMES.get(item, TRANCHE_ZH.get(item, item))


# --- xlsx -----------------------------------------------------------------------------------


def write_xlsx(forecast: Forecast, path: Path) -> Path:
    """The working papers: summary, breakdowns, projects, the dated schedule, the back-test
    and the assumptions, one sheet each; amounts as numbers in yuan."""
    from reports.xlsx import SheetRow, add_sheet, key_value_sheet, new_workbook, save_workbook

    w = forecast.window
    wb = new_workbook()
    summary_headers = ["期间 Period", "预算 Appropriation", "计划拨付 Schedule", "期望 Expected",
                       *(f"P{q}" for q in PERCENTILES), "清退(计划) Recoveries", "清退(期望) Recoveries expected",
                       "余量 Headroom", "余量(P90) Headroom P90", "剩余待拨 Unreleased after"]
    rows = [SheetRow((_period(r["period"]), *(_int_or_none(r[k]) for k in SUMMARY_AMOUNTS))) for r in forecast.summary.to_dict("records")]
    add_sheet(wb, "汇总 Summary", summary_headers, ["text", *["amount"] * len(SUMMARY_AMOUNTS)], rows,
              notes=[_title(forecast), _chain_head(forecast), *NOTES])
    group_amounts = ("schedule", "expected", *(f"p{q}" for q in PERCENTILES))
    add_sheet(wb, "分组 By group", ["维度 Dimension", "分组 Key", "期间 Period", "计划拨付 Schedule", "期望 Expected", *(f"P{q}" for q in PERCENTILES)],
              ["text", "text", "text", *["amount"] * len(group_amounts)],
              [SheetRow((DIMENSION_NAMES.get(r["dimension"], r["dimension"]), _display(r["dimension"], r["key"]), _period(r["period"]), *(int(r[k]) for k in group_amounts)))
               for r in forecast.groups.to_dict("records")])
    add_sheet(wb, "项目 Projects", ["项目 Project", "名称 Name", "城市 City", "类别 Category", "模式 Mode", "来源 Source", "期间 Period",
                                    "计划拨付 Schedule", "期望 Expected", "清退 Recoveries"],
              ["text", "long", "text", "text", "text", "text", "text", "amount", "amount", "amount"],
              [SheetRow((r["code"], r["name"], _display("city", r["city"]), _display("category", r["category"]), _display("mode", r["mode"]),
                         SOURCE_NAMES.get(r["source"], r["source"]), _period(r["period"]), int(r["schedule"]), int(r["expected"]), int(r["recoveries"])))
               for r in forecast.projects.to_dict("records")])
    add_sheet(wb, "计划明细 Schedule", ["项目 Project", "赛道 Lane", "款项 Item", "阶段 Stage", "自 From", "至 To", "期间 Period", "金额 Amount"],
              ["text", "text", "text", "int", "date", "date", "text", "amount"],
              [SheetRow((r["code"], f"L{r['lane_no']}", _item(r["item"]), int(r["stage"]), r["first"],
                         r["last"] if r["last"] == r["first"] else r["last"] - _DAY, _period(w.label(int(r["bucket"]))), int(r["amount_fen"])))
               for r in forecast.schedule.flows.to_dict("records")])
    if forecast.back_test is not None:
        back = ("schedule", "expected", "actual_known", "actual_all", "schedule_error")
        add_sheet(wb, "回测 Back-test", ["期间 Period", "计划拨付 Schedule", "期望 Expected", "实际(已知项目) Actual known",
                                         "实际(全部) Actual all", "偏差 Schedule − actual"],
                  ["text", *["amount"] * len(back)],
                  [SheetRow((_period(r["period"]), *(int(r[k]) for k in back))) for r in forecast.back_test.to_dict("records")],
                  notes=[f"回测：{w.as_of} 之后至 {forecast.actual_through} 实际记录的拨付。"])
    key_value_sheet(wb, "假设 Assumptions", forecast.scenario.assumptions_zh())
    save_workbook(wb, path, as_of=w.as_of, title="预算支出预测 Budget exposure forecast", subject=_title(forecast),
                  keywords="jiebang forecast")
    return path


# --- the chart --------------------------------------------------------------------------------

CHART_COLOURS = {"band": "#c6dbef", "expected": "#08519c", "schedule": "#636363", "appropriation": "#d94801"}


def exposure_chart(forecast: Forecast, *, width: float, height: float, font_name: str):
    """Exposure by fiscal year in 万元: the expected releases with the P10–P90 band, the
    committed schedule (dashed) and the year's appropriation (orange)."""
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, Line, Polygon, Rect, String
    from reportlab.graphics.widgets.markers import makeMarker
    from reportlab.lib import colors

    w = forecast.window
    rows = [r for r in forecast.summary.to_dict("records") if not _empty(r["year"])]
    years = [int(r["year"]) for r in rows]
    wan = lambda fen: int(fen) / 1_000_000  # fen to 万元, a float for drawing only
    series = {
        "expected": [(y, wan(r["expected"])) for y, r in zip(years, rows)],
        "schedule": [(y, wan(r["schedule"])) for y, r in zip(years, rows)],
        "appropriation": [(y, wan(r["appropriation"] or 0)) for y, r in zip(years, rows)],
    }
    top = max([1.0, *(wan(r[k] or 0) for r in rows for k in ("p90", "p95", "schedule", "appropriation"))])
    step = _nice_step(top / 5)
    top = step * (int(top / step) + 1)
    drawing = Drawing(width, height, initialFontName=font_name)  # not Helvetica, which is never embedded
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 52, 46, width - 64, height - 82
    plot.data = [series["schedule"], series["appropriation"], series["expected"]]
    x_min, x_max = w.from_year - 0.5, w.from_year + w.years - 0.5
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = x_min, x_max
    plot.xValueAxis.valueSteps = years
    plot.xValueAxis.labelTextFormat = "%d"
    plot.yValueAxis.valueMin, plot.yValueAxis.valueMax, plot.yValueAxis.valueStep = 0, top, step
    plot.yValueAxis.labelTextFormat = lambda v: f"{v:,.0f}"
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.labels.fontName, axis.labels.fontSize = font_name, 7
    plot.yValueAxis.visibleGrid = True
    plot.yValueAxis.gridStrokeColor = colors.HexColor("#e0e0e0")
    plot.yValueAxis.gridStrokeWidth = 0.4
    styles = (("schedule", 1.0, (3, 2)), ("appropriation", 1.4, None), ("expected", 1.8, None))
    for i, (key, stroke, dash) in enumerate(styles):
        plot.lines[i].strokeColor = colors.HexColor(CHART_COLOURS[key])
        plot.lines[i].strokeWidth = stroke
        if dash:
            plot.lines[i].strokeDashArray = dash
        plot.lines[i].symbol = makeMarker("FilledCircle", size=3.2 if key == "expected" else 2.4,
                                          fillColor=colors.HexColor(CHART_COLOURS[key]), strokeColor=None)
    # The band is drawn first, in the plot's own coordinates (the axes have fixed ranges).
    px = lambda year: plot.x + (year - x_min) / (x_max - x_min) * plot.width
    py = lambda value: plot.y + value / top * plot.height
    if rows:
        upper = [(px(y), py(wan(r["p90"]))) for y, r in zip(years, rows)]
        lower = [(px(y), py(wan(r["p10"]))) for y, r in reversed(list(zip(years, rows)))]
        if len(rows) == 1:  # a single year: a short bar instead of a polygon of zero width
            (x, y_hi), (_, y_lo) = upper[0], lower[0]
            upper, lower = [(x - 6, y_hi), (x + 6, y_hi)], [(x + 6, y_lo), (x - 6, y_lo)]
        points = [c for point in upper + lower for c in point]
        drawing.add(Polygon(points, fillColor=colors.HexColor(CHART_COLOURS["band"]), strokeColor=None))
    drawing.add(plot)
    drawing.add(String(plot.x - 44, plot.y + plot.height + 10, "万元 (10,000 yuan)", fontName=font_name, fontSize=7))
    legend = (("band", "P10–P90"), ("expected", "期望 expected"), ("schedule", "计划 schedule (on time)"),
              ("appropriation", "预算 appropriation"))
    x = plot.x
    for key, label in legend:
        colour = colors.HexColor(CHART_COLOURS[key])
        if key == "band":
            drawing.add(Rect(x, 12, 14, 7, fillColor=colour, strokeColor=None))
        else:
            drawing.add(Line(x, 15.5, x + 14, 15.5, strokeColor=colour, strokeWidth=1.6,
                             strokeDashArray=(3, 2) if key == "schedule" else None))
        drawing.add(String(x + 18, 12.5, label, fontName=font_name, fontSize=7))
        x += 26 + 6.2 * len(label)
    return drawing


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


# --- PDF ------------------------------------------------------------------------------------


def write_pdf(forecast: Forecast, path: Path, *, font_path: str | Path | None = None) -> Path:
    """Page 1: the chart with the assumptions beside it, then the year table; then the
    breakdowns, the projects and the back-test. ``font_path``: a font the user named."""
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

    from reports.pdf import build_pdf, cjk_font, data_table, escape, keep_room, styles, usable_width

    w = forecast.window
    font = cjk_font(font_path)
    st = styles(font)
    full = usable_width()
    chart_width, side_width = full * 0.62, full * 0.38 - 4 * mm
    story = [
        Paragraph("预算支出预测 Budget exposure forecast", st["title"]),
        Paragraph(escape(_title(forecast)), st["subtitle"]),
    ]
    assumptions = data_table(["假设 Assumption", "取值 Value"],
                             [[Paragraph(escape(k), st["cell"]), Paragraph(escape(v), st["cell"])]
                              for k, v in forecast.scenario.assumptions_zh()],
                             widths=[side_width * 0.42, side_width * 0.58], right=set(), font=font)
    beside = Table([[exposure_chart(forecast, width=chart_width, height=70 * mm, font_name=font.name), assumptions]],
                   colWidths=[chart_width + 2 * mm, side_width + 2 * mm])
    beside.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), font.name),  # a Table sets its font even round flowables
                                ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    story += [beside, Spacer(1, 3 * mm)]
    header = ["期间\nPeriod", "预算\nAppropriation", "计划\nSchedule", "期望\nExpected", "P10", "P50", "P90", "P95",
              "清退(期望)\nRecoveries", "余量\nHeadroom", "余量(P90)\nHeadroom P90"]
    keys = ("appropriation", "schedule", "expected", "p10", "p50", "p90", "p95", "recoveries_expected", "headroom", "headroom_p90")
    rows = [[_period(r["period"]), *(_grouped(r[k]) for k in keys)] for r in forecast.summary.to_dict("records")]
    story.append(data_table(header, rows, widths=[full * 0.1] + [full * 0.09] * 10, right=set(range(1, 11)), font=font,
                            emphasis={len(rows) - 1}))
    story += [Paragraph(escape(n), st["note"]) for n in NOTES]
    periods = [_period(w.label(b)) for b in w.shown()]
    story.append(keep_room())
    story.append(Paragraph("按城市、类别、组织方式 By city, category and mode（计划拨付；情景改变时另列期望值）", st["h1"]))
    group_rows = []
    for (dimension, key), part in forecast.groups.groupby(["dimension", "key"], sort=False):
        group_rows.append([DIMENSION_NAMES.get(dimension, dimension), _display(dimension, key),
                           *(_grouped(r["schedule"]) if r["expected"] == r["schedule"]
                             else f"计划 {_grouped(r['schedule'])}\n期望 {_grouped(r['expected'])}" for r in part.to_dict("records"))])
    rest = (full * 0.76) / max(1, len(periods))
    right_cell = ParagraphStyle("cell_right", parent=st["cell"], alignment=TA_RIGHT)
    story.append(data_table(["维度\nBy", "分组\nKey", *periods], [[Paragraph(escape(c).replace("\n", "<br/>"), right_cell) if i >= 2 else c
                                                                 for i, c in enumerate(r)] for r in group_rows],
                            widths=[full * 0.09, full * 0.15, *[rest] * len(periods)], right=set(range(2, 2 + len(periods))), font=font))
    story.append(keep_room())
    story.append(Paragraph("按项目 By project（计划拨付）", st["h1"]))
    project_rows = []
    for code, part in forecast.projects.groupby("code", sort=False):
        first = part.iloc[0]
        project_rows.append([code, _display("city", first["city"]), _display("mode", first["mode"]),
                             SOURCE_NAMES.get(first["source"], first["source"]),
                             *(_grouped(v) for v in part["schedule"]), _grouped(part["recoveries"].sum())])
    rest = (full * 0.56) / max(1, len(periods) + 1)
    story.append(data_table(["项目\nProject", "城市\nCity", "模式\nMode", "来源\nSource", *periods, "清退\nRecoveries"], project_rows,
                            widths=[full * 0.13, full * 0.12, full * 0.11, full * 0.08, *[rest] * (len(periods) + 1)],
                            right=set(range(4, 5 + len(periods))), font=font))
    if forecast.back_test is not None:
        story.append(keep_room())
        story.append(Paragraph(escape(f"回测 Back-test：{w.as_of} 之后至 {forecast.actual_through} 实际记录的拨付"), st["h1"]))
        keys = ("schedule", "expected", "actual_known", "actual_all", "schedule_error")
        story.append(data_table(["期间\nPeriod", "计划\nSchedule", "期望\nExpected", "实际(已知)\nActual known", "实际(全部)\nActual all",
                                 "偏差\nSchedule − actual"],
                                [[_period(r["period"]), *(_grouped(r[k]) for k in keys)] for r in forecast.back_test.to_dict("records")],
                                widths=[full * 0.14] + [full * 0.14] * 5, right=set(range(1, 6)), font=font))
    build_pdf(path, story, font=font, as_of=w.as_of, title="预算支出预测 Budget exposure forecast", subject=_title(forecast),
              keywords=["jiebang", "forecast", f"seed {forecast.seed}", f"runs {forecast.runs}"],
              header_left="预算支出预测 Budget exposure forecast", header_right=f"截至 {w.as_of}",
              footer_left=f"专账链头 {forecast.chain_head[0]} {forecast.chain_head[1][:16]}")
    return path


# --- files ----------------------------------------------------------------------------------


def file_stem(forecast: Forecast) -> str:
    w = forecast.window
    city = f"-{forecast.city}" if forecast.city else ""
    return f"forecast-{w.as_of.isoformat()}-{w.from_year}-{w.years}y{city}"


def write_forecast_files(forecast: Forecast, out_dir: Path, *, font_path: str | Path | None = None) -> list[Path]:
    """Write FORECAST.xlsx and FORECAST.pdf into ``out_dir``; return the paths."""
    stem = file_stem(forecast)
    return [write_xlsx(forecast, out_dir / f"{stem}.xlsx"), write_pdf(forecast, out_dir / f"{stem}.pdf", font_path=font_path)]


_DAY = pd.Timedelta(days=1).to_pytimedelta()


# --- the demo ---------------------------------------------------------------------------------

DEMO_SCENARIO_TEXT = """\
[scenario]
name = "演示：审慎"
description = "约七分之一的中期检查未通过，二十个项目中一个终止，赛马只留一条赛道，约三分之一的拨付延迟"

[midterm]
failure_rate = 0.15

[termination]
rate = 0.05
timing = [0.2, 0.8]

[saima]
survivors = { 2 = 1, 3 = 1 }

[delay]
days = [0, 90, 180]
probabilities = [0.65, 0.25, 0.10]

[recoveries]
collected_share = 0.7
"""


def write_demo_forecast(session, out_dir: Path, *, as_of, back_test_as_of, runs: int = 2_000, seed: int = 1,
                        font_path: str | Path | None = None) -> list[Path]:
    """What ``jiebang demo`` can write: the scenario file, the forecast as of the demo's last
    entry under that scenario, and a back-test as of an earlier date (xlsx and PDF each)."""
    from reports.forecast import Window, build_forecast, load_scenario

    scenario_path = out_dir / "forecast-scenario.toml"
    scenario_path.write_text(DEMO_SCENARIO_TEXT, encoding="utf-8", newline="\n")
    scenario = load_scenario(scenario_path)
    paths = [scenario_path]
    for when in (as_of, back_test_as_of):
        forecast = build_forecast(session, window=Window(when, when.year, 4), scenario=scenario, runs=runs, seed=seed)
        paths += write_forecast_files(forecast, out_dir, font_path=font_path)
    return paths
