"""The web portal (``jiebang serve``): enterprises, auditors and the bureau each see their part
of the ledger, server-rendered in Chinese, scoped by the database (docs/access.md)."""
