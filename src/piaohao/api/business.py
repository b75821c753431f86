"""`/v1/topups`, `/v1/transfers`, `/v1/withdrawals`, `/v1/payouts` and `/v1/balance`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, Field, StrictStr

from piaohao.api.deps import app_id, merchant_id, platform
from piaohao.api.members import ERRORS, Currency, MemberId, PaymentPassword, PositiveAmount
from piaohao.api.schemas import ErrorOut, MerchantKey, Strict, Url
from piaohao.platform import Platform
from piaohao.services import payouts as payout_svc
from piaohao.services import topups as topup_svc
from piaohao.services import transfers as transfer_svc
from piaohao.services import withdrawals as withdrawal_svc

OutRequestNo = Annotated[str, Query(min_length=1, max_length=64)]
REPLAY = "replay of the same request (whatever its status now)"


class BankAccountIn(Strict):
    bank: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    number: Annotated[StrictStr, Field(pattern=r"^[0-9]{4,34}$")]
    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]

    def to_service(self) -> payout_svc.BankAccount:
        return payout_svc.BankAccount(self.bank, self.number, self.name)


class BankAccountOut(BaseModel):
    bank: str
    number: str  # masked: only the last 4 digits show
    name: str


# --- top-ups ---------------------------------------------------------------------------------------

class CreateTopupBody(Strict):
    out_request_no: MerchantKey
    member_id: MemberId
    amount: PositiveAmount
    currency: Currency = "CNY"
    notify_url: Url | None = None
    return_url: Url | None = None
    expires_at: AwareDatetime | None = None


class TopupOut(BaseModel):
    topup_no: str
    out_request_no: str
    member_id: str
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    pay_url: str
    notify_url: str | None
    expires_at: str
    created_at: str
    finished_at: str | None


topups = APIRouter(prefix="/v1/topups", tags=["top-ups"], responses=ERRORS)


@topups.post("", status_code=201, response_model=TopupOut,
             responses={200: {"model": TopupOut, "description": REPLAY}, 422: {"model": ErrorOut}})
def create_topup(body: CreateTopupBody, response: Response, p: Platform = Depends(platform),
                 mch: str = Depends(merchant_id), app: str = Depends(app_id)):
    topup, created = topup_svc.create_topup(p, mch, app, topup_svc.NewTopup(**body.model_dump()))
    response.status_code = 201 if created else 200
    return topup


@topups.get("", response_model=TopupOut)
def find_topup(out_request_no: OutRequestNo, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return topup_svc.get_topup(p, mch, out_request_no=out_request_no)


@topups.get("/{topup_no}", response_model=TopupOut)
def get_topup(topup_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return topup_svc.get_topup(p, mch, topup_no=topup_no)


# --- transfers -------------------------------------------------------------------------------------

class CreateTransferBody(Strict):
    out_request_no: MerchantKey
    from_member_id: MemberId
    to_member_id: MemberId
    amount: PositiveAmount
    payment_password: PaymentPassword
    notify_url: Url | None = None


class TransferOut(BaseModel):
    transfer_no: str
    out_request_no: str
    from_member_id: str
    to_member_id: str
    amount: int
    currency: str
    status: Literal["succeeded"]
    notify_url: str | None
    created_at: str
    finished_at: str | None


SPEND_ERRORS = {403: {"model": ErrorOut, "description": "INVALID_PAYMENT_PASSWORD"},
                409: {"model": ErrorOut, "description": "INSUFFICIENT_BALANCE"},
                422: {"model": ErrorOut}, 423: {"model": ErrorOut, "description": "PAYMENT_PASSWORD_LOCKED"}}
transfers = APIRouter(prefix="/v1/transfers", tags=["transfers"], responses=ERRORS)


@transfers.post("", status_code=201, response_model=TransferOut,
                responses={200: {"model": TransferOut, "description": REPLAY}, **SPEND_ERRORS})
def create_transfer(body: CreateTransferBody, response: Response, p: Platform = Depends(platform),
                    mch: str = Depends(merchant_id), app: str = Depends(app_id)):
    transfer, created = transfer_svc.create_transfer(p, mch, app, transfer_svc.NewTransfer(**body.model_dump()))
    response.status_code = 201 if created else 200
    return transfer


@transfers.get("", response_model=TransferOut)
def find_transfer(out_request_no: OutRequestNo, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return transfer_svc.get_transfer(p, mch, out_request_no=out_request_no)


@transfers.get("/{transfer_no}", response_model=TransferOut)
def get_transfer(transfer_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return transfer_svc.get_transfer(p, mch, transfer_no=transfer_no)


# --- withdrawals -----------------------------------------------------------------------------------

class CreateWithdrawalBody(Strict):
    out_request_no: MerchantKey
    member_id: MemberId
    amount: PositiveAmount
    bank_account: BankAccountIn
    payment_password: PaymentPassword
    notify_url: Url | None = None


class WithdrawalOut(BaseModel):
    withdrawal_no: str
    out_request_no: str
    member_id: str
    amount: int
    currency: str
    bank_account: BankAccountOut
    status: Literal["processing", "succeeded", "failed"]
    fail_reason: str | None
    notify_url: str | None
    created_at: str
    finished_at: str | None


withdrawals = APIRouter(prefix="/v1/withdrawals", tags=["withdrawals"], responses=ERRORS)


@withdrawals.post("", status_code=201, response_model=WithdrawalOut,
                  responses={200: {"model": WithdrawalOut, "description": REPLAY}, **SPEND_ERRORS})
def create_withdrawal(body: CreateWithdrawalBody, response: Response, p: Platform = Depends(platform),
                      mch: str = Depends(merchant_id), app: str = Depends(app_id)):
    fields = body.model_dump()
    fields["bank_account"] = body.bank_account.to_service()
    withdrawal, created = withdrawal_svc.create_withdrawal(p, mch, app, withdrawal_svc.NewWithdrawal(**fields))
    response.status_code = 201 if created else 200
    return withdrawal


@withdrawals.get("", response_model=WithdrawalOut)
def find_withdrawal(out_request_no: OutRequestNo, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return withdrawal_svc.get_withdrawal(p, mch, out_request_no=out_request_no)


@withdrawals.get("/{withdrawal_no}", response_model=WithdrawalOut)
def get_withdrawal(withdrawal_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return withdrawal_svc.get_withdrawal(p, mch, withdrawal_no=withdrawal_no)


# --- payouts ---------------------------------------------------------------------------------------

class CreatePayoutBody(Strict):
    out_request_no: MerchantKey
    amount: PositiveAmount
    currency: Currency = "CNY"
    bank_account: BankAccountIn | None = None
    sub_merchant_id: Annotated[StrictStr, Field(min_length=1, max_length=40)] | None = None
    notify_url: Url | None = None


class PayoutOut(BaseModel):
    payout_no: str
    out_request_no: str
    sub_merchant_id: str | None
    amount: int
    currency: str
    bank_account: BankAccountOut
    status: Literal["processing", "succeeded", "failed"]
    fail_reason: str | None
    notify_url: str | None
    created_at: str
    finished_at: str | None


payouts = APIRouter(prefix="/v1/payouts", tags=["payouts"], responses=ERRORS)


@payouts.post("", status_code=201, response_model=PayoutOut,
              responses={200: {"model": PayoutOut, "description": REPLAY},
                         409: {"model": ErrorOut, "description": "INSUFFICIENT_BALANCE"}, 422: {"model": ErrorOut}})
def create_payout(body: CreatePayoutBody, response: Response, p: Platform = Depends(platform),
                  mch: str = Depends(merchant_id), app: str = Depends(app_id)):
    fields = body.model_dump()
    fields["bank_account"] = body.bank_account.to_service() if body.bank_account else None
    payout, created = payout_svc.create_payout(p, mch, app, payout_svc.NewPayout(**fields))
    response.status_code = 201 if created else 200
    return payout


@payouts.get("", response_model=PayoutOut)
def find_payout(out_request_no: OutRequestNo, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return payout_svc.get_payout(p, mch, out_request_no=out_request_no)


@payouts.get("/{payout_no}", response_model=PayoutOut)
def get_payout(payout_no: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    return payout_svc.get_payout(p, mch, payout_no=payout_no)


# --- the merchant's own balance --------------------------------------------------------------------

class MerchantBalancesOut(BaseModel):
    pending_settlement: int
    settled: int


class MerchantBalanceOut(BaseModel):
    currency: str
    balances: MerchantBalancesOut


balance = APIRouter(prefix="/v1/balance", tags=["balance"], responses=ERRORS)


@balance.get("", response_model=MerchantBalanceOut)
def get_balance(currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")] = "CNY", p: Platform = Depends(platform),
                mch: str = Depends(merchant_id)):
    return payout_svc.merchant_balance(p, mch, currency)


routers = (topups, transfers, withdrawals, payouts, balance)
