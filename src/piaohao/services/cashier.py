"""The cashier's use cases: what a trade can be paid with, and paying it."""

from __future__ import annotations

from sqlalchemy import select

from piaohao.db.schema import merchants
from piaohao.domain.composition import INTERNAL_METHODS, coins_cap
from piaohao.kernel.clock import rfc3339, to_utc
from piaohao.kernel.errors import MethodNotAvailable
from piaohao.platform import Platform
from piaohao.services import cards, funding
from piaohao.services.methods import ChannelMethod, channel_methods
from piaohao.services.payments import find_trade_with_accounts, start_payment

INTERNAL_NAMES = {"balance": "Balance", "coins": "Coins", "credit": "Credit line"}


def cashier_view(p: Platform, token: str) -> dict:
    trade, accounts = find_trade_with_accounts(p, token)
    return _view(p, token, trade, _offered(p, trade, accounts))


def _offered(p: Platform, trade, accounts) -> list[ChannelMethod]:
    """The channel methods for the whole of the trade, from the accounts the request read once."""
    return channel_methods(p, trade["merchant_id"], trade["currency"], trade["amount"], accounts=accounts)


def _view(p: Platform, token: str, trade, offered: list[ChannelMethod]) -> dict:
    methods = []
    for m in offered:
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
    trade, accounts = find_trade_with_accounts(p, token)
    offered = _offered(p, trade, accounts)
    view = _view(p, token, trade, offered)
    seconds_left = int((to_utc(trade["expires_at"]) - to_utc(p.clock.now())).total_seconds())
    in_app = {m.method for m in offered if m.product.needs_openid}
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
    part: internal parts held, the buyer sent to the channel's page. The trade and the merchant's
    channel accounts are read once, and every question about the methods is answered from them."""
    read = find_trade_with_accounts(p, token)
    trade, accounts = read
    offered = _offered(p, trade, accounts)
    parts = funding.parse_parts(p, trade, method, components, offered=offered)
    internal = [x for x in parts if x.internal]
    channel_part = next((x for x in parts if not x.internal), None)
    chosen = next((m for m in offered if m.method == channel_part.method), None) if channel_part else None
    card_token = None
    if chosen is not None and chosen.product.mandate:
        raise MethodNotAvailable(f"payment method {chosen.method!r} is not available for this trade")
    if chosen is not None and chosen.product.card:
        card_token = cards.card_for_payment(p, trade, card_id)  # the member's card: their password too
    if internal or card_token:
        funding.check_password(p, trade, payment_password)
    if channel_part is None:
        return funding.pay_internal_only(p, trade["trade_no"], parts)
    return start_payment(p, token, channel_part.method, parts if internal else None, openid=openid,
                         client_ip=client_ip, bank=bank, card_token=card_token, read=read)

