"""Unified Social Credit Code (统一社会信用代码, GB 32100-2015) normalisation and validation.

The check character is mod 31 over a 31-symbol set (domain-facts §7). Some real early codes
(the Fujian pilot) fail it, so a failed check can be overridden with a recorded reason; the
format itself (length, symbol set, six-digit division code) can never be overridden. The
GB 11714 check of the embedded organisation code is only a warning: it is not part of
GB 32100 and some valid codes carry organisation codes from before that scheme was uniform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from funding_rules.checks import Violation
from ledger.core.errors import Refusal

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # I, O, Z, S, V are never used.
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 3^(i-1) mod 31 for positions 1..17.
CLAUSE = "GB 32100-2015 统一社会信用代码, check character mod 31"
ORG_CLAUSE = "GB 11714-1997 组织机构代码 check character (warning only)"
OVERRIDE_HINT = (
    "correct it, or register it with --uscc-override-reason if it is a known legacy code"
)
# No override helps a malformed code, so its message asks only for the correction.
FORMAT_HINT = "correct it from the business licence (a misread letter is the usual cause)"

# Positions 1-2 from the set, 3-8 digits (GB/T 2260 division), 9-18 from the set. python-stdnum
# wants the first 8 all digits, which wrongly rejects A…, N… and Y… registration authorities.
FORMAT_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_VALUES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # GB 11714 uses the full alphabet, A=10.


@dataclass(frozen=True, slots=True)
class UsccResult:
    """A USCC accepted for registration.

    Attributes:
      code: the normalised code.
      valid: whether it passes the GB 32100 check character.
      overridden: whether it was accepted only because an override reason was given.
      warnings: non-blocking findings (e.g. the GB 11714 organisation-code check).
    """

    code: str
    valid: bool
    overridden: bool
    warnings: tuple[Violation, ...]


def normalize_uscc(text: str) -> str:
    """Strip spaces (including full-width) and hyphens, and uppercase."""
    return re.sub(r"[\s\u3000\-‐－—]", "", text).upper()


def check_digit(code17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a code."""
    if len(code17) != 17 or any(c not in CHARSET for c in code17):
        raise ValueError(f"need 17 characters from {CHARSET}, got {code17!r}")
    total = sum(CHARSET.index(c) * w for c, w in zip(code17, WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]  # The outer mod maps 31 to 0.


def _format_problems(code: str) -> list[Violation]:
    if len(code) != 18:
        return [
            Violation(
                "uscc_must_have_18_characters",
                f"USCC {code!r} has {len(code)} characters, not 18 ({CLAUSE}); {FORMAT_HINT}.",
                CLAUSE,
            )
        ]
    bad = sorted({c for c in code[:17] if c not in CHARSET})
    if not bad and code[17] not in CHARSET:
        # Only the check position is off the symbol set: say what belongs there. An override
        # cannot help, because a character outside the set is never a real code.
        return [
            Violation(
                "uscc_must_use_gb32100_symbols",
                f"USCC {code} ends in {code[17]}, which is not a GB 32100 symbol: expected check "
                f"character {check_digit(code[:17])}, found {code[17]} ({CLAUSE}); {FORMAT_HINT}.",
                CLAUSE,
            )
        ]
    if bad:
        return [
            Violation(
                "uscc_must_use_gb32100_symbols",
                f"USCC {code} contains {''.join(bad)}, outside the 31 symbols {CHARSET} (I, O, Z, "
                f"S, V are never used) ({CLAUSE}); {FORMAT_HINT}.",
                CLAUSE,
            )
        ]
    if not FORMAT_RE.match(code):
        return [
            Violation(
                "uscc_division_code_must_be_digits",
                f"USCC {code} has {code[2:8]!r} at positions 3-8 where a six-digit division code "
                f"belongs ({CLAUSE}); {FORMAT_HINT}.",
                CLAUSE,
            )
        ]
    return []


def _check_problem(code: str) -> Violation | None:
    expected = check_digit(code[:17])
    if code[17] == expected:
        return None
    return Violation(
        "uscc_check_character_must_match",
        f"USCC {code} fails the GB 32100-2015 check: expected check character {expected}, found "
        f"{code[17]} ({CLAUSE}); {OVERRIDE_HINT}.",
        CLAUSE,
    )


def uscc_problems(code: str) -> list[Violation]:
    """Every blocking problem of a code (normalised first); empty when it is valid."""
    normalised = normalize_uscc(code)
    problems = _format_problems(normalised)
    if problems:
        return problems
    mismatch = _check_problem(normalised)
    return [mismatch] if mismatch else []


def org_code_warnings(code: str) -> list[Violation]:
    """The GB 11714 check on positions 9-17, as warnings; the code must already be well formed."""
    org = code[8:17]
    total = sum(_ORG_VALUES.index(c) * w for c, w in zip(org[:8], _ORG_WEIGHTS, strict=True))
    r = 11 - total % 11
    expected = "X" if r == 10 else "0" if r == 11 else str(r)
    if org[8] == expected:
        return []
    return [
        Violation(
            "uscc_org_code_should_pass_gb11714",
            f"USCC {code}: the organisation code {org} ends in {org[8]}, GB 11714 expects "
            f"{expected} ({ORG_CLAUSE}); check the code against the business licence.",
            ORG_CLAUSE,
            severity="warning",
        )
    ]


def validate_uscc(text: str, *, override_reason: str | None = None) -> UsccResult:
    """Accept a code for registration, or refuse it with ``uscc_must_be_valid``.

    A failed check character is accepted only with a non-blank ``override_reason`` (for known
    legacy codes); the caller records the reason in the party's audit trail.
    """
    code = normalize_uscc(text)
    format_problems = _format_problems(code)
    if format_problems:
        raise Refusal("uscc_must_be_valid", format_problems[0].message)
    mismatch = _check_problem(code)
    reason = (override_reason or "").strip()
    if mismatch and not reason:
        raise Refusal("uscc_must_be_valid", mismatch.message)
    return UsccResult(
        code=code,
        valid=mismatch is None,
        overridden=mismatch is not None,
        warnings=tuple(org_code_warnings(code)),
    )
