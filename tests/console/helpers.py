"""A console user as a browser would be, over plain HTTP: sign in, read the CSRF token, post forms."""

from __future__ import annotations

import re

import httpx

from piaohao.services.operators import add_operator
from tests.support import patient

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_RE = re.compile(r'name="login_token" value="([^"]+)"')


def add(running, name: str, role: str) -> str:
    """A new operator; returns its one-time password."""
    return add_operator(running.platform, name, role)["password"]


class ConsoleUser:
    def __init__(self, running):
        self.http = patient.client(base_url=running.url, timeout=30, follow_redirects=False)

    def sign_in(self, name: str, password: str, next_path: str = "") -> httpx.Response:
        form = self.http.get("/console/login")
        token = LOGIN_RE.search(form.text).group(1)
        return self.http.post("/console/login", data={"name": name, "password": password, "login_token": token,
                                                      "next": next_path})

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def csrf(self, path: str = "/console/queue") -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        return CSRF_RE.search(page.text).group(1)

    def post(self, path: str, data: dict | None = None, *, csrf: str | None = "page") -> httpx.Response:
        data = dict(data or {})
        if csrf == "page":
            data["csrf_token"] = self.csrf()
        elif csrf is not None:
            data["csrf_token"] = csrf
        return self.http.post(path, data=data)

    def close(self) -> None:
        self.http.close()


def signed_in(running, name: str, role: str) -> ConsoleUser:
    user = ConsoleUser(running)
    r = user.sign_in(name, add(running, name, role))
    assert r.status_code == 303, r.text
    return user
