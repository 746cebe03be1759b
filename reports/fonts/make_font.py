"""Build the font that ships with jiebang: Noto Sans CJK SC (SIL OFL 1.1), cut down to the
characters Chinese fiscal documents use and converted from CFF to TrueType outlines.

It is a maintainer's tool, not used at run time, and needs fontTools (``pip install
fonttools``) and Noto's ``NotoSansCJK-Regular.ttc`` (Debian's ``fonts-noto-cjk``).

Why the conversion: reportlab embeds only TrueType (glyf) outlines and refuses the CFF
outlines Noto CJK is published in. Why this character set: every character of GB 2312 (its
6,763 hanzi and 682 symbols) would not be enough for the names of people and enterprises
(喆, 堃, 玥, 珺 are outside it), so the whole CJK Unified Ideographs block U+4E00-U+9FFF is
kept (20,992 hanzi, a superset of GBK's), with the punctuation, full-width forms, Latin,
Greek, and the number forms and symbols of GB 2312 and of accounting (·, −, ×, ≤, ‰, ￥).

Usage: python reports/fonts/make_font.py NotoSansCJK-Regular.ttc reports/fonts/JiebangSansSC-Regular.ttf
"""

from __future__ import annotations

import sys

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, newTable

FAMILY = "Noto Sans CJK SC"
MAX_ERR_EM = 1.0  # how far (in font units of a 1000-unit em) a quadratic may stray from the cubic


def characters() -> set[int]:
    """The code points kept: GB 2312 whole, the basic CJK block, and what fiscal text uses."""
    points: set[int] = set()
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                text = bytes((high, low)).decode("gb2312")
            except UnicodeDecodeError:
                continue
            points.update(map(ord, text))
    ranges = [
        (0x0020, 0x007E),  # ASCII
        (0x00A0, 0x017F),  # Latin-1 and Latin Extended-A (pinyin with tone marks, names)
        (0x01CD, 0x01DC),  # pinyin with caron (ǎ ǐ ǒ ǔ ǖ ǘ ǚ ǜ)
        (0x0391, 0x03C9),  # Greek
        (0x2010, 0x2044),  # dashes, quotes, ‰, ※
        (0x2070, 0x209F),  # super- and subscripts
        (0x20AC, 0x20AC),  # €
        (0x2100, 0x218F),  # ℃ № ™ Ⅰ-Ⅻ
        (0x2190, 0x21FF),  # arrows
        (0x2200, 0x22FF),  # mathematical operators: − × ÷ ≤ ≥ ≈ ≠ ∑
        (0x2460, 0x24FF),  # ① ⑴ ⒈
        (0x2500, 0x257F),  # box drawing
        (0x25A0, 0x25FF),  # ■ □ ▲ ○ ●
        (0x2600, 0x2642),  # ★ ☆ ♀ ♂
        (0x3000, 0x303F),  # CJK punctuation: 、。〈〉《》「」【】〔〕
        (0x3040, 0x30FF),  # kana (in GB 2312)
        (0x3105, 0x312F),  # bopomofo
        (0x3200, 0x33FF),  # ㈠ ㊣ ㎡
        (0x4E00, 0x9FFF),  # CJK Unified Ideographs
        (0xF900, 0xFAFF),  # compatibility ideographs
        (0xFE30, 0xFE4F),  # vertical forms
        (0xFF01, 0xFF5E),  # full-width forms
        (0xFFE0, 0xFFE6),  # ￠ ￡ ￢ ￣ ￤ ￥
    ]
    for first, last in ranges:
        points.update(range(first, last + 1))
    return points


def open_face(path: str):
    for font in TTCollection(path).fonts:
        if font["name"].getDebugName(1) == FAMILY:
            return font
    raise SystemExit(f"{path} holds no face named {FAMILY}")


def cut(font, points: set[int]):
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.glyph_names = False
    options.hinting = False
    options.drop_tables += ["VORG", "vhea", "vmtx", "BASE", "GSUB", "GPOS", "GDEF"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=points & set(font.getBestCmap()))
    subsetter.subset(font)
    return font


def to_truetype(font) -> None:
    """Replace the CFF outlines by quadratic TrueType ones (the shape kept within MAX_ERR_EM)."""
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    max_err = MAX_ERR_EM * font["head"].unitsPerEm / 1000
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, max_err, reverse_direction=True))
        glyf.glyphs[name] = pen.glyph()
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    del font["CFF "]
    font["head"].glyphDataFormat = 0
    font["head"].indexToLocFormat = 1
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for attr in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                 "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, attr, 0)
    maxp.maxZones = 1
    post = font["post"]
    post.formatType = 3.0
    font.sfntVersion = "\x00\x01\x00\x00"
    for name in order:
        glyf.glyphs[name].recalcBounds(glyf)


def main(source: str, target: str) -> None:
    font = open_face(source)
    font = cut(font, characters())
    to_truetype(font)
    font.recalcTimestamp = False  # the same source gives the same bytes
    font.save(target, reorderTables=True)
    print(f"{target}: {len(font.getGlyphOrder())} glyphs, {len(font.getBestCmap())} characters")


if __name__ == "__main__":
    main(*sys.argv[1:3])
