"""The daily trade bill as Alipay serves it: a ZIP holding two GBK CSV files, the detail file
(`#支付宝业务明细查询`) and the summary file (`#支付宝业务汇总查询`), entry names in GBK without the
UTF-8 flag. Identifier cells end with a TAB, refund rows carry negative amounts and the refund
request number, the service fee column is negative for payments and positive for returned fees."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime

from .faults import FaultBook
from .model import BEIJING, App, Trade, beijing_text, fen_text, parse_yuan

__all__ = ["DETAIL_HEADER", "bill_zip"]

DETAIL_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
                 "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
                 "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
_RULE = "#-----------------------------------------"


class _GbkName(zipfile.ZipInfo):
    """Alipay's zips store names in GBK and do not set the UTF-8 flag."""

    def _encodeFilenameFlags(self):  # noqa: N802 - zipfile's own hook
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def _day(at: datetime) -> date:
    return at.astimezone(BEIJING).date()


def _row(trade: Trade, kind: str, finished: datetime, order_fen: int, net_fen: int, request_no: str,
         fee_fen: int) -> list[str]:
    zero = "0.00"
    return [trade.trade_no + "\t", trade.out_trade_no + "\t", kind, trade.subject, beijing_text(trade.created_at),
            beijing_text(finished), "", "", "", "", trade.buyer_logon_id, fen_text(order_fen), fen_text(net_fen),
            zero, zero, zero, zero, zero, "", zero, zero, request_no + ("\t" if request_no else ""), fen_text(fee_fen),
            zero, ""]


def _rows(trades: list[Trade], bill_date: date, faults: FaultBook) -> list[list[str]]:
    rows = []
    for trade in sorted(trades, key=lambda t: t.created_at):
        if trade.paid_at is not None and _day(trade.paid_at) == bill_date:
            if faults.active("bill_missing_row", trade.out_trade_no):
                continue
            delta = sum(f.delta_fen for f in faults.active("bill_changed_amount", trade.out_trade_no))
            amount = trade.total_fen + delta
            rows.append(_row(trade, "交易", trade.paid_at, amount, amount, "", -trade.fee_fen))
        for refund in trade.refunds.values():
            if _day(refund.refunded_at) == bill_date:
                rows.append(_row(trade, "退款", refund.refunded_at, trade.total_fen, -refund.amount_fen,
                                 refund.out_request_no, refund.fee_returned_fen))
    for i, _fault in enumerate(faults.active("bill_extra_row", None)):
        ghost = Trade("", f"ghost_{i}", f"2099010122001{i:06d}00000000", 1234, "ghost", "", "",
                      datetime.combine(bill_date, datetime.min.time(), BEIJING),
                      datetime.combine(bill_date, datetime.min.time(), BEIJING))
        rows.append(_row(ghost, "交易", ghost.created_at, 1234, 1234, "", -7))
    return rows


def _signed_fen(text: str) -> int:
    fen = parse_yuan(text.lstrip("-"))
    assert fen is not None, text
    return -fen if text.startswith("-") else fen


def _csv_line(cells: list[str]) -> str:
    return ",".join(cells) + "\r\n"


def bill_zip(app: App, trades: list[Trade], bill_date: date, faults: FaultBook, exported_at: datetime) -> bytes:
    rows = _rows(trades, bill_date, faults)
    pays = [r for r in rows if r[2] == "交易"]
    refunds = [r for r in rows if r[2] == "退款"]

    def total(rs: list[list[str]], column: int = 12) -> str:
        return fen_text(sum(_signed_fen(r[column]) for r in rs))

    day = bill_date.strftime("%Y年%m月%d日")
    next_day = date.fromordinal(bill_date.toordinal() + 1).strftime("%Y年%m月%d日")
    head = (f"#支付宝业务明细查询\r\n#账号：[{app.pid}0156]\r\n"
            f"#起始日期：[{day} 00:00:00]   终止日期：[{next_day} 00:00:00]\r\n{_RULE}业务明细列表{_RULE}\r\n")
    detail = head + DETAIL_HEADER + "\r\n" + "".join(_csv_line(r) for r in rows) + (
        f"{_RULE}业务明细列表结束{_RULE}\r\n"
        f"#交易合计：{len(pays)}笔，商家实收共{total(pays)}元，商家优惠共0.00元\r\n"
        f"#退款合计：{len(refunds)}笔，商家实收退款共{total(refunds)}元，商家优惠退款共0.00元\r\n"
        f"#导出时间：[{exported_at.astimezone(BEIJING).strftime('%Y年%m月%d日 %H:%M:%S')}]\r\n")
    summary = (f"#支付宝业务汇总查询\r\n#账号：[{app.pid}0156]\r\n"
               f"#起始日期：[{day} 00:00:00]   终止日期：[{next_day} 00:00:00]\r\n"
               "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,服务费（元）\r\n"
               f"合计,,{len(pays)},{len(refunds)},{total(pays)},{total(pays + refunds)},{total(pays + refunds, 22)}\r\n"
               f"#导出时间：[{exported_at.astimezone(BEIJING).strftime('%Y年%m月%d日 %H:%M:%S')}]\r\n")
    stamp = bill_date.strftime("%Y%m%d")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in ((f"{app.pid}0156_{stamp}_业务明细.csv", detail),
                           (f"{app.pid}0156_{stamp}_业务明细(汇总).csv", summary)):
            info = _GbkName(name, date_time=exported_at.astimezone(BEIJING).timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text.encode("gbk"))
    return buf.getvalue()
