"""The cashier's use cases: what a trade can be paid with, and paying it."""

from __future__ import annotations

from sqlalchemy import select

from piaohao.db.schema import merchants
from piaohao.domain.composition import INTERNAL_METHODS, coins_cap
from piaohao.kernel.clock import rfc3339, to_utc
from piaohao.kernel.errors import MethodNotAvailable
from piaohao.platform import Platform
from piaohao.services import cards, funding
from piaohao.services.methods import channel_methods
from piaohao.services.payments import find_trade_by_token, start_payment

INTERNAL_NAMES = {"balance": "Balance", "coins": "Coins", "credit": "Credit line"}


def cashier_view(p: Platform, token: str) -> dict:
    trade = find_trade_by_token(p, token)
    methods = []
    for m in channel_methods(p, trade["merchant_id"], trade["currency"], trade["amount"]):
        if m.product.mandate:
            continue  # agreement debits are the merchant's, never a buyer's choice
        entry = {"method": m.method, "name": m.product.title or m.method, "kind": "channel"}
        if m.product.banks:
            entry["banks"] = list(m.product.banks)
        if m.product.card:  # quick pay: offered with the member's active bound cards (bank, last4)
            bound = cards.active_cards(p, trade["merchant_id"], trade["member_id"]) if trade["member_id"] else []
            if not bound or trade["purpose"] != "sale":
                continue
            entry["cards"] = [{"card_id": c["card_id"], "bank": c["bank"], "last4": c["last4"]} for c in bound]
        methods.append(entry)
    if trade["member_id"] and trade["purpose"] == "sale":  # a top-up is paid by a channel only
        # Offered by name only: anyone holding the link sees this page, so the member's balances
        # are not shown (the merchant's app shows them to its member: GET /v1/members/{id}).
        for method in INTERNAL_METHODS:
            methods.append({"method": method, "name": INTERNAL_NAMES[method], "kind": "internal"})
    return {
        "trade_no": trade["trade_no"], "subject": trade["subject"], "amount": trade["amount"],
        "currency": trade["currency"], "status": trade["status"], "member_id": trade["member_id"],
        "expires_at": rfc3339(trade["expires_at"], p.settings.tz), "methods": methods,
        "pay_url": p.pay_url(token),
    }


def page_view(p: Platform, token: str) -> dict:
    """What the cashier's HTML page needs beyond the JSON twin (which stays as API.md fixes it):
    the seconds left before the trade expires (by the platform's clock, so the page never trusts
    the buyer's), where to send the buyer once paid, the most coins may pay, and which channel
    methods need an app the page cannot be (WeChat JSAPI runs inside WeChat only)."""
    view = cashier_view(p, token)
    trade = find_trade_by_token(p, token)
    seconds_left = int((to_utc(trade["expires_at"]) - to_utc(p.clock.now())).total_seconds())
    in_app = {m.method for m in channel_methods(p, trade["merchant_id"], trade["currency"], trade["amount"])
              if m.product.needs_openid}
    cap_minor = 0
    if any(m["method"] == "coins" for m in view["methods"]):
        with p.db.read() as conn:
            cap_pct = conn.execute(select(merchants.c.coins_cap_pct).where(
                merchants.c.merchant_id == trade["merchant_id"])).scalar_one()
        cap_minor = coins_cap(trade["amount"], cap_pct)
    return {**view, "token": token, "return_url": trade["return_url"], "seconds_left": max(0, seconds_left),
            "coins_cap_minor": cap_minor, "purpose": trade["purpose"],
            "methods": [m for m in view["methods"] if m["method"] not in in_app]}


def pay(p: Platform, token: str, *, method: str | None, components: list[tuple[str, object]] | None,
        payment_password: str | None, openid: str | None = None, client_ip: str | None = None,
        bank: str | None = None, card_id: str | None = None) -> dict:
    """One method for the whole amount, or components. Internal-only: paid at once. With a channel
    part: internal parts held, the buyer sent to the channel's page."""
    trade = find_trade_by_token(p, token)
    parts = funding.parse_parts(p, trade, method, components)
    internal = [x for x in parts if x.internal]
    channel_part = next((x for x in parts if not x.internal), None)
    card_token = None
    if channel_part is not None and _is_mandate_method(p, trade, channel_part.method):
        raise MethodNotAvailable(f"payment method {channel_part.method!r} is not available for this trade")
    if channel_part is not None and _is_card_method(p, trade, channel_part.method):
        card_token = cards.card_for_payment(p, trade, card_id)  # the member's card: their password too
    if internal or card_token:
        funding.check_password(p, trade, payment_password)
    if channel_part is None:
        return funding.pay_internal_only(p, trade["trade_no"], parts)
    return start_payment(p, token, channel_part.method, parts if internal else None, openid=openid,
                         client_ip=client_ip, bank=bank, card_token=card_token)


def _is_mandate_method(p: Platform, trade, method: str) -> bool:
    return any(m.method == method and m.product.mandate
               for m in channel_methods(p, trade["merchant_id"], trade["currency"], trade["amount"]))


def _is_card_method(p: Platform, trade, method: str) -> bool:
    return any(m.method == method and m.product.card
               for m in channel_methods(p, trade["merchant_id"], trade["currency"], trade["amount"]))
