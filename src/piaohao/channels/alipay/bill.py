"""Alipay's daily trade bill: a ZIP of GBK CSV files, read row by row.

The detail file is the entry whose first line is `#支付宝业务明细查询` (entry names are GBK
without the UTF-8 flag, so we do not trust them). Comment lines start with `#`; identifier cells
end with a TAB; refund rows (`退款`) carry a negative `商家实收` and the refund request number;
`服务费` is negative for a fee charged and positive for a fee returned. Anything we cannot read
stops the parse with `BillUnreadable`: a half-read bill must not look like a short one.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from typing import IO

from piaohao.channels.spi import BillRow
from piaohao.channels.spi.amounts import AmountFormatError, yuan_to_fen

from .wire import from_wire_time

__all__ = ["BillUnreadable", "DETAIL_TITLE", "parse_bill_zip"]

DETAIL_TITLE = "#支付宝业务明细查询"
ENCODING = "gbk"
RECORD_TYPES = {"交易": "payment", "退款": "refund"}
COLUMNS = {"txn": "支付宝交易号", "payment_no": "商户订单号", "type": "业务类型", "finished_at": "完成时间",
           "order_amount": "订单金额（元）", "net_amount": "商家实收（元）", "refund_no": "退款批次号/请求号",
           "fee": "服务费（元）"}
ENTRIES_MAX = 16  # a bill zip holds two files; more is not a bill


class BillUnreadable(ValueError):
    """The bill file is not in Alipay's format."""


def _signed_fen(text: str) -> int:
    negative = text.startswith("-")
    try:
        fen = yuan_to_fen(text[1:] if negative else text)
    except AmountFormatError as e:
        raise BillUnreadable(f"unreadable amount {text[:32]!r}") from e
    return -fen if negative else fen


def _detail_entry(zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    entries = zf.infolist()
    if len(entries) > ENTRIES_MAX:
        raise BillUnreadable("too many files in the bill zip")
    for info in entries:
        with zf.open(info) as f:
            if f.read(len(DETAIL_TITLE.encode(ENCODING))).decode(ENCODING, "replace") == DETAIL_TITLE:
                return info
    raise BillUnreadable("no detail file (#支付宝业务明细查询) in the bill zip")


def _row(cells: dict[str, str]) -> BillRow:
    record_type = RECORD_TYPES.get(cells["type"])
    if record_type is None:
        raise BillUnreadable(f"unknown 业务类型 {cells['type'][:16]!r}")
    finished_at = from_wire_time(cells["finished_at"])
    if finished_at is None or not cells["payment_no"] or not cells["txn"]:
        raise BillUnreadable(f"incomplete bill row for {cells['payment_no'][:64]!r}")
    fee = -_signed_fen(cells["fee"] or "0")  # the file shows money to the merchant; our fee is what Alipay kept
    if record_type == "payment":
        return BillRow("payment", cells["payment_no"], None, cells["txn"], _signed_fen(cells["order_amount"]), "CNY",
                       finished_at, fee=fee)
    amount = -_signed_fen(cells["net_amount"])
    if amount <= 0 or not cells["refund_no"]:
        raise BillUnreadable(f"refund row without a negative amount or request number: {cells['payment_no'][:64]!r}")
    return BillRow("refund", cells["payment_no"], cells["refund_no"], cells["txn"], amount, "CNY", finished_at,
                   fee=fee)


def parse_bill_zip(file: IO[bytes]) -> Iterator[BillRow]:
    """Rows of the detail file, streamed (the zip must be seekable: a spooled temp file is)."""
    try:
        with zipfile.ZipFile(file) as zf:
            entry = _detail_entry(zf)
            with zf.open(entry) as raw:
                yield from _rows(io.TextIOWrapper(raw, encoding=ENCODING, newline=""))
    except (zipfile.BadZipFile, UnicodeDecodeError, csv.Error) as e:
        raise BillUnreadable(f"unreadable bill: {type(e).__name__}: {e}") from e


def _rows(text: IO[str]) -> Iterator[BillRow]:
    header: dict[str, int] | None = None
    for cells in csv.reader(text):
        if not cells or cells[0].startswith("#"):
            continue
        cells = [c.strip() for c in cells]  # ids carry a trailing TAB against spreadsheet mangling
        if header is None:
            header = {name: i for i, name in enumerate(cells)}
            missing = [name for name in COLUMNS.values() if name not in header]
            if missing:
                raise BillUnreadable(f"bill header lacks {missing}")
            continue
        if len(cells) < len(header):
            raise BillUnreadable("short bill row")
        yield _row({key: cells[header[name]] for key, name in COLUMNS.items()})
    if header is None:
        raise BillUnreadable("bill has no header line")
