"""The channel interface: the only piaohao code a channel adapter may import.

`types` holds the one `Channel` protocol and the values that cross it, `crypto` the RSA and
AES-GCM kit, `amounts` exact wire-amount conversion. Adapters translate these to and from their
provider's wire format and never let provider field names leak into the core.
"""

from piaohao.channels.spi.types import (
    BillRow,
    BillUnavailable,
    BindCard,
    CardChannel,
    CardResult,
    Channel,
    ChannelNotification,
    CreateMandate,
    CreatePayment,
    MandateChannel,
    MandateResult,
    NextAction,
    NextActionType,
    NotificationAck,
    NotificationRejected,
    Outcome,
    PaymentResult,
    PayoutChannel,
    PayoutRequest,
    PayoutResult,
    Product,
    RefundRequest,
    RefundResult,
)

__all__ = [
    "BillRow", "BillUnavailable", "BindCard", "CardChannel", "CardResult",
    "Channel", "ChannelNotification", "CreateMandate", "CreatePayment", "MandateChannel", "MandateResult",
    "NextAction", "NextActionType",
    "NotificationAck", "NotificationRejected", "Outcome", "PaymentResult", "PayoutChannel", "PayoutRequest",
    "PayoutResult", "Product", "RefundRequest", "RefundResult",
]
