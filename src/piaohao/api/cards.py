"""`/v1/members/{member_id}/cards`: quick pay's bound cards (bind, confirm by SMS code, list, unbind).

Full card and id numbers come in once and never go out: answers carry `bank` and `last4`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictStr

from piaohao.api.deps import merchant_id, platform
from piaohao.api.schemas import ErrorOut, Strict
from piaohao.platform import Platform
from piaohao.services import cards as svc

ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut},
          409: {"model": ErrorOut}, 503: {"model": ErrorOut}}


class BindCardBody(Strict):
    card_no: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    holder_name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    id_number: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    phone: Annotated[StrictStr, Field(min_length=1, max_length=20)]


class ConfirmCardBody(Strict):
    sms_code: Annotated[StrictStr, Field(min_length=1, max_length=16)]


class CardOut(BaseModel):
    card_id: str
    member_id: str
    bank: str | None
    last4: str
    status: str
    created_at: str


router = APIRouter(prefix="/v1/members/{member_id}/cards", tags=["quick pay"], responses=ERRORS)


@router.post("", status_code=201, response_model=CardOut)
def bind_card(member_id: str, body: BindCardBody, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.bind_card(p, mch, member_id, svc.NewCard(**body.model_dump()))


@router.post("/{card_id}/confirm", response_model=CardOut)
def confirm_card(member_id: str, card_id: str, body: ConfirmCardBody, p: Platform = Depends(platform),
                 mch: str = Depends(merchant_id)):
    return svc.confirm_card(p, mch, member_id, card_id, body.sms_code)


@router.get("", response_model=list[CardOut])
def list_cards(member_id: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.list_cards(p, mch, member_id)


@router.delete("/{card_id}", response_model=CardOut)
def unbind_card(member_id: str, card_id: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return svc.unbind_card(p, mch, member_id, card_id)
