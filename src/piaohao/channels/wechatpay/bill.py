"""The daily trade bill [W16][W20]: `GET /v3/bill/tradebill` gives a SHA1 and a download URL; the
file (gzip on request, unsigned) is streamed to a spooled temporary file while its uncompressed
bytes are hashed, refused on a hash mismatch, then parsed row by row.

Layout: a header line, one backtick-prefixed row per payment or refund, a summary header and a
summary row (UTF-8, maybe a byte-order mark, CRLF). Columns are found by name. Amounts are yuan
with two decimals, converted to fen exactly; fees have five decimals and are rounded half up to
the fen (WeChat Pay charges fees per order in whole fen, so the extra digits are zeros in practice).
The summary must agree with the rows, or the bill is refused."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tempfile
import zlib
from collections.abc import Iterator
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import IO

import httpx

from piaohao.channels.spi import BillRow
from piaohao.channels.spi import types as spi_types
from piaohao.channels.spi.amounts import AmountFormatError, yuan_to_fen

from .transformers import BEIJING

__all__ = ["BillUnavailable", "parse_bill", "spool_verified"]

SPOOL_BYTES_IN_MEMORY_MAX = 8 << 20
BILL_BYTES_MAX = 2 << 30  # a guard against an endless stream
CHUNK_BYTES = 64 << 10
_FEE = re.compile(r"-?(0|[1-9][0-9]{0,15})\.[0-9]{1,6}")
COLUMNS = {"time": "交易时间", "mchid": "商户号", "txn": "微信订单号", "out_trade_no": "商户订单号",
           "state": "交易状态", "currency": "货币种类", "refund_id": "微信退款单号", "out_refund_no": "商户退款单号",
           "fee": "手续费", "total": "订单金额", "refund": "申请退款金额"}
SUMMARY_COLUMNS = {"count": "总交易单数", "fee": "手续费总金额", "total": "订单总金额", "refund": "申请退款总金额"}


class BillUnavailable(spi_types.BillUnavailable):
    """The bill could not be fetched, does not match its hash, or cannot be read."""


def spool_verified(response: httpx.Response, hash_value: str) -> IO[bytes]:
    """The uncompressed file, checked against `hash_value` (SHA1 hex), rewound and ready to parse."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES_IN_MEMORY_MAX)
    sha1 = hashlib.sha1()
    inflater = None
    size = 0
    try:
        for chunk in response.iter_bytes(CHUNK_BYTES):
            if inflater is None:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if chunk[:2] == b"\x1f\x8b" else False
            data = inflater.decompress(chunk) if inflater else chunk
            size += len(data)
            if size > BILL_BYTES_MAX:
                raise BillUnavailable("bill file too large")
            sha1.update(data)
            spool.write(data)
        if inflater:
            tail = inflater.flush()
            sha1.update(tail)
            spool.write(tail)
    except (httpx.HTTPError, zlib.error) as e:
        spool.close()
        raise BillUnavailable(f"bill download failed: {type(e).__name__}: {e}") from e
    if sha1.hexdigest() != hash_value.lower():
        spool.close()
        raise BillUnavailable("bill file does not match its SHA1 hash_value")
    spool.seek(0)
    return spool


def _cell(value: str) -> str:
    return value[1:] if value.startswith("`") else value


def _fee_fen(text: str) -> int:
    if not _FEE.fullmatch(text):
        raise BillUnavailable(f"unreadable fee {text[:24]!r}")
    return int((Decimal(text) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _fen(text: str) -> int:
    try:
        return yuan_to_fen(text)
    except AmountFormatError as e:
        raise BillUnavailable(str(e)) from e


def _index(header: list[str], wanted: dict[str, str]) -> dict[str, int]:
    names = [h.strip().lstrip("\ufeff") for h in header]
    missing = [name for name in wanted.values() if name not in names]
    if missing:
        raise BillUnavailable(f"bill header lacks {','.join(missing)}")
    return {key: names.index(name) for key, name in wanted.items()}


def _row(cells: list[str], col: dict[str, int], mchid: str) -> BillRow | None:
    get = {key: _cell(cells[i]).strip() for key, i in col.items()}
    if get["mchid"] != mchid:
        raise BillUnavailable("bill row for another merchant")
    try:
        finished_at = datetime.strptime(get["time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError as e:
        raise BillUnavailable(f"unreadable time {get['time'][:24]!r}") from e
    if get["state"] == "SUCCESS":
        return BillRow(record_type="payment", payment_no=get["out_trade_no"], refund_no=None,
                       channel_txn_no=get["txn"], amount=_fen(get["total"]), currency=get["currency"],
                       finished_at=finished_at, fee=_fee_fen(get["fee"]))
    if get["state"] == "REFUND":
        return BillRow(record_type="refund", payment_no=get["out_trade_no"], refund_no=get["out_refund_no"],
                       channel_txn_no=get["txn"], amount=_fen(get["refund"]), currency=get["currency"],
                       finished_at=finished_at, fee=_fee_fen(get["fee"]), channel_refund_no=get["refund_id"])
    return None  # other states (e.g. REVOKED) move no money


def parse_bill(spool: IO[bytes], mchid: str) -> Iterator[BillRow]:
    """Rows of a verified bill file, one at a time; closes the file when done. Raises BillUnavailable
    on anything unreadable, including a summary that disagrees with the rows."""
    count = total = refunded = fees = 0
    try:
        reader = csv.reader(io.TextIOWrapper(spool, encoding="utf-8-sig", newline=""))
        col = None
        summary = None
        for cells in reader:
            if not cells or not "".join(cells).strip():
                continue
            first = cells[0].strip().lstrip("\ufeff")
            if col is None:
                col = _index(cells, COLUMNS)
                continue
            if first == SUMMARY_COLUMNS["count"]:
                summary = _index(cells, SUMMARY_COLUMNS)
                continue
            if summary is not None:
                _check_summary(cells, summary, count, total, refunded, fees)
                return
            if len(cells) < len(COLUMNS):
                raise BillUnavailable("short bill row")
            row = _row(cells, col, mchid)
            count += 1
            if row is None:
                continue
            total += row.amount if row.record_type == "payment" else 0
            refunded += row.amount if row.record_type == "refund" else 0
            fees += row.fee
            yield row
        raise BillUnavailable("bill has no summary")
    except (csv.Error, UnicodeDecodeError, IndexError) as e:
        raise BillUnavailable(f"unreadable bill: {type(e).__name__}: {e}") from e
    finally:
        spool.close()


def _check_summary(cells: list[str], col: dict[str, int], count: int, total: int, refunded: int, fees: int) -> None:
    got = {key: _cell(cells[i]).strip() for key, i in col.items()}
    if not got["count"].isdigit() or int(got["count"]) != count:
        raise BillUnavailable("bill summary count disagrees with its rows")
    if (_fen(got["total"]), _fen(got["refund"]), _fee_fen(got["fee"])) != (total, refunded, fees):
        raise BillUnavailable("bill summary totals disagree with its rows")
