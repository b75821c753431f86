"""Ids we issue: prefix, a time part that sorts, randomness that cannot be guessed."""

from __future__ import annotations

import re

from piaohao.kernel.ids import new_id
from piaohao.ledger.model import fast_id


def test_ids_have_their_shape_and_do_not_repeat():
    ids = [new_id("tr") for _ in range(5000)]
    assert all(re.fullmatch(r"tr_[0-9a-z]{21}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_ledger_issues_the_same_kind_of_id():
    assert re.fullmatch(r"je_[0-9a-z]{21}", fast_id("je"))
