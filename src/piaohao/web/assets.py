"""One template environment and the static files, both read from inside the package."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from piaohao import __version__
from piaohao.kernel.money import format_major

STATIC_PATH = "/static"
_STATIC_DIR = Path(__file__).parent / "static"
# A path, not PackageLoader: that one refuses to build when the folder is missing (git keeps no
# empty folder), and an app that cannot build serves nothing, pages or API.
_TEMPLATES_DIR = Path(__file__).parent / "templates"


def _money(amount_minor: int, currency: str = "CNY") -> str:
    """¥19.99 for 1999 fen: what a buyer reads, never minor units."""
    symbol = {"CNY": "¥"}.get(currency, f"{currency} ")
    return f"{symbol}{format_major(amount_minor, currency)}"


templates = Environment(
    loader=FileSystemLoader(_TEMPLATES_DIR),
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
