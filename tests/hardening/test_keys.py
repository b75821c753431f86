"""`piaohao keys rotate`: every sealed secret is re-sealed under the new key, and audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from piaohao.channel_directory import open_config
from piaohao.db.schema import audit_log
from piaohao.db.schema_channels import channel_accounts
from piaohao.kernel.errors import InvalidRequest
from piaohao.kernel.sealing import Sealer, SealError
from piaohao.services import keys
from tests.conftest import TEST_SECRET_KEY

NEW_KEY = "the-new-secret-key-for-rotation-0123456789"


def test_rotation_reseals_every_channel_key_under_the_new_key(make_platform):
    running = make_platform(workers=False)
    p = running.platform
    with pytest.raises(InvalidRequest):
        keys.rotate(p, "short")
    summary = keys.rotate(p, NEW_KEY, operator="ops")
    assert summary["resealed"]["channel_accounts.config_sealed"] >= 1
    with p.db.read() as conn:
        rows = conn.execute(select(channel_accounts)).all()
        actions = conn.execute(select(audit_log.c.action, audit_log.c.operator)).all()
    for row in rows:
        assert open_config(row, Sealer(NEW_KEY))["private_key_pem"].startswith("-----BEGIN")
        with pytest.raises(SealError):
            open_config(row, Sealer(TEST_SECRET_KEY))
    assert ("keys.rotate", "ops") in actions
    # Run again (e.g. after an interruption): nothing left to re-seal, nothing broken.
    assert keys.rotate(p, NEW_KEY)["resealed"]["channel_accounts.config_sealed"] == 0
