"""`/v1/sub-merchants`, `/v1/split-receivers`, `POST /v1/trades/{trade_no}/settle` and
`/v1/settlement-batches` (with each batch's statement as CSV)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt, StrictStr

from piaohao.api.business import BankAccountIn, BankAccountOut
from piaohao.api.deps import merchant_id, platform
from piaohao.api.members import ERRORS
from piaohao.api.schemas import ErrorOut, MerchantKey, Strict, TradeOut
from piaohao.clearing import batches
from piaohao.platform import Platform
from piaohao.services import settlement as settle_svc
from piaohao.services import sub_merchants as svc

Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=40)]


class KycIn(Strict):
    type: Literal["individual", "enterprise"]
    legal_name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    id_number: Annotated[StrictStr, Field(min_length=4, max_length=64, pattern=r"^[0-9A-Za-z-]+$")]


class CreateSubMerchantBody(Strict):
    out_sub_merchant_id: MerchantKey
    name: Name
    kyc: KycIn
    bank_account: BankAccountIn
    settle_after_days: Annotated[StrictInt, Field(ge=0, le=365)] = 365
    payout_every_days: Annotated[StrictInt, Field(ge=1, le=365)] | None = None


class KycOut(BaseModel):
    type: str
    legal_name: str
    id_number: str  # masked


class SubMerchantBalancesOut(BaseModel):
    pending_settlement: int
    settled: int


class SubMerchantOut(BaseModel):
    sub_merchant_id: str
    out_sub_merchant_id: str
    name: str
    kyc: KycOut
    bank_account: BankAccountOut
    status: Literal["pending_review", "active", "frozen", "closed"]
    settle_after_days: int
    payout_every_days: int | None
    currency: str
    balances: SubMerchantBalancesOut
    created_at: str
    updated_at: str


class CreateReceiverBody(Strict):
    out_receiver_id: MerchantKey
    name: Name
    bank_account: BankAccountIn


class ReceiverBalancesOut(BaseModel):
    settled: int


class ReceiverOut(BaseModel):
    receiver_id: str
    out_receiver_id: str
    name: str
    bank_account: BankAccountOut
    currency: str
    balances: ReceiverBalancesOut
    created_at: str


class SettleBody(Strict):
    out_request_no: MerchantKey
    out_order_nos: Annotated[list[MerchantKey], Field(min_length=1, max_length=100)] | None = None


class BatchOut(BaseModel):
    batch_no: str
    seller_type: str
    seller_id: str
    currency: str
    business_date: str
    trigger: str
    order_count: int
    gross_amount: int
    refunded_amount: int
    subsidy_amount: int
    split_amount: int
    fee_amount: int
    platform_fee_amount: int
    seller_amount: int
    status: str
    created_at: str
    problems: list[str] = []


REPLAY = "replay of the same request"
sub_merchants = APIRouter(prefix="/v1/sub-merchants", tags=["sub-merchants"], responses=ERRORS)


@sub_merchants.post("", status_code=201, response_model=SubMerchantOut,
                    responses={200: {"model": SubMerchantOut, "description": REPLAY}, 422: {"model": ErrorOut}})
def create_sub_merchant(body: CreateSubMerchantBody, response: Response, p: Platform = Depends(platform),
                        mch: str = Depends(merchant_id)):
    view, created = svc.create_sub_merchant(p, mch, svc.NewSubMerchant(
        out_sub_merchant_id=body.out_sub_merchant_id, name=body.name, kyc_type=body.kyc.type,
        legal_name=body.kyc.legal_name, id_number=body.kyc.id_number, bank_account=body.bank_account.to_service(),
        settle_after_days=body.settle_after_days, payout_every_days=body.payout_every_days))
    response.status_code = 201 if created else 200
    return view


@sub_merchants.get("/{sub_merchant_id}", response_model=SubMerchantOut)
def get_sub_merchant(sub_merchant_id: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.get_sub_merchant(p, mch, sub_merchant_id)


receivers = APIRouter(prefix="/v1/split-receivers", tags=["split receivers"], responses=ERRORS)


@receivers.post("", status_code=201, response_model=ReceiverOut,
                responses={200: {"model": ReceiverOut, "description": REPLAY}, 409: {"model": ErrorOut},
                           422: {"model": ErrorOut}})
def create_receiver(body: CreateReceiverBody, response: Response, p: Platform = Depends(platform),
                    mch: str = Depends(merchant_id)):
    view, created = svc.create_receiver(p, mch, svc.NewReceiver(
        out_receiver_id=body.out_receiver_id, name=body.name, bank_account=body.bank_account.to_service()))
    response.status_code = 201 if created else 200
    return view


@receivers.get("/{receiver_id}", response_model=ReceiverOut)
def get_receiver(receiver_id: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.get_receiver(p, mch, receiver_id)


settle = APIRouter(prefix="/v1/trades", tags=["settlement"], responses=ERRORS)


@settle.post("/{trade_no}/settle", response_model=TradeOut,
             responses={409: {"model": ErrorOut, "description": "TRADE_NOT_SETTLABLE, REFUND_IN_PROGRESS"},
                        422: {"model": ErrorOut}})
def settle_trade(trade_no: str, body: SettleBody, request: Request, p: Platform = Depends(platform),
                 mch: str = Depends(merchant_id)):
    request.scope["state"]["trade_no"] = trade_no
    return settle_svc.confirm(p, mch, trade_no, body.out_request_no, body.out_order_nos)


settlement_batches = APIRouter(prefix="/v1/settlement-batches", tags=["settlement"], responses=ERRORS)


@settlement_batches.get("", response_model=list[BatchOut])
def list_batches(seller_id: Annotated[str | None, Query(max_length=40)] = None, p: Platform = Depends(platform),
                 mch: str = Depends(merchant_id)):
    return settle_svc.list_batches(p, mch, seller_id)


@settlement_batches.get("/{batch_no}", response_model=BatchOut)
def get_batch(batch_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return settle_svc.get_batch(p, mch, batch_no)


@settlement_batches.get("/{batch_no}/statement", response_class=Response,
                        responses={200: {"content": {"text/csv": {}}, "description": "the seller's statement"}})
def batch_statement(batch_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return Response(batches.statement_csv(p, mch, batch_no), media_type="text/csv; charset=utf-8")


routers = (sub_merchants, receivers, settle, settlement_batches)
