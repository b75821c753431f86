"""The quickstart: create a trade as a merchant, pay it as a buyer on the sandbox, see it succeed.

    python examples/quickstart.py --creds creds.json [--base-url http://127.0.0.1:8000]
                                  [--notify-url http://127.0.0.1:8765/notify]

Run `python examples/notify_receiver.py --creds creds.json` in another terminal first to watch
the signed `trade.succeeded` notification arrive and be verified.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time

import httpx

from piaohao.client import PiaohaoClient


def run(base_url: str, app_id: str, app_secret: str, notify_url: str, *, wait_s: float = 30) -> dict:
    client = PiaohaoClient(base_url, app_id, app_secret)
    trade = client.post("/v1/trades", {
        "out_trade_no": "QS-" + secrets.token_hex(4), "amount": 1999, "currency": "CNY",
        "subject": "2 pairs of socks", "order_timeout_s": 900, "notify_url": notify_url})
    print("created", trade["trade_no"], trade["status"], trade["pay_url"])
    # The buyer: open the cashier, choose the sandbox channel, pay on the sandbox's page.
    redirect = httpx.post(trade["pay_url"] + "/pay", json={"method": "sandbox"}, timeout=30).json()["redirect_url"]
    httpx.post(redirect + "/succeed", timeout=30).raise_for_status()
    deadline = time.monotonic() + wait_s
    while True:  # the sandbox notifies the platform asynchronously, as a real channel does
        trade = client.get(f"/v1/trades/{trade['trade_no']}")
        if trade["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print("now", trade["trade_no"], trade["status"], trade.get("components"))
    return trade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creds", default="creds.json", help="output of `piaohao merchants create --json`")
    parser.add_argument("--base-url", default=os.environ.get("PIAOHAO_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--notify-url", default="http://127.0.0.1:8765/notify")
    args = parser.parse_args()
    with open(args.creds) as f:
        creds = json.load(f)
    run(args.base_url, creds["app_id"], creds["app_secret"], args.notify_url)


if __name__ == "__main__":
    main()
