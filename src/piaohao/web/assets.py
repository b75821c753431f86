"""One template environment and the static files, both read from inside the package."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from piaohao import __version__
from piaohao.kernel.money import format_major

STATIC_PATH = "/static"
_STATIC_DIR = Path(__file__).parent / "static"


def _money(amount_minor: int, currency: str = "CNY") -> str:
    """¥19.99 for 1999 fen: what a buyer reads, never minor units."""
    symbol = {"CNY": "¥"}.get(currency, f"{currency} ")
    return f"{symbol}{format_major(amount_minor, currency)}"


templates = Environment(
    loader=PackageLoader("piaohao.web", "templates"),
    autoescape=select_autoescape(("html", "xml"), default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["money"] = _money
templates.globals["static"] = lambda name: f"{STATIC_PATH}/{name}?v={__version__}"


def render(name: str, **context) -> str:
    return templates.get_template(name).render(**context)


def static_files() -> StaticFiles:
    return StaticFiles(directory=_STATIC_DIR)
