"""The HTTP stack's own limit, the same-run baseline of create-trade: one endpoint doing one
INSERT per request on the server stack piaohao uses on PostgreSQL, and nothing else.

Same stack: uvicorn with its default loop and parser (uvloop, httptools when installed, as for
`piaohao serve`), FastAPI, a sync endpoint run in Starlette's thread pool, SQLAlchemy's
QueuePool over psycopg 3 with piaohao's pool settings (`piaohao.db.database.Database`: 10
connections, overflow 20, no pre-ping). It takes the create-trade request bytes the benchmark
sends to piaohao (signature headers ignored), parses the JSON body and inserts one row (primary
key and a unique merchant key, as any idempotent create needs) in its own transaction.

    python bench/e2e/bare_app.py --port 8200 --database-url postgresql+psycopg://postgres@127.0.0.1/DB
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from fastapi import Body, FastAPI, Response
from sqlalchemy import create_engine, text

POOL_SIZE = 10  # piaohao.db.database.Database's default

DDL = """CREATE TABLE IF NOT EXISTS bare_trades (
    id bigserial PRIMARY KEY, out_trade_no text NOT NULL UNIQUE, amount bigint NOT NULL,
    currency text NOT NULL, subject text NOT NULL, notify_url text,
    created_at timestamptz NOT NULL DEFAULT now())"""
INSERT = text("INSERT INTO bare_trades (out_trade_no, amount, currency, subject, notify_url) "
              "VALUES (:out_trade_no, :amount, :currency, :subject, :notify_url) RETURNING id")


def make_app(database_url: str) -> FastAPI:
    engine = create_engine(database_url, pool_size=POOL_SIZE, max_overflow=POOL_SIZE * 2, pool_recycle=1800,
                           hide_parameters=True)
    with engine.begin() as conn:
        conn.execute(text(DDL))
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/v1/trades", status_code=201)
    def create(body: dict = Body(...)):
        row = {k: body.get(k) for k in ("out_trade_no", "amount", "currency", "subject", "notify_url")}
        with engine.begin() as conn:
            row["id"] = conn.execute(INSERT, row).scalar_one()
        return Response(orjson.dumps(row), status_code=201, media_type="application/json")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--database-url", required=True)
    args = ap.parse_args()
    uvicorn.run(make_app(args.database_url), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, log_config=None)


if __name__ == "__main__":
    main()
