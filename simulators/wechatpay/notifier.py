"""Delivers queued notifications the way WeChat Pay does [W8]: a JSON POST whose `resource` is
encrypted AEAD_AES_256_GCM under the merchant's APIv3 key (12-character nonce, associated data
`transaction` or `refund`), signed headers over `timestamp\\nnonce\\nbody\\n`, acknowledged only
by 200 or 204, otherwise retried at 15s, 15s, 30s, 3m, 10m, … 6h on the fake's clock.

`run_once()` sends what is due now and returns how many it handled (tests drive it
deterministically); `start()` runs it in a background thread for demos.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading

import httpx

from . import crypto
from .crypto import PlatformIdentity
from .models import Notification
from .state import FakeState, wechat_time
from .wire import signed_headers

__all__ = ["Notifier", "NOTIFY_TIMEOUT_S"]

NOTIFY_TIMEOUT_S = 5.0  # WeChat Pay waits 5 s for the answer
LOOP_INTERVAL_S = 0.2


class Notifier:
    def __init__(self, state: FakeState, platform: PlatformIdentity, http: httpx.Client | None = None):
        self.state, self.platform = state, platform
        self.http = http or httpx.Client(timeout=NOTIFY_TIMEOUT_S)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def build(self, n: Notification) -> tuple[dict[str, str], bytes]:
        """The headers and body of one delivery, faults applied."""
        faults = self.state.faults
        merchant = self.state.merchant(n.mchid)
        resource = copy.deepcopy(n.resource)
        if faults.has("amount_changed_notification", n.out_trade_no):
            amount = resource["amount"]
            for key in ("total", "payer_total") if n.original_type == "transaction" else ("refund", "payer_refund"):
                amount[key] -= 1
        key = merchant.apiv3_key.encode()
        if faults.has("wrong_key_notification", n.out_trade_no):
            key = crypto.nonce(32).encode()
        nonce = crypto.nonce(12)
        plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
        envelope = {"id": n.id, "create_time": wechat_time(n.create_time), "resource_type": "encrypt-resource",
                    "event_type": n.event_type, "summary": n.summary,
                    "resource": {"original_type": n.original_type, "algorithm": "AEAD_AES_256_GCM",
                                 "ciphertext": crypto.aes_gcm_seal(key, nonce, n.original_type, plaintext),
                                 "associated_data": n.original_type, "nonce": nonce}}
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        serial = self.platform.cert_serial if merchant.key_mode == "certificate" else self.platform.public_key_id
        headers = signed_headers(self.platform.key, serial, body, self.state.now(), secrets.token_hex(16))
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "Mozilla/4.0"
        if faults.has("tampered_notification", n.out_trade_no):
            body = body.replace(b'"summary":"', b'"summary":"!', 1)  # changed after signing
        return headers, body

    def run_once(self) -> int:
        self.state.settle_due_refunds()
        due = self.state.due_notifications()
        for n in due:
            headers, body = self.build(n)
            try:
                status = self.http.post(n.url, content=body, headers=headers, timeout=NOTIFY_TIMEOUT_S).status_code
            except httpx.HTTPError:
                status = 0
            self.state.record_answer(n, status)
        return len(due)

    def start(self, interval_s: float = LOOP_INTERVAL_S) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), daemon=True,
                                        name="wechatpay-fake-notifier")
        self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
