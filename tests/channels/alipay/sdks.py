"""Alipay's own client code, from PyPI, to prove the fake faithful.

Both SDKs install a top-level package named `alipay`, so they cannot share one site-packages:
- the official `alipay-sdk-python` (`alipay.aop.api`) is a normal test dependency (pyproject);
- the community `python-alipay-sdk` (`from alipay import AliPay`) is installed by `make` with
  `pip install --no-deps --target $(VENV)/alipay-community-sdk` (its dependencies, pycryptodomex
  and pyOpenSSL, are normal test dependencies). Its modules import each other relatively, so it
  is loaded here under another name, `alipay_community`, without touching the official package.

The official SDK's HTTP helper cannot reach a port other than 80/443 (`get_http_connection`
adds an int to a str and always connects to port 80), so `official_transport` swaps that one
function for a copy that keeps the port; the request bytes and the response checks are the SDK's.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

COMMUNITY_VERSION = "3.4.0"
COMMUNITY_DIR_ENV = "PIAOHAO_ALIPAY_COMMUNITY_SDK"
COMMUNITY_ALIAS = "alipay_community"


def community_dir() -> Path:
    return Path(os.environ.get(COMMUNITY_DIR_ENV) or Path(sys.prefix) / "alipay-community-sdk")


def load_community() -> ModuleType | None:
    """python-alipay-sdk as module `alipay_community`, or None if it is not installed."""
    if COMMUNITY_ALIAS in sys.modules:
        return sys.modules[COMMUNITY_ALIAS]
    package = community_dir() / "alipay"
    if not (package / "__init__.py").is_file():
        return None
    spec = importlib.util.spec_from_file_location(COMMUNITY_ALIAS, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[COMMUNITY_ALIAS] = module
    spec.loader.exec_module(module)
    return module


def community_version() -> str | None:
    for meta in community_dir().glob("python_alipay_sdk-*.dist-info"):
        return meta.name.removeprefix("python_alipay_sdk-").removesuffix(".dist-info")
    return None


def official_transport(monkeypatch) -> None:
    """Let the official SDK's `execute` reach the fake's loopback port (see module docstring)."""
    from alipay.aop.api import DefaultAlipayClient as client_module
    from alipay.aop.api.exception.Exception import ResponseException
    from alipay.aop.api.util.WebUtils import url_encode

    def do_post(url, query_string=None, headers=None, params=None, charset="utf-8", timeout=15):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        body = url_encode(params, charset) if params else None
        connection.request("POST", f"{parts.path}?{query_string}", body=body, headers=headers)
        response = connection.getresponse()
        result = response.read()
        connection.close()
        if response.status != 200:
            raise ResponseException(f"invalid http status {response.status}")
        return result

    monkeypatch.setattr(client_module, "do_post", do_post)
