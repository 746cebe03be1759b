"""Workbooks that expand into gigabytes are refused before openpyxl parses them.

The attacks of issue 13: a 1.5 MB xlsx with a 1.5 GB shared string took 6.6 GB of memory
and 67 s before it was refused; a 400 KB one with 3 million cells 2.9 GB and 62 s. Each is
now refused in one line within 2 s and 200 MB, measured on a real ``jiebang import`` process.
Both sides of each limit are tested with the limits lowered in process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ledger.core.errors import Refusal
from ledger.programme import importer

ROOT = Path(__file__).resolve().parent.parent

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
    '<sheet name="appropriations" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
SHEET_HEAD = '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
SHEET_TAIL = "</sheetData></worksheet>"


def workbook(path: Path, *, cells: int = 1, shared: int = 1) -> Path:
    """A minimal xlsx: one sheet of ``cells`` numeric cells in rows of ten, one shared string
    of ``shared`` letters (written in pieces: the test process never holds it whole, since a
    child's peak RSS on Linux counts what its parent held when it forked)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", RELS)
        z.writestr("xl/workbook.xml", WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        with z.open("xl/sharedStrings.xml", "w") as out:
            out.write(b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>')
            piece = b"A" * (1 << 20)
            for start in range(0, shared, len(piece)):
                out.write(piece[: min(len(piece), shared - start)])
            out.write(b"</t></si></sst>")
        with z.open("xl/worksheets/sheet1.xml", "w") as out:
            out.write(SHEET_HEAD.encode())
            row = b"<row>" + b"<c><v>1</v></c>" * 10 + b"</row>"
            for _ in range(cells // 10):
                out.write(row)
            out.write(b"<row>" + b"<c><v>1</v></c>" * (cells % 10) + b"</row>")
            out.write(SHEET_TAIL.encode())
    return path


def _import(path: Path, db: Path) -> tuple[int, str, float, int]:
    """Run `jiebang import FILE --dry-run` as its own process: exit code, stderr, CPU seconds
    of the child (user + system: unlike wall time, not stretched by other work on a shared
    machine), peak resident memory in KB."""
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child of a
    # large pytest process would report its parent's size; VmHWM belongs to the new image.
    code = (
        "import sys, runpy; sys.argv = ['jiebang', '--db', sys.argv[1], 'import', sys.argv[2], '--dry-run']\n"
        "try:\n    runpy.run_module('cli', run_name='__main__')\n"
        "finally:\n"
        "    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
        "    sys.stderr.write(f'\\nRSS {hwm}\\n')\n"
    )
    before = os.times()
    done = subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}", str(path)], check=False, capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
    after = os.times()
    seconds = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    rss = int(lines[-1].split()[1])
    return done.returncode, "\n".join(lines[:-1]), seconds, rss


@pytest.fixture
def ledger_file(tmp_path, _sqlite_template) -> Path:
    import shutil

    path = tmp_path / "ledger.db"
    shutil.copyfile(_sqlite_template, path)
    return path


def test_a_huge_shared_string_is_refused_within_2_s_and_200_mb(tmp_path, ledger_file):
    path = workbook(tmp_path / "bomb-text.xlsx", shared=1_500_000_000)
    assert path.stat().st_size < 3_000_000  # a small file ...
    code, err, seconds, rss_kb = _import(path, ledger_file)
    assert code == 1 and err.startswith("error: ") and "\n" not in err, err
    assert "expands to" in err and "over the 209,715,200-byte limit" in err
    assert seconds < 2.0 + 1.5, seconds  # the refusal itself within 2 s of CPU, plus the CLI's start-up
    assert rss_kb < 200 * 1024, rss_kb


def test_three_million_cells_are_refused_within_2_s_and_200_mb(tmp_path, ledger_file):
    path = workbook(tmp_path / "bomb-cells.xlsx", cells=3_000_000)
    assert path.stat().st_size < 1_000_000
    code, err, seconds, rss_kb = _import(path, ledger_file)
    assert code == 1 and err == (
        f"error: {path} has more than 2,000,000 cells; split it into several files "
        "(up to about 200,000 rows of ten columns each)."
    ), err
    assert seconds < 2.0 + 1.5, seconds
    assert rss_kb < 200 * 1024, rss_kb


def test_each_workbook_limit_one_unit_either_side(tmp_path, monkeypatch):
    small = workbook(tmp_path / "small.xlsx", cells=25, shared=1000)
    sizes = {m.filename: m.file_size for m in zipfile.ZipFile(small).infolist()}
    cases = [
        ("XLSX_BYTES_MAX", small.stat().st_size, "bytes, over the"),
        ("XLSX_UNCOMPRESSED_BYTES_MAX", sum(sizes.values()), "expands to"),
        ("SHARED_STRINGS_BYTES_MAX", sizes["xl/sharedStrings.xml"], "bytes of text"),
        ("CELLS_MAX", 25, "cells"),
    ]
    for name, exact, says in cases:
        monkeypatch.setattr(importer, name, exact)
        importer._check_archive(small)  # exactly at the limit: accepted
        monkeypatch.setattr(importer, name, exact - 1)
        with pytest.raises(Refusal) as refused:
            importer._check_archive(small)
        assert says in refused.value.message, (name, refused.value.message)
        monkeypatch.undo()


def test_a_cell_tag_cut_between_two_pieces_is_counted_once(tmp_path, monkeypatch):
    """The count streams in 1 MiB pieces: cells across a piece boundary count exactly once."""
    path = workbook(tmp_path / "many.xlsx", cells=200_000)  # about 3 MB of sheet XML, several pieces
    monkeypatch.setattr(importer, "CELLS_MAX", 200_000)
    importer._check_archive(path)
    monkeypatch.setattr(importer, "CELLS_MAX", 199_999)
    with pytest.raises(Refusal):
        importer._check_archive(path)


# --- scenario and pipeline files of the forecast ---------------------------------------------


def test_a_scenario_or_pipeline_that_is_not_a_small_regular_file_is_refused_at_once(tmp_path, monkeypatch):
    import datetime as dt

    from reports import forecast

    fifo = tmp_path / "x.toml"
    os.mkfifo(fifo)  # reading it would block forever
    started = time.monotonic()
    with pytest.raises(Refusal) as refused:
        forecast.load_scenario(fifo)
    assert refused.value.code == "scenario_file_must_be_a_small_regular_file"
    assert time.monotonic() - started < 1.0
    with pytest.raises(Refusal) as refused:
        forecast.load_scenario(tmp_path)  # a directory
    assert "is not a regular file" in refused.value.message

    scenario = tmp_path / "s.toml"
    scenario.write_text('[scenario]\nname = "x"\n', encoding="utf-8")
    monkeypatch.setattr(forecast, "SCENARIO_BYTES_MAX", scenario.stat().st_size)
    assert forecast.load_scenario(scenario).name == "x"  # exactly at the limit
    monkeypatch.setattr(forecast, "SCENARIO_BYTES_MAX", scenario.stat().st_size - 1)
    with pytest.raises(Refusal) as refused:
        forecast.load_scenario(scenario)
    assert refused.value.code == "scenario_file_must_be_a_small_regular_file" and "-byte limit" in refused.value.message

    deep = tmp_path / "deep.toml"
    deep.write_text("[scenario]\nname = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    monkeypatch.undo()
    with pytest.raises(Refusal) as refused:
        forecast.load_scenario(deep)
    assert refused.value.code in ("scenario_must_be_valid",) and "\n" not in refused.value.message

    pipe = tmp_path / "plans.csv"
    os.mkfifo(pipe)
    with pytest.raises(Refusal) as refused:
        forecast.load_pipeline(pipe, as_of=dt.date(2026, 1, 1), scenario=forecast.load_scenario(scenario))
    assert refused.value.code == "pipeline_file_must_be_a_small_regular_file"
