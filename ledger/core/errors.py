"""Refusals: the one shape every user-data problem takes on its way to the officer."""

from __future__ import annotations


class Refusal(Exception):
    """An operation the ledger will not perform, with a predicate code and one sentence.

    Attributes:
      code: a predicate naming what must hold, e.g. ``entry_must_balance_per_book``.
      message: one line an officer can act on: what happened, the numbers, the rule, the fix.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class SchemaNotAtHead(Refusal):
    """The database exists but its schema is not at the migrations' head."""
