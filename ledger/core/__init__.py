"""The journal core: money, accounts, entries and postings, the posting and bulk paths,
reversal, the hash chain and its verification, anchors, exports, storage and backup.

It knows nothing of projects, city rules or migrations: nothing here imports
``ledger.programme``, ``funding_rules`` or ``migrations`` (tests/test_boundaries.py).
"""
