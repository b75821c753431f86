"""The public shapes of our objects (API responses and notification `data`), in one place."""

from __future__ import annotations

from piaohao.clock import rfc3339
from piaohao.platform import Platform


def trade_view(p: Platform, t) -> dict:
    tz = p.settings.tz
    return {
        "trade_no": t["trade_no"],
        "out_trade_no": t["out_trade_no"],
        "amount": t["amount"],
        "currency": t["currency"],
        "subject": t["subject"],
        "status": t["status"],
        "refunded_amount": t["refunded_amount"],
        "expires_at": rfc3339(t["expires_at"], tz),
        "paid_at": rfc3339(t["paid_at"], tz),
        "closed_at": rfc3339(t["closed_at"], tz),
        "close_reason": t["close_reason"],
        "created_at": rfc3339(t["created_at"], tz),
        "buyer_id": t["buyer_id"],
        "notify_url": t["notify_url"],
        "return_url": t["return_url"],
        "pay_url": p.pay_url(t["cashier_token"]),
    }
