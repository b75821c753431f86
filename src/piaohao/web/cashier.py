"""The buyer's cashier pages: what the page shows for a trade, read from the cashier's use cases.

Every way to pay is a plain HTML form posting to `{pay_url}/form`, so the basic path works with
no JavaScript; `static/cashier.js` only adds the countdown, status polling and a busy button.
This module turns the cashier view into forms, a buyer's form back into a pay request, error codes
into sentences a buyer understands, and a `code_url` into an inline SVG QR code (segno, drawn
here: no image service, works offline). It moves no money and decides no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import segno

from piaohao.kernel.errors import InvalidComponents, PiaohaoError
from piaohao.web.assets import render, templates

__all__ = ["PayRequest", "page_state", "cashier_page", "qr_page", "result_page", "problem_page",
           "read_form", "error_text", "qr_svg", "clock_text"]

FORM_FIELD_CHARS_MAX = 64  # longer than any method, bank, card id, password or amount we take
POLL_INTERVAL_S = 2
POLL_TRIES_MAX = 150  # about five minutes of waiting, then the page asks the buyer to refresh
RETURN_DELAY_S = 2  # the buyer reads "paid" before moving on to the merchant

# What a buyer reads for a method. English, as the page is (`lang="en"`); a Chinese page is a
# translation of these strings and the templates, not a mix inside one page.
LABELS = {
    "alipay.page": "Alipay (on a computer)", "alipay.wap": "Alipay (on a phone)",
    "wechatpay.native": "WeChat Pay (scan a QR code)", "wechatpay.h5": "WeChat Pay (phone browser)",
    "netbank": "Online banking", "quick": "Bound bank card (quick pay)",
    "balance": "Account balance", "coins": "Coins", "credit": "Credit line",
}
PASSWORD_HELP = "The 6-32 character payment password of your account with this shop."

_MESSAGES = {
    "INVALID_PAYMENT_PASSWORD": "The payment password is wrong. Check it and try again.",
    "PAYMENT_PASSWORD_LOCKED": "Too many wrong payment passwords. Pay another way, or try again later.",
    "INSUFFICIENT_BALANCE": "There is not enough balance, coins or credit for this amount.",
    "COINS_CAP_EXCEEDED": "Coins can pay at most {cap} of this order.",
    "INVALID_COMPONENTS": "The amounts do not add up: choose how many coins to use (less than the total) "
                          "and a method for the rest.",
    "METHOD_NOT_AVAILABLE": "This way to pay is not available for this order. Please choose another.",
    "TRADE_NOT_PAYABLE": "This order can no longer be paid.",
    "TRADE_EXPIRED": "This order has expired.",
    "PAYMENT_DECLINED": "The bank declined this card. Please pay another way.",
    "CARD_NOT_ACTIVE": "This card cannot be used. Please pay another way.",
    "CARD_NOT_FOUND": "This card cannot be used. Please pay another way.",
    "CHANNEL_UNAVAILABLE": "The payment service did not answer. Please try again in a moment.",
    "TRADE_NOT_FOUND": "There is no payment at this address. Check the link you were given.",
    "ORDER_NOT_FOUND": "The shop does not know this order. Check the link you were given.",
    "NOT_FOUND": "There is no payment at this address. Check the link you were given.",
    "PAYINFO_UNAVAILABLE": "The shop did not answer. Please reload this page in a moment.",
    "PAYINFO_INVALID": "The shop sent payment details we could not accept. Please contact the shop.",
    "ZERO_AMOUNT": "This order costs nothing: there is nothing to pay.",
}

STATES = {  # state -> (heading, sentence); a trade in any of these states shows no pay button
    "paid": ("Paid", "This order has been paid. Thank you."),
    "refunded": ("Paid and refunded", "This order was paid and the money has been refunded."),
    "closed": ("Closed", "This order was closed and can no longer be paid."),
    "expired": ("Expired", "The time to pay this order has run out."),
}


def page_state(view: dict) -> str:
    """payable, or why not: paid, refunded, closed, expired (pending with no time left)."""
    status = view["status"]
    if status == "pending":
        return "payable" if view["seconds_left"] > 0 else "expired"
    return {"succeeded": "paid", "refunded": "refunded"}.get(status, "closed")


def clock_text(seconds: int) -> str:
    """14:59, or 1:04:59 past an hour: what the countdown shows before the script takes over."""
    seconds = max(0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def error_text(exc: PiaohaoError, view: dict | None = None) -> str:
    text = _MESSAGES.get(exc.code)
    if text is None:
        return f"That did not work: {exc.message}."
    if "{cap}" in text:
        cap = (view or {}).get("coins_cap_minor", 0)
        text = text.format(cap=templates.filters["money"](cap, (view or {}).get("currency", "CNY")))
    return text


@dataclass
class Form:
    """One way to pay, drawn as one form (its own button, fields and error)."""

    id: str
    title: str
    kind: str  # channel | bank | card | member | combo
    method: str = ""
    banks: list[str] = field(default_factory=list)
    cards: list[dict] = field(default_factory=list)
    rest_methods: list[tuple[str, str]] = field(default_factory=list)  # combo: (method, label)
    error: str = ""


def _forms(view: dict) -> list[Form]:
    forms: list[Form] = []
    internal = [m for m in view["methods"] if m["kind"] == "internal"]
    for m in view["methods"]:
        label = LABELS.get(m["method"], m["name"])
        if m["kind"] == "channel":
            kind = "bank" if m.get("banks") else "card" if m.get("cards") else "channel"
            forms.append(Form(_form_id(m["method"]), label, kind, m["method"], banks=m.get("banks", []),
                              cards=m.get("cards", [])))
        elif m["method"] != "coins" or view["coins_cap_minor"] >= view["amount"]:
            forms.append(Form(m["method"], label, "member", m["method"]))
    if any(m["method"] == "coins" for m in internal) and 0 < view["coins_cap_minor"]:
        rest = [(m["method"], LABELS.get(m["method"], m["name"])) for m in view["methods"]
                if m["method"] != "coins" and not m.get("banks") and not m.get("cards")]
        if rest:
            forms.append(Form("combo", "Coins + another way", "combo", rest_methods=rest))
    return forms


def _form_id(method: str) -> str:
    """An HTML id (and CSS selector) for a method's form: `wechatpay.native` -> `wechatpay-native`."""
    return method.replace(".", "-")


def cashier_page(view: dict, *, error: str = "", error_form: str = "") -> str:
    state = page_state(view)
    forms = _forms(view) if state == "payable" else []
    for f in forms:
        if f.id == error_form:
            f.error = error
    return render("cashier/page.html", v=view, state=state, state_text=STATES.get(state), forms=forms,
                  base=_base(view), clock=clock_text(view["seconds_left"]), password_help=PASSWORD_HELP,
                  page_error=error if error and not any(f.error for f in forms) else "")


def qr_page(view: dict, code_url: str, method: str) -> str:
    return render("cashier/qr.html", v=view, base=_base(view), svg=qr_svg(code_url), code_url=code_url,
                  title=LABELS.get(method, method), clock=clock_text(view["seconds_left"]),
                  poll_interval_s=POLL_INTERVAL_S, poll_tries_max=POLL_TRIES_MAX)


def result_page(view: dict) -> str:
    state = page_state(view)
    heading, sentence = {
        "paid": ("Payment received", "Your payment is confirmed. Thank you."),
        "payable": ("Waiting for confirmation",
                    "We are waiting for the payment service to confirm your payment. This page updates by itself."),
    }.get(state) or STATES[state]
    return render("cashier/result.html", v=view, state=state, heading=heading, sentence=sentence, base=_base(view),
                  return_delay_s=RETURN_DELAY_S, poll_interval_s=POLL_INTERVAL_S, poll_tries_max=POLL_TRIES_MAX)


def problem_page(exc: PiaohaoError, heading: str = "Cannot pay this order") -> str:
    return render("cashier/problem.html", heading=heading, message=error_text(exc), code=exc.code)


def qr_svg(code_url: str) -> str:
    """The QR code of `code_url` as inline SVG, dark on white so any scanner reads it."""
    return segno.make(code_url, error="m").svg_inline(scale=5, border=4, dark="#000", light="#fff", svgclass="qr",
                                                       title="QR code to scan with WeChat")


def _base(view: dict) -> str:
    return f"/cashier/{view['token']}"  # a path: the page works under whatever host the buyer used


@dataclass(frozen=True)
class PayRequest:
    method: str | None
    components: list[tuple[str, int | None]] | None
    payment_password: str | None
    bank: str | None
    card_id: str | None
    form_id: str


def read_form(form) -> PayRequest:
    """The buyer's form as a pay request (the same use case as the JSON twin). Raises
    InvalidComponents for a coins amount that is not a whole number."""
    def get(name: str) -> str | None:
        value = form.get(name)
        return value.strip()[:FORM_FIELD_CHARS_MAX] or None if isinstance(value, str) else None

    form_id = get("form") or ""
    components = None
    method = get("method")
    if form_id == "combo":
        coins = get("coins_amount") or ""
        if not coins.isdigit():
            raise InvalidComponents("enter the coins as a whole number")
        components = [("coins", int(coins)), (get("rest_method") or "", None)]
        method = None
    password = form.get("payment_password")
    password = password[:FORM_FIELD_CHARS_MAX] if isinstance(password, str) and password else None
    return PayRequest(method, components, password, get("bank"), get("card_id"), form_id)
