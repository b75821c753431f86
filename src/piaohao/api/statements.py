"""`/v1/statements/{YYYY-MM-DD}` as CSV."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends
from starlette.responses import Response

from piaohao.api.deps import merchant_id, platform
from piaohao.kernel.errors import InvalidRequest
from piaohao.platform import Platform
from piaohao.services.statements import statement_csv

router = APIRouter(prefix="/v1/statements", tags=["statements"])


@router.get("/{day}", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "one row per final payment or refund"}})
def get_statement(day: str, p: Platform = Depends(platform), mch: str = Depends(merchant_id)):
    try:
        parsed = date.fromisoformat(day)
        if len(day) != 10:
            raise ValueError
    except ValueError:
        raise InvalidRequest("the date must be YYYY-MM-DD") from None
    return Response(statement_csv(p, mch, parsed), media_type="text/csv; charset=utf-8")
