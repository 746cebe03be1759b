"""docs/cli.md is the `--help` of every command as the code prints it (docs/gen_cli.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
gen_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_cli)


def test_docs_cli_md_is_the_generated_reference():
    written = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    problem = gen_cli.drift(written, gen_cli.render())
    assert problem is None, problem


def test_each_section_is_what_help_prints_on_a_terminal():
    sections = gen_cli.sections()
    assert [path for path, _ in sections][:3] == ["jiebang", "jiebang init", "jiebang open"]
    assert "jiebang export beancount" in dict(sections)
    for path, text in sections:
        result = CliRunner().invoke(main, [*path.split()[1:], "--help"], prog_name="jiebang", terminal_width=gen_cli.WIDTH)
        assert result.exit_code == 0, path
        assert result.output == text + "\n", path


def test_the_check_names_the_command_whose_help_drifted(tmp_path, monkeypatch, capsys):
    expected = gen_cli.render()
    stale = tmp_path / "cli.md"
    monkeypatch.setattr(gen_cli, "OUT", stale)
    monkeypatch.setattr(gen_cli, "ROOT", tmp_path)

    stale.write_text(expected, encoding="utf-8")
    assert gen_cli.main(["--check"]) == 0

    stale.write_text(expected.replace("Post balanced entries from a JSON or CSV file", "Post entries"), encoding="utf-8")
    assert gen_cli.main(["--check"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        # The first line of a docstring is also in the group's list of commands.
        ("error: docs/cli.md is out of date: the help of `jiebang`, `jiebang post` changed; "
         "run `python docs/gen_cli.py` and commit docs/cli.md.")
    ]

    only_options = expected.replace("Output format.  [default: table]", "Output format.", 1)
    assert "`jiebang accounts` changed" in gen_cli.drift(only_options, expected)
    without_bid_pay = expected.replace("### jiebang bid pay\n", "### jiebang bid pay (removed)\n")
    assert gen_cli.drift(without_bid_pay, expected) == (
        "docs/cli.md has no section for `jiebang bid pay`; run `python docs/gen_cli.py` and commit docs/cli.md."
    )
