"""Charts drawn on the server as SVG text: no script, no web font, every label escaped.

Amounts come in as fen (int); the drawing scales them to the chart; labels say 万元."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from xml.sax.saxutils import escape

COLORS = ("#2f6db5", "#e08a1e", "#3c9a5f", "#b03a48", "#7a5cb0")


def _wan(fen: int) -> str:
    return f"{(Decimal(fen) / 1_000_000).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):,}"


def _nice_top(value: int) -> int:
    if value <= 0:
        return 1_000_000
    step = 1
    while step * 10 <= value:
        step *= 10
    for k in (1, 2, 5, 10):
        if k * step >= value:
            return k * step
    return 10 * step


def _text(x: float, y: float, label: str, *, anchor: str = "middle", size: int = 12, color: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}">'
            f"{escape(label)}</text>")


def grouped_bars(title: str, groups: list[tuple[str, list[int]]], series: list[str], *, width: int = 640, height: int = 260) -> str:
    """Bars per group, one per series (e.g. 承诺 vs 到位 per category); values in fen."""
    left, right, top, bottom = 70, 20, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_top(max([v for _, values in groups for v in values] + [0]))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             f"<title>{escape(title)}</title>", _text(width / 2, 18, title, size=14)]
    for i in range(5):
        value = peak * i // 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(_text(left - 6, y + 4, _wan(value), anchor="end", size=10))
    parts.append(_text(14, top - 8, "万元", anchor="start", size=10))
    n = max(1, len(groups))
    slot = plot_w / n
    bar = min(36, slot * 0.8 / max(1, len(series)))
    for g, (label, values) in enumerate(groups):
        x0 = left + g * slot + (slot - bar * len(values)) / 2
        for s, value in enumerate(values):
            h = plot_h * max(0, value) / peak
            x = x0 + s * bar
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[s % len(COLORS)]}"><title>{escape(label)} {escape(series[s])} {_wan(value)} 万元</title></rect>')
        parts.append(_text(left + g * slot + slot / 2, top + plot_h + 16, label, size=11))
    for s, name in enumerate(series):
        x = left + s * 120
        parts.append(f'<rect x="{x}" y="{height - 18}" width="12" height="12" fill="{COLORS[s % len(COLORS)]}"/>')
        parts.append(_text(x + 16, height - 8, name, anchor="start", size=11))
    parts.append("</svg>")
    return "".join(parts)


def forecast_chart(summary: list[dict], *, width: int = 720, height: int = 320) -> str:
    """Exposure by year: the schedule as bars, P50 / P90 / P95 as marks, the appropriation as a line.

    ``summary`` rows are the forecast's JSON rows (amounts as yuan strings); the total row is skipped."""
    rows = [r for r in summary if r.get("year") is not None]

    def fen(value) -> int:
        return 0 if value in (None, "") else int((Decimal(str(value)) * 100).to_integral_value(ROUND_HALF_UP))

    marks = ("p50", "p90", "p95")
    left, right, top, bottom = 80, 20, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_top(max([fen(r.get(k)) for r in rows for k in ("schedule", "appropriation", *marks)] + [0]))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" class="forecast">',
             "<title>财政支出敞口预测</title>", _text(width / 2, 20, "财政支出敞口预测（按年度，万元）", size=14)]
    for i in range(5):
        value = peak * i // 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(_text(left - 6, y + 4, _wan(value), anchor="end", size=10))
    slot = plot_w / max(1, len(rows))
    bar = min(60, slot * 0.5)
    y_of = lambda v: top + plot_h - plot_h * max(0, v) / peak
    for i, r in enumerate(rows):
        cx = left + i * slot + slot / 2
        sched = fen(r.get("schedule"))
        parts.append(f'<rect x="{cx - bar / 2:.1f}" y="{y_of(sched):.1f}" width="{bar:.1f}" height="{top + plot_h - y_of(sched):.1f}" '
                     f'fill="{COLORS[0]}"><title>{r["year"]} 计划拨付 {_wan(sched)} 万元</title></rect>')
        for k, color in zip(marks, COLORS[1:], strict=False):
            v = fen(r.get(k))
            parts.append(f'<line x1="{cx - bar / 2 - 6:.1f}" y1="{y_of(v):.1f}" x2="{cx + bar / 2 + 6:.1f}" y2="{y_of(v):.1f}" '
                         f'stroke="{color}" stroke-width="3"><title>{r["year"]} {k.upper()} {_wan(v)} 万元</title></line>')
        appropriation = fen(r.get("appropriation"))
        if appropriation:
            parts.append(f'<line x1="{cx - slot / 2 + 4:.1f}" y1="{y_of(appropriation):.1f}" x2="{cx + slot / 2 - 4:.1f}" '
                         f'y2="{y_of(appropriation):.1f}" stroke="#555" stroke-dasharray="6 4" stroke-width="2">'
                         f'<title>{r["year"]} 预算 {_wan(appropriation)} 万元</title></line>')
        parts.append(_text(cx, top + plot_h + 16, str(r["year"]), size=11))
    legend = [("计划拨付", COLORS[0]), ("P50", COLORS[1]), ("P90", COLORS[2]), ("P95", COLORS[3]), ("年度预算", "#555")]
    for s, (name, color) in enumerate(legend):
        x = left + s * 110
        parts.append(f'<rect x="{x}" y="{height - 20}" width="12" height="12" fill="{color}"/>')
        parts.append(_text(x + 16, height - 10, name, anchor="start", size=11))
    parts.append("</svg>")
    return "".join(parts)
