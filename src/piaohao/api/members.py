"""`/v1/members`: members, their accounts, coins grants and credit lines."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator, BaseModel, Field, StrictInt, StrictStr

from piaohao.api.deps import merchant_id, platform
from piaohao.api.schemas import ErrorOut, MerchantKey, Strict
from piaohao.kernel.money import AMOUNT_MAX, CURRENCY_EXPONENT
from piaohao.platform import Platform
from piaohao.services import members as svc


def _currency(v: str) -> str:
    if v not in CURRENCY_EXPONENT:
        raise ValueError(f"unsupported currency; one of {', '.join(sorted(CURRENCY_EXPONENT))}")
    return v


Currency = Annotated[StrictStr, AfterValidator(_currency)]
PositiveAmount = Annotated[StrictInt, Field(ge=1, le=AMOUNT_MAX)]
Limit = Annotated[StrictInt, Field(ge=0, le=AMOUNT_MAX)]
NewPassword = Annotated[StrictStr, Field(min_length=6, max_length=32)]
# What a spending call carries: any length is checked (a wrong one counts towards the lock).
PaymentPassword = Annotated[StrictStr, Field(min_length=1, max_length=64)]
MemberId = Annotated[StrictStr, Field(min_length=1, max_length=40)]

ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 429: {"model": ErrorOut}}


class CreateMemberBody(Strict):
    out_member_id: MerchantKey
    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    payment_password: NewPassword
    currency: Currency = "CNY"


class CoinGrantBody(Strict):
    out_request_no: MerchantKey
    amount: PositiveAmount
    reason: Annotated[StrictStr, Field(max_length=256)] | None = None


class CreditLineBody(Strict):
    limit: Limit


class BalanceOut(BaseModel):
    available: int
    frozen: int


class CoinsOut(BaseModel):
    available: int
    held: int


class CreditOut(BaseModel):
    limit: int
    used: int
    available: int


class AccountsOut(BaseModel):
    balance: BalanceOut
    coins: CoinsOut
    credit: CreditOut


class MemberOut(BaseModel):
    member_id: str
    out_member_id: str
    name: str
    currency: str
    created_at: str
    accounts: AccountsOut


class CoinGrantOut(BaseModel):
    grant_no: str
    out_request_no: str
    member_id: str
    amount: int
    currency: str
    reason: str | None
    created_at: str


router = APIRouter(prefix="/v1/members", tags=["members"], responses=ERRORS)


@router.post("", status_code=201, response_model=MemberOut,
             responses={200: {"model": MemberOut, "description": "replay: the same out_member_id and name"},
                        422: {"model": ErrorOut}})
def create_member(body: CreateMemberBody, response: Response, p: Platform = Depends(platform),
                  mch: str = Depends(merchant_id)):
    member, created = svc.create_member(p, mch, svc.NewMember(**body.model_dump()))
    response.status_code = 201 if created else 200
    return member


@router.get("", response_model=MemberOut)
def find_member(out_member_id: str = Query(..., min_length=1, max_length=64), p: Platform = Depends(platform),
                mch: str = Depends(merchant_id)):
    return svc.get_member(p, mch, out_member_id=out_member_id)


@router.get("/{member_id}", response_model=MemberOut)
def get_member(member_id: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.get_member(p, mch, member_id=member_id)


@router.post("/{member_id}/coins", status_code=201, response_model=CoinGrantOut,
             responses={200: {"model": CoinGrantOut, "description": "replay of the same grant"},
                        422: {"model": ErrorOut}})
def grant_coins(member_id: str, body: CoinGrantBody, response: Response, p: Platform = Depends(platform),
                mch: str = Depends(merchant_id)):
    grant, created = svc.grant_coins(p, mch, member_id, svc.NewCoinGrant(**body.model_dump()))
    response.status_code = 201 if created else 200
    return grant


@router.post("/{member_id}/credit", response_model=MemberOut,
             responses={409: {"model": ErrorOut, "description": "CREDIT_LIMIT_BELOW_USED"}})
def set_credit_line(member_id: str, body: CreditLineBody, p: Platform = Depends(platform),
                    mch: str = Depends(merchant_id)):
    return svc.set_credit_limit(p, mch, member_id, body.limit)
