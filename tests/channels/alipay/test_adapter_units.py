"""Pieces of the Alipay adapter that need no server: finding the signed bytes, reading bills."""

from __future__ import annotations

import io
import zipfile

import pytest

from piaohao.channels.alipay.bill import BillUnreadable, parse_bill_zip
from piaohao.channels.alipay.wire import find_member, from_wire_time, to_wire_time


def test_signed_bytes_are_cut_from_the_raw_answer_even_with_braces_and_escapes_in_strings():
    member = b'{"code":"10000","msg":"a}\\"{b","nested":{"x":"\xe4\xb8\xad}"},"list":[{"k":1}]}'
    raw = b'{"alipay_trade_query_response":' + member + b',"sign":"c2ln"}'
    answer = find_member(raw, "alipay_trade_query_response")
    assert answer.signed_bytes == member and answer.sign == "c2ln"
    assert answer.member["msg"] == 'a}"{b' and answer.member["nested"]["x"] == "中}"


def test_answers_without_the_member_or_not_json_have_no_signed_bytes():
    assert find_member(b'{"error_response":{"code":"20000"}}', "alipay_trade_query_response") is None
    assert find_member(b"<html>502</html>", "alipay_trade_query_response") is None
    assert find_member(b'{"alipay_trade_query_response":{"code":"10000"}}', "alipay_trade_query_response").sign is None


def test_wire_times_are_beijing_wall_time():
    at = from_wire_time("2026-11-20 10:00:00")
    assert at.isoformat() == "2026-11-20T02:00:00+00:00" and to_wire_time(at) == "2026-11-20 10:00:00"
    assert from_wire_time("2026-11-20T10:00:00") is None and from_wire_time(None) is None


HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
          "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,"
          "商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")


def _zip(*rows: str, title: str = "#支付宝业务明细查询") -> io.BytesIO:
    text = "\r\n".join([title, "#账号：[20880000000000000156]", HEADER, *rows, "#导出时间：[2026年11月21日 01:00:00]"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("summary.csv", "#支付宝业务汇总查询\r\n".encode("gbk"))
        zf.writestr("detail.csv", text.encode("gbk"))
    buf.seek(0)
    return buf


def _line(kind: str, order: str, net: str, request_no: str, fee: str) -> str:
    cells = ["2026112022001\t", "pay_1\t", kind, "票", "2026-11-20 10:00:00", "2026-11-20 10:01:00",
             "", "", "", "", "b", order, net, "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00",
             request_no, fee, "0.00", ""]
    return ",".join(cells)


def test_bill_rows_parse_with_fees_and_refunds():
    rows = list(parse_bill_zip(_zip(_line("交易", "20", "20.00", "", "-0.12"),
                                    _line("退款", "20.00", "-5.00", "rf_1\t", "0.03"))))
    assert [(r.record_type, r.payment_no, r.refund_no, r.amount, r.fee) for r in rows] == [
        ("payment", "pay_1", None, 2000, 12), ("refund", "pay_1", "rf_1", 500, -3)]
    assert rows[0].channel_txn_no == "2026112022001"


@pytest.mark.parametrize("bill", [
    _zip(_line("冻结", "1.00", "1.00", "", "0.00")),  # a record type we do not know
    _zip(_line("交易", "1e3", "1.00", "", "0.00")),  # not a yuan amount
    _zip(_line("退款", "1.00", "1.00", "rf", "0.00")),  # refund row with a positive amount
    _zip(_line("交易", "1.00", "1.00", "", "0.00"), title="#something else"),  # no detail file
    io.BytesIO(b"not a zip"),
])
def test_unreadable_bills_stop_loudly(bill):
    with pytest.raises(BillUnreadable):
        list(parse_bill_zip(bill))
