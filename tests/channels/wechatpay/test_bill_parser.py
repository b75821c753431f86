"""The bill parser on WeChat Pay's published layout (a real-format sample [W23], CRLF, a leading
byte-order mark) and on bills it must refuse."""

from __future__ import annotations

import io

import pytest

from piaohao.channels.wechatpay.bill import BillUnavailable, parse_bill

HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
          "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
          "手续费,费率,订单金额,申请退款金额,费率备注")
ROW = ("`2021-01-28 17:07:11,`wx81be3101902f7cb2,`1601959334,`0,`,`4200000925202101284997714292,"
       "`S20210128170702357723,`ofyak5qYxxx,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,"
       "`for testing,`cipher code,`0.00000,`1.00%,`0.01,`0.00,`")
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"


def bill(*rows: str, summary: str = "`1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00") -> io.BytesIO:
    return io.BytesIO(("\ufeff" + "\r\n".join([HEADER, *rows, SUMMARY_HEADER, summary]) + "\r\n").encode())


def test_the_published_sample_parses_to_exact_fen():
    (row,) = list(parse_bill(bill(ROW), "1601959334"))
    assert (row.record_type, row.payment_no, row.channel_txn_no, row.amount, row.fee, row.currency) == (
        "payment", "S20210128170702357723", "4200000925202101284997714292", 1, 0, "CNY")
    assert row.finished_at.isoformat() == "2021-01-28T17:07:11+08:00"


def test_a_bill_for_another_merchant_is_refused():
    with pytest.raises(BillUnavailable, match="another merchant"):
        list(parse_bill(bill(ROW), "1900000000"))


@pytest.mark.parametrize("summary", ["`2,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00",
                                     "`1,`0.02,`0.00,`0.00,`0.00000,`0.02,`0.00"])
def test_a_summary_that_disagrees_with_the_rows_is_refused(summary):
    with pytest.raises(BillUnavailable, match="summary"):
        list(parse_bill(bill(ROW, summary=summary), "1601959334"))


@pytest.mark.parametrize(("old", "new"), [("`1.00%,`0.01", "`1.00%,`0.0x"), ("`1.00%,`0.01", "`1.00%,`1e2"),
                                          ("`0.00000,`1.00%", "`0.0.0,`1.00%"), ("`2021-01-28 17:07:11", "`yesterday")])
def test_unreadable_cells_are_refused(old, new):
    with pytest.raises(BillUnavailable):
        list(parse_bill(bill(ROW.replace(old, new, 1)), "1601959334"))


def test_a_bill_without_a_summary_is_refused():
    data = io.BytesIO(("\r\n".join([HEADER, ROW]) + "\r\n").encode())
    with pytest.raises(BillUnavailable, match="no summary"):
        list(parse_bill(data, "1601959334"))


def test_a_bill_without_the_columns_we_need_is_refused():
    with pytest.raises(BillUnavailable, match="lacks"):
        list(parse_bill(io.BytesIO(HEADER.replace("订单金额,申请", "X,申请").encode()), "1601959334"))
