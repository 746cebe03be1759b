"""A first end-to-end check that the fixtures and the CLI work on each backend."""


def test_init_post_verify(cli, tmp_path):
    entry = tmp_path / "e.json"
    entry.write_text(
        '{"date": "2025-01-02", "kind": "appropriation", "voucher": "A-1", "postings": ['
        '{"account": "Assets:Treasury", "amount": "300万"},'
        '{"account": "Equity:Appropriations", "amount": "-3000000.00"}]}',
        encoding="utf-8",
    )
    cli("open", "Assets:Treasury", "--book", "fiscal", "--date", "2025-01-01")
    cli("open", "Equity:Appropriations", "--book", "fiscal", "--date", "2025-01-01")
    assert "posted 1 entry" in cli("post", "--file", str(entry)).output
    assert "OK: 1 entries verified" in cli("verify").output
