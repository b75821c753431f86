"""A bank account to pay out to: validated on the way in, masked on the way out (only the last 4
digits ever leave the platform, in answers and in logs)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from piaohao.kernel.errors import InvalidRequest

ACCOUNT_NUMBER_RE = re.compile(r"^[0-9]{4,34}$")



@dataclass(frozen=True)
class BankAccount:
    bank: str
    number: str
    name: str

    def __post_init__(self) -> None:
        if not ACCOUNT_NUMBER_RE.match(self.number or ""):
            raise InvalidRequest("bank_account.number must be 4-34 digits")
        if not (self.bank or "").strip() or not (self.name or "").strip():
            raise InvalidRequest("bank_account needs bank, number and name")

    def masked(self) -> dict:
        return {"bank": self.bank, "number": mask(self.number), "name": self.name}


def mask(number: str) -> str:
    """Only the last 4 digits show."""
    return "*" * max(0, len(number) - 4) + number[-4:]


def mask_id(number: str) -> str:
    """An id number: first 3 and last 4 characters show (an 18-character ID card: 110***********002X)."""
    if len(number) <= 7:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 7) + number[-4:]
