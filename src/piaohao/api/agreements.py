"""`/v1/agreements`: agreement pay (協議支付 / 代扣): mandates and the debits made under them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field, StrictInt, StrictStr

from piaohao.api.deps import app_id, merchant_id, platform
from piaohao.api.schemas import ErrorOut, MerchantKey, Strict, Url
from piaohao.kernel.money import AMOUNT_MAX
from piaohao.platform import Platform
from piaohao.services import agreements as svc

ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut},
          409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}}
PositiveAmount = Annotated[StrictInt, Field(ge=1, le=AMOUNT_MAX)]


class CreateAgreementBody(Strict):
    out_agreement_no: MerchantKey
    member_id: Annotated[StrictStr, Field(min_length=1, max_length=40)] | None = None
    buyer_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    max_amount_per_debit: PositiveAmount
    notify_url: Url | None = None


class DebitBody(Strict):
    out_trade_no: MerchantKey
    amount: Annotated[StrictInt, Field(ge=0, le=AMOUNT_MAX)]
    subject: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    notify_url: Url | None = None


class AgreementOut(BaseModel):
    agreement_no: str
    out_agreement_no: str
    member_id: str | None
    buyer_id: str | None
    max_amount_per_debit: int
    currency: str
    status: str
    sign_url: str | None
    signed_at: str | None
    ended_at: str | None
    created_at: str


router = APIRouter(prefix="/v1/agreements", tags=["agreement pay"], responses=ERRORS)


@router.post("", status_code=201, response_model=AgreementOut)
def create_agreement(body: CreateAgreementBody, response: Response, p: Platform = Depends(platform),
                     mch: str = Depends(merchant_id), app: str = Depends(app_id)):
    agreement, created = svc.create_agreement(p, mch, app, svc.NewAgreement(**body.model_dump()))
    response.status_code = 201 if created else 200
    return agreement


@router.get("", response_model=AgreementOut)
def find_agreement(out_agreement_no: str = Query(..., min_length=1, max_length=64), p: Platform = Depends(platform),
                   mch: str = Depends(merchant_id)):
    return svc.get_agreement(p, mch, out_agreement_no=out_agreement_no)


@router.get("/{agreement_no}", response_model=AgreementOut)
def get_agreement(agreement_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.get_agreement(p, mch, agreement_no=agreement_no)


@router.post("/{agreement_no}/terminate", response_model=AgreementOut)
def terminate_agreement(agreement_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.terminate_agreement(p, mch, agreement_no)


@router.post("/{agreement_no}/debits", status_code=201)
def debit(agreement_no: str, body: DebitBody, response: Response, p: Platform = Depends(platform),
          mch: str = Depends(merchant_id), app: str = Depends(app_id)):
    trade, created = svc.debit(p, mch, app, agreement_no, svc.NewDebit(**body.model_dump()))
    response.status_code = 201 if created else 200
    return trade
