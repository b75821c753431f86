"""A protocol-faithful fake of the Alipay open platform (`alipay.trade.*`, RSA2), for tests and demos.

    fake = AlipayFake(now=clock)               # state, rules, the fake's own Alipay key pair
    app_info = fake.register_app(app_public_pem)   # onboard a merchant app
    asgi = create_app(fake, notifier)          # /gateway.do, bill download, /fake/* controls
    notifier = Notifier(fake)                  # notifier.run_once() delivers what is due
    fake.pay(out_trade_no)                     # the buyer pays (after opening the cashier URL)
    fake.faults.arm(Fault("hang", method="alipay.trade.query"))   # faults: see faults.py

Over HTTP: POST /fake/apps, POST /fake/trades/{no}/pay, POST|DELETE /fake/faults,
POST /fake/release_hang, POST /fake/notifier/run_once.

It shares no code with piaohao (it is "another company"). See the README of the Alipay adapter
(src/piaohao/channels/alipay/README.md) for what it does not imitate.
"""

from .app import create_app
from .faults import Fault
from .model import BEIJING, Notification, Trade
from .notifier import Notifier
from .service import NOTIFY_RETRY_S, AlipayError, AlipayFake

__all__ = ["BEIJING", "NOTIFY_RETRY_S", "AlipayError", "AlipayFake", "Fault", "Notification", "Notifier", "Trade",
           "create_app"]
