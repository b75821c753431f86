"""The cashier's use cases: what a trade can be paid with, and paying it."""

from __future__ import annotations

from piaohao.domain.composition import INTERNAL_METHODS
from piaohao.kernel.clock import rfc3339
from piaohao.platform import Platform
from piaohao.services import funding
from piaohao.services.methods import channel_methods
from piaohao.services.payments import find_trade_by_token, start_payment

INTERNAL_NAMES = {"balance": "Balance", "coins": "Coins", "credit": "Credit line"}


def cashier_view(p: Platform, token: str) -> dict:
    trade = find_trade_by_token(p, token)
    methods = [{"method": m.method, "name": m.product.title or m.method, "kind": "channel"}
               for m in channel_methods(p, trade["merchant_id"], trade["currency"], trade["amount"])]
    if trade["member_id"] and trade["purpose"] == "sale":  # a top-up is paid by a channel only
        # Offered by name only: anyone holding the link sees this page, so the member's balances
        # are not shown (the merchant's app shows them to its member: GET /v1/members/{id}).
        for method in INTERNAL_METHODS:
            methods.append({"method": method, "name": INTERNAL_NAMES[method], "kind": "internal"})
    return {
        "trade_no": trade["trade_no"], "subject": trade["subject"], "amount": trade["amount"],
        "currency": trade["currency"], "status": trade["status"], "member_id": trade["member_id"],
        "expires_at": rfc3339(trade["expires_at"], p.settings.tz), "methods": methods,
    }


def pay(p: Platform, token: str, *, method: str | None, components: list[tuple[str, object]] | None,
        payment_password: str | None, openid: str | None = None, client_ip: str | None = None) -> dict:
    """One method for the whole amount, or components. Internal-only: paid at once. With a channel
    part: internal parts held, the buyer sent to the channel's page."""
    trade = find_trade_by_token(p, token)
    parts = funding.parse_parts(p, trade, method, components)
    internal = [x for x in parts if x.internal]
    if internal:
        funding.check_password(p, trade, payment_password)
    channel_part = next((x for x in parts if not x.internal), None)
    if channel_part is None:
        return funding.pay_internal_only(p, trade["trade_no"], parts)
    return start_payment(p, token, channel_part.method, parts if internal else None, openid=openid,
                         client_ip=client_ip)
