"""Request bodies: strict types, so a float, a string or a bool is never taken for an amount."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from piaohao.kernel.money import AMOUNT_MAX, CURRENCY_EXPONENT

MerchantKey = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Amount = Annotated[StrictInt, Field(ge=0, le=AMOUNT_MAX)]
# Checked by the service (kernel/outbound.check_url: 400 INVALID_URL), which knows PIAOHAO_OUTBOUND_PRIVATE.
Url = Annotated[StrictStr, Field(min_length=1, max_length=1024)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class SplitIn(Strict):
    receiver_id: Annotated[StrictStr, Field(min_length=1, max_length=40)]
    amount: Annotated[StrictInt, Field(le=AMOUNT_MAX)]  # positivity: INVALID_ORDERS (piaohao.domain.splits)


class OrderIn(Strict):
    out_order_no: MerchantKey
    sub_merchant_id: Annotated[StrictStr, Field(min_length=1, max_length=40)]
    amount: Amount
    subsidy_amount: Amount = 0
    splits: Annotated[list[SplitIn], Field(max_length=50)] = []


class CreateTradeBody(Strict):
    out_trade_no: MerchantKey
    amount: Amount
    currency: StrictStr = "CNY"
    subject: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    notify_url: Url | None = None
    return_url: Url | None = None
    expires_at: AwareDatetime | None = None
    order_created_at: AwareDatetime | None = None
    order_timeout_s: Annotated[StrictInt, Field(ge=1, le=365 * 86400)] | None = None
    buyer_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    member_id: Annotated[StrictStr, Field(min_length=1, max_length=40)] | None = None
    orders: Annotated[list[OrderIn], Field(min_length=1, max_length=100)] | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        if v not in CURRENCY_EXPONENT:
            raise ValueError(f"unsupported currency; one of {', '.join(sorted(CURRENCY_EXPONENT))}")
        return v


class ComponentIn(Strict):
    method: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    # Checked by the composition rules (INVALID_COMPONENTS), not here: any JSON value is accepted.
    amount: Any = None


class PayBody(Strict):
    method: Annotated[StrictStr, Field(min_length=1, max_length=32)] | None = None
    # 1-4 components; other counts are INVALID_COMPONENTS (checked by the route), not INVALID_REQUEST.
    components: Annotated[list[ComponentIn], Field(max_length=64)] | None = None
    payment_password: Annotated[StrictStr, Field(max_length=64)] | None = None
    openid: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None  # wechatpay.jsapi
    bank: Annotated[StrictStr, Field(min_length=1, max_length=16)] | None = None  # netbank
    card_id: Annotated[StrictStr, Field(min_length=1, max_length=40)] | None = None  # quick


class ComponentOut(BaseModel):
    method: str
    amount: int
    refunded_amount: int


class SplitOut(BaseModel):
    receiver_id: str
    amount: int


class OrderSettlementOut(BaseModel):
    batch_no: str
    seller_amount: int
    split_amount: int
    fee_amount: int
    refunded_amount: int


class OrderOut(BaseModel):
    out_order_no: str
    sub_merchant_id: str
    amount: int
    subsidy_amount: int
    splits: list[SplitOut]
    refunded_amount: int
    status: Literal["created", "pending_settlement", "settled", "closed"]
    settle_due_at: str | None
    settled_at: str | None
    settlement: OrderSettlementOut | None = None


class TradeOut(BaseModel):
    trade_no: str
    out_trade_no: str
    amount: int
    currency: str
    subject: str
    status: Literal["pending", "succeeded", "closed", "refunded"]
    refunded_amount: int
    expires_at: str
    paid_at: str | None
    closed_at: str | None
    close_reason: str | None
    created_at: str
    buyer_id: str | None
    notify_url: str | None
    return_url: str | None
    pay_url: str
    member_id: str | None = None
    components: list[ComponentOut] = []
    orders: list[OrderOut] = []


class ErrorOut(BaseModel):
    code: str
    message: str
    request_id: str
