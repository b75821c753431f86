"""Delivers the fake's asynchronous notifications: a form POST to `notify_url`, RSA2-signed over
the sorted parameters without `sign` and `sign_type`, resent on Alipay's schedule until the
receiver answers exactly `success`. `run_once()` makes one pass (tests drive it); `start()` runs
passes on a background thread."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import urlencode

import httpx

from . import signing
from .faults import NOTIFY_KINDS
from .model import Notification, fen_text, parse_yuan
from .service import AlipayFake

__all__ = ["Notifier"]

DELIVERY_TIMEOUT_S = 5.0  # Alipay gives a receiver a few seconds before counting the attempt as failed
PASS_INTERVAL_S = 0.2


class Notifier:
    def __init__(self, fake: AlipayFake, http: httpx.Client | None = None):
        self.fake = fake
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=DELIVERY_TIMEOUT_S)
        self._wrong_key = signing.generate_private_key()  # for `notify_bad_signature`
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Attempt every notification that is due now; answers how many were attempted."""
        now = self.fake.now()
        with self.fake.lock:
            due = [n for n in self.fake.notifications if not n.delivered and not n.given_up and n.due_at <= now]
        for notification in due:
            self._attempt(notification)
        return len(due)

    def _attempt(self, n: Notification) -> None:
        fault = self.fake.faults.take(NOTIFY_KINDS, n.out_trade_no)
        kind = fault.kind if fault else None
        if kind == "notify_drop":
            with self.fake.lock:
                n.given_up = True
            return
        params = dict(n.params)
        if kind == "notify_amount_delta":
            params["total_amount"] = fen_text((parse_yuan(params["total_amount"]) or 0) + fault.delta_fen)
        key = self._wrong_key if kind == "notify_bad_signature" else self.fake.key
        params["sign"] = signing.sign(key, signing.notification_content(params).encode("utf-8"))
        if kind == "notify_tamper_amount":
            params["total_amount"] = fen_text((parse_yuan(params["total_amount"]) or 0) + (fault.delta_fen or 1))
        answers = [self._post(n.url, params) for _ in range(2 if kind == "notify_duplicate" else 1)]
        with self.fake.lock:
            n.attempts += 1
            n.answers.extend(answers)
            if "success" in answers:
                n.delivered = True
            elif n.attempts >= len(self.fake.notify_retry_s):
                n.given_up = True
            else:
                n.due_at = self.fake.now() + timedelta(seconds=self.fake.notify_retry_s[n.attempts])

    def _post(self, url: str, params: dict[str, str]) -> str:
        try:
            resp = self.http.post(url, content=urlencode(params).encode("utf-8"),
                                  headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"})
        except httpx.HTTPError as e:
            return f"error: {type(e).__name__}"
        return resp.text if resp.status_code == 200 else f"http {resp.status_code}"

    def start(self, interval_s: float = PASS_INTERVAL_S) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="alipay-fake-notifier", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._own_http:
            self.http.close()
