import pytest

from piaohao.domain.composition import (
    Part,
    check_coins_cap,
    coins_cap,
    compose,
)
from piaohao.kernel.errors import CoinsCapExceeded, InvalidComponents

CH = {"sandbox"}


def test_last_part_takes_the_rest():
    assert compose(2000, [("coins", 500), ("sandbox", None)], CH) == [Part("coins", 500), Part("sandbox", 1500)]
    assert compose(2000, [("balance", None)], CH) == [Part("balance", 2000)]
    assert compose(2000, [("coins", 500), ("balance", 1500)], CH) == [Part("coins", 500), Part("balance", 1500)]


@pytest.mark.parametrize("parts", [
    [], [("coins", 0), ("sandbox", None)], [("coins", -1), ("sandbox", None)], [("coins", 1.5), ("sandbox", None)],
    [("coins", True), ("sandbox", None)], [("coins", 500), ("coins", None)], [("coins", 2000), ("sandbox", None)],
    [("coins", 500), ("sandbox", 1)], [("alipay", None)], [("sandbox", 10), ("sandbox2", None)],
])
def test_bad_compositions_are_refused(parts):
    with pytest.raises(InvalidComponents):
        compose(2000, parts, {"sandbox", "sandbox2"})


def test_coins_cap_rounds_down_and_refuses_above():
    assert coins_cap(1999, 50) == 999
    check_coins_cap([Part("coins", 999), Part("sandbox", 1000)], 1999, 50)
    with pytest.raises(CoinsCapExceeded):
        check_coins_cap([Part("coins", 1000), Part("sandbox", 999)], 1999, 50)
