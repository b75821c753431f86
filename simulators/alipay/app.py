"""The fake Alipay as one ASGI app: `/gateway.do` (GET and POST), the bill file download, and the
test-only control endpoints under `/fake/` (onboarding, the buyer paying, faults, notifier)."""

from __future__ import annotations

import dataclasses

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .bill import bill_zip
from .faults import Fault
from .gateway import Gateway
from .model import Trade, beijing_text, fen_text
from .notifier import Notifier
from .service import AlipayError, AlipayFake

__all__ = ["create_app"]


def _trade_json(t: Trade) -> dict:
    return {"app_id": t.app_id, "out_trade_no": t.out_trade_no, "trade_no": t.trade_no, "status": t.status,
            "total_amount": fen_text(t.total_fen),
            "refunded_amount": fen_text(t.refunded_fen), "fee": fen_text(t.fee_fen),
            "paid_at": beijing_text(t.paid_at) if t.paid_at else None}


def create_app(fake: AlipayFake, notifier: Notifier | None = None) -> Starlette:
    gateway = Gateway(fake)

    async def gateway_do(request: Request) -> Response:
        return await gateway.handle(request)

    async def download_bill(request: Request) -> Response:
        link = fake.redeem_bill_link(request.query_params.get("token", ""))
        if link is None:
            return PlainTextResponse("bill link expired or unknown", status_code=404)
        data = bill_zip(fake.apps[link.app_id], fake.trades_of(link.app_id), link.bill_date, fake.faults, fake.now())
        return Response(data, media_type="application/oct-stream",
                        headers={"content-disposition": f"attachment; filename={link.bill_date:%Y%m%d}.csv.zip"})

    async def add_app(request: Request) -> Response:
        body = await request.json()
        app = fake.register_app(body["public_key"], body.get("app_id"))
        return JSONResponse({"app_id": app.app_id, "pid": app.pid, "alipay_public_key": fake.alipay_public_key_pem},
                            status_code=201)

    async def public_key(request: Request) -> Response:
        return PlainTextResponse(fake.alipay_public_key_pem)

    def _trade_action(action):
        async def endpoint(request: Request) -> Response:
            try:
                trade = action(request.path_params["out_trade_no"], request.query_params.get("app_id"))
            except KeyError:
                return JSONResponse({"error": "ACQ.TRADE_NOT_EXIST"}, status_code=404)
            except AlipayError as e:
                return JSONResponse({"error": e.sub_code}, status_code=409)
            return JSONResponse(_trade_json(trade))
        return endpoint

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            fake.faults.clear()
            return Response(status_code=204)
        body = await request.json()
        names = {f.name for f in dataclasses.fields(Fault)}
        try:
            fault = Fault(**{k: v for k, v in body.items() if k in names})
        except (TypeError, ValueError) as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        fake.faults.arm(fault)
        return JSONResponse(dataclasses.asdict(fault), status_code=201)

    async def release(request: Request) -> Response:
        fake.faults.release_hang()
        return Response(status_code=204)

    async def run_notifier(request: Request) -> Response:
        if notifier is None:
            return JSONResponse({"error": "no notifier"}, status_code=409)
        return JSONResponse({"attempted": notifier.run_once()})

    app = Starlette(routes=[
        Route("/gateway.do", gateway_do, methods=["GET", "POST"]),
        Route("/downloadBillFile.resource", download_bill, methods=["GET"]),
        Route("/fake/apps", add_app, methods=["POST"]),
        Route("/fake/alipay_public_key", public_key, methods=["GET"]),
        Route("/fake/trades/{out_trade_no}", _trade_action(lambda o, a: fake.find_trade(o, a)), methods=["GET"]),
        Route("/fake/trades/{out_trade_no}/pay", _trade_action(fake.pay), methods=["POST"]),
        Route("/fake/trades/{out_trade_no}/finish", _trade_action(fake.finish), methods=["POST"]),
        Route("/fake/faults", faults, methods=["POST", "DELETE"]),
        Route("/fake/release_hang", release, methods=["POST"]),
        Route("/fake/notifier/run_once", run_notifier, methods=["POST"]),
    ])
    app.state.fake = fake
    app.state.gateway = gateway
    return app
