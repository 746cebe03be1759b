"""Rendering helpers for PDF reports with Chinese text: the CJK font, the page template with
page numbers and the project code on every page, and tables whose header row repeats across
page breaks. Output is byte-identical for the same content: reportlab's invariant mode, a
creation date taken from the report's as-of date, and fixed metadata.

Font policy. A document handed to an auditor must not depend on the reader's fonts, so every
PDF embeds (a subset of) one TrueType font that sets both the Chinese and the Latin text:
the font the user names (``cjk_font(path)``, else the ``JIEBANG_FONT`` environment variable,
else its older name ``JIEBANG_PDF_FONT``), or else the Noto Sans CJK SC that ships inside the
package (reports/fonts, SIL OFL 1.1). No system font is searched: the packaged font is always
there, and the same ledger gives the same bytes on every machine. A named font that cannot be
used (missing, or OpenType/CFF such as the Noto CJK .otc files, which reportlab cannot embed)
is said in one line on stderr and the packaged font is used. Only if the package's own font
file is missing (a broken install) does the document fall back to the built-in, non-embedded
CID font STSong-Light, and it says so on stderr, in its metadata and in its integrity block.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    LongTable,
    PageTemplate,
    Paragraph,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

FONT_ENVS = ("JIEBANG_FONT", "JIEBANG_PDF_FONT")
PACKAGED_FONT = Path(__file__).with_name("fonts") / "NotoSansCJKsc-Regular-subset.ttf"
PACKAGED_FONT_NAME = "Noto Sans CJK SC"
FALLBACK_CID_FONT = "STSong-Light"
PAGE_SIZE = landscape(A4)
MARGIN = 14 * mm
BODY_SIZE = 9
TABLE_SIZE = 7.5


# --- the font ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FontChoice:
    """The CJK font a document is set in.

    Attributes:
      name: the name registered with reportlab.
      embedded: True for an embedded TrueType subset, False for the CID fallback.
      source: the font file, or "built-in" for the CID font.
      note: the font in words (no path) for the document's metadata and integrity block.
    """

    name: str
    embedded: bool
    source: str
    note: str


def cjk_font(named: str | Path | None = None) -> FontChoice:
    """Register (once) and return the font to use, following the module's font policy.

    ``named`` is a font file the user chose (a ``--font`` option); without it the
    environment is read."""
    if named is None:
        named = next((os.environ[env].strip() for env in FONT_ENVS if os.environ.get(env, "").strip()), None)
    if named:
        reason = _unusable(Path(named))
        if reason is None:
            return _register_ttf(Path(named), note="用户指定")
        _say_once(f"jiebang: the font {named} cannot be used ({reason}); the PDF uses the packaged {PACKAGED_FONT_NAME} instead")
    if _unusable(PACKAGED_FONT) is None:
        return _register_ttf(PACKAGED_FONT, note="随软件分发，SIL OFL 1.1", family=PACKAGED_FONT_NAME)
    _say_once(f"jiebang: the packaged font {PACKAGED_FONT} is missing (a broken install); "
              f"the PDF uses the built-in {FALLBACK_CID_FONT}, which is not embedded")
    if FALLBACK_CID_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FALLBACK_CID_FONT))
    return FontChoice(
        FALLBACK_CID_FONT,
        False,
        "built-in",
        f"{FALLBACK_CID_FONT}（内置 CID 字体，未嵌入：软件自带字体缺失，请重新安装 jiebang）",
    )


_said: set[str] = set()


def _say_once(line: str) -> None:
    """One line on stderr, once per process (the demo writes several PDFs)."""
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)


def _unusable(path: Path) -> str | None:
    """Register ``path`` with reportlab unless done before; say why it cannot be, or None."""
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    name = _font_name(path)
    if name in pdfmetrics.getRegisteredFontNames():
        return None
    if not path.is_file():
        return "no such file"
    try:
        font = TTFont(name, str(path), subfontIndex=0)
    except (TTFError, OSError, ValueError) as error:
        return f"not a TrueType font that can be embedded: {error}"
    pdfmetrics.registerFont(font)
    return None


def _font_name(path: Path) -> str:
    return "JiebangCJK-" + path.stem


def _register_ttf(path: Path, *, note: str, family: str | None = None) -> FontChoice:
    """The choice of a font ``_unusable`` has registered; ``family`` defaults to its own name."""
    name = _font_name(path)
    if family is None:
        family = pdfmetrics.getFont(name).face.name
        family = family.decode("latin-1") if isinstance(family, bytes) else str(family)
    # The note names the font, never its path: the document's bytes must not depend on
    # where the package is installed.
    whose, _, licence = note.partition("，")
    return FontChoice(name, True, str(path), f"{whose}的字体 {family}（{licence + '；' if licence else ''}TrueType，已嵌入子集）")


# --- styles -----------------------------------------------------------------------------


def styles(font: FontChoice) -> dict[str, ParagraphStyle]:
    """The few paragraph styles a report needs, all in the CJK font."""
    base = ParagraphStyle("body", fontName=font.name, fontSize=BODY_SIZE, leading=BODY_SIZE * 1.45, wordWrap="CJK")
    return {
        "title": ParagraphStyle("title", parent=base, fontSize=17, leading=24, alignment=TA_CENTER, spaceAfter=4 * mm),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=10, leading=15, alignment=TA_CENTER, spaceAfter=5 * mm),
        "h1": ParagraphStyle("h1", parent=base, fontSize=13, leading=19, spaceBefore=5 * mm, spaceAfter=2.5 * mm),
        "h2": ParagraphStyle("h2", parent=base, fontSize=10.5, leading=15, spaceBefore=3 * mm, spaceAfter=1.5 * mm),
        "body": base,
        "note": ParagraphStyle("note", parent=base, fontSize=8, leading=11.5, textColor=colors.HexColor("#333333"), spaceBefore=1 * mm),
        "cell": ParagraphStyle("cell", parent=base, fontSize=TABLE_SIZE, leading=TABLE_SIZE * 1.3, alignment=TA_LEFT),
        "head": ParagraphStyle("head", parent=base, fontSize=TABLE_SIZE, leading=TABLE_SIZE * 1.3, alignment=TA_CENTER),
    }


def keep_room(height: float = 38 * mm):
    """Start a new page unless ``height`` is left: put before a heading so it never ends a
    page alone, without holding a long table back until a fresh page."""
    from reportlab.platypus import CondPageBreak

    return CondPageBreak(height)


def escape(text: object) -> str:
    """Text made safe for a reportlab Paragraph (its mini-markup)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- tables -----------------------------------------------------------------------------


def data_table(
    header: list[str],
    rows: list[list[object]],
    *,
    widths: list[float],
    right: set[int],
    font: FontChoice,
    emphasis: set[int] = frozenset(),
) -> LongTable:
    """A table whose header row repeats on every page it spans.

    ``header`` cells may hold a line break ("应到位\\nDue"). Row cells are plain strings
    (numbers, dates: they never wrap, so pdftotext keeps them whole) or Paragraphs (text that
    may wrap). ``emphasis`` lists data-row indexes (0-based) to shade, e.g. totals.
    """
    st = styles(font)
    head = [Paragraph("<br/>".join(escape(part) for part in cell.split("\n")), st["head"]) for cell in header]
    rows = [[_fitted(cell, widths[i], i in right, font, st) for i, cell in enumerate(row)] for row in rows]
    table = LongTable([head, *rows], colWidths=widths, repeatRows=1, splitByRow=1)
    commands = [
        ("FONTNAME", (0, 0), (-1, -1), font.name),
        ("FONTSIZE", (0, 0), (-1, -1), TABLE_SIZE),
        ("LEADING", (0, 0), (-1, -1), TABLE_SIZE * 1.3),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#7f7f7f")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e6e6")),
        ("TOPPADDING", (0, 0), (-1, -1), 1.6),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.6),
        ("LEFTPADDING", (0, 0), (-1, -1), 2.5),
        ("RIGHTPADDING", (0, 0), (-1, -1), 2.5),
    ]
    for column in sorted(right):
        commands.append(("ALIGN", (column, 1), (column, -1), "RIGHT"))
    for index in sorted(emphasis):
        commands.append(("BACKGROUND", (0, index + 1), (-1, index + 1), colors.HexColor("#f2f2f2")))
    table.setStyle(TableStyle(commands))
    return table


CELL_PADDING = 2 * 2.5  # LEFTPADDING + RIGHTPADDING of data_table


def _fitted(cell, width: float, right: bool, font: FontChoice, st: dict):
    """A plain string cell as it is when it fits its column, else wrapped in a Paragraph, so
    that no cell is ever cut at its column's edge (a long name, a note in a narrow column)."""
    if not isinstance(cell, str) or pdfmetrics.stringWidth(cell, font.name, TABLE_SIZE) <= width - CELL_PADDING:
        return cell
    style = ParagraphStyle("cell_right", parent=st["cell"], alignment=TA_RIGHT) if right else st["cell"]
    return Paragraph(escape(cell).replace("\n", "<br/>"), style)


# --- the document -----------------------------------------------------------------------


def pdf_date(as_of: dt.date) -> str:
    """The PDF date string for midnight of the as-of date, China Standard Time."""
    return f"D:{as_of:%Y%m%d}000000+08'00'"


def _canvas_class(*, header_left: str, header_right: str, footer_left: str, font: FontChoice, as_of: dt.date):
    """A canvas that stamps the running header and "第 N 页 共 M 页" once the page count is known."""
    stamp = pdf_date(as_of)

    class ReportCanvas(Canvas):
        def __init__(self, *args, **kwargs):
            # The canvas would otherwise open every page in Helvetica, a base-14 font that is
            # never embedded; the document's own font is the initial one instead.
            kwargs["initialFontName"] = font.name
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []
            self.setDateFormatter(lambda *_parts: stamp)

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self._decorate(number, total)
                Canvas.showPage(self)
            Canvas.save(self)

        def _decorate(self, number: int, total: int) -> None:
            width, height = self._pagesize
            self.saveState()
            self.setFont(font.name, 8)
            self.setFillColor(colors.HexColor("#444444"))
            self.drawString(MARGIN, height - MARGIN + 4 * mm, header_left)
            self.drawRightString(width - MARGIN, height - MARGIN + 4 * mm, header_right)
            self.setStrokeColor(colors.HexColor("#999999"))
            self.setLineWidth(0.4)
            self.line(MARGIN, height - MARGIN + 2.5 * mm, width - MARGIN, height - MARGIN + 2.5 * mm)
            self.line(MARGIN, MARGIN - 3 * mm, width - MARGIN, MARGIN - 3 * mm)
            self.drawString(MARGIN, MARGIN - 7 * mm, footer_left)
            self.drawCentredString(width / 2, MARGIN - 7 * mm, f"第 {number} 页 共 {total} 页")
            self.restoreState()

    return ReportCanvas


def build_pdf(
    path: Path,
    story: list[Flowable],
    *,
    font: FontChoice,
    as_of: dt.date,
    title: str,
    subject: str,
    keywords: list[str],
    header_left: str,
    header_right: str,
    footer_left: str,
    creator: str = "jiebang",
) -> None:
    """Lay out ``story`` on landscape A4 pages and write the PDF, deterministically.

    The metadata is fixed: author "jiebang", the given creator, title and subject, the
    keywords plus the font note, and creation/modification dates at the as-of date.
    """
    doc = BaseDocTemplate(
        str(path),
        pagesize=PAGE_SIZE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN + 2 * mm,
        bottomMargin=MARGIN,
        title=title,
        author="jiebang",
        subject=subject,
        creator=creator,
        keywords=[*keywords, font.note],
        invariant=1,
        pageCompression=1,
    )
    frame = Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="body", leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame])])
    doc.build(
        story,
        canvasmaker=_canvas_class(header_left=header_left, header_right=header_right, footer_left=footer_left, font=font, as_of=as_of),
    )


def usable_width() -> float:
    """The width of the text frame on a page, in points."""
    return PAGE_SIZE[0] - 2 * MARGIN
