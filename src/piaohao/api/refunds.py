"""`/v1/refunds`: create (idempotent, re-entrant) and read."""

from __future__ import annotations

from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt, StrictStr, model_validator

from piaohao.api.deps import merchant_id, platform
from piaohao.api.schemas import ErrorOut, MerchantKey, Strict
from piaohao.domain import refunds as rs
from piaohao.kernel.money import AMOUNT_MAX
from piaohao.platform import Platform
from piaohao.services import refunds as svc
from piaohao.services.refund_tries import execute_refund

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1/refunds", tags=["refunds"],
                   responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut},
                              429: {"model": ErrorOut}})

TradeNo = Annotated[StrictStr, Field(min_length=1, max_length=40)]


class CreateRefundBody(Strict):
    trade_no: TradeNo | None = None
    out_trade_no: MerchantKey | None = None
    out_request_no: MerchantKey
    amount: Annotated[StrictInt, Field(ge=1, le=AMOUNT_MAX)]
    reason: Annotated[StrictStr, Field(max_length=256)] | None = None
    out_order_no: MerchantKey | None = None  # the refunded order of a trade with several (settlement)

    @model_validator(mode="after")
    def _names_a_trade(self):
        if self.trade_no is None and self.out_trade_no is None:
            raise ValueError("give trade_no or out_trade_no")
        return self


class RefundComponentOut(BaseModel):
    method: str
    amount: int


class RefundOut(BaseModel):
    refund_no: str
    trade_no: str
    out_request_no: str
    amount: int
    currency: str
    status: Literal["processing", "succeeded", "failed"]
    reason: str | None
    created_at: str
    finished_at: str | None
    components: list[RefundComponentOut] = Field(
        description="what this refund returns to each funding component of the trade")


@router.post("", status_code=201, response_model=RefundOut,
             responses={200: {"model": RefundOut, "description": "replay of the same request"},
                        409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
def create_refund(body: CreateRefundBody, request: Request, response: Response, p: Platform = Depends(platform),
                  mch: str = Depends(merchant_id)):
    """Refund part or all of a paid trade. The answer's `status` is where the refund stands after
    one immediate try at the channel; `processing` ends in `succeeded` or `failed`, notified."""
    refund, created = svc.create_refund(p, mch, svc.NewRefund(**body.model_dump()))
    request.scope["state"]["trade_no"] = refund["trade_no"]
    if not created:
        response.status_code = 200
        return refund
    if refund["status"] == rs.PROCESSING:
        try:
            execute_refund(p, refund["refund_no"], force=True)
        except Exception:  # noqa: BLE001 - the refund is committed; the worker carries it on
            log.exception("refund.first_try_error", refund_no=refund["refund_no"])
        refund = svc.get_refund(p, mch, refund_no=refund["refund_no"])
    return refund


@router.get("", response_model=RefundOut)
def find_refund(request: Request, out_request_no: str = Query(..., min_length=1, max_length=64),
                trade_no: str | None = Query(None, min_length=1, max_length=40),
                out_trade_no: str | None = Query(None, min_length=1, max_length=64),
                p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.get_refund(p, mch, trade_no=trade_no, out_trade_no=out_trade_no, out_request_no=out_request_no)


@router.get("/{refund_no}", response_model=RefundOut)
def get_refund(refund_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.get_refund(p, mch, refund_no=refund_no)
