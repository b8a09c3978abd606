"""Who may use the console: the token as a bearer header or a login cookie, CSRF on cookie
POSTs, the loopback rule and the token file."""

from __future__ import annotations

from pathlib import Path

import pytest
from console_synthetic import TOKEN
from starlette.testclient import TestClient

from runwatch.console.app import CSP, ConsoleConfig, create_app
from runwatch.console.auth import COOKIE, Gate, TokenError, read_token, safe_next
from runwatch.console.serve import ListenError, check_exposure, parse_listen

BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(cfg: ConsoleConfig) -> TestClient:
    return TestClient(create_app(cfg), base_url="http://127.0.0.1:8080")


def test_pages_need_the_token(client: TestClient) -> None:
    assert client.get("/workloads").status_code == 401
    assert client.get("/workloads", headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert client.get("/workloads", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
    # A browser is sent to the login form, keeping where it was going.
    r = client.get("/alerts?rule=x", headers={"accept": "text/html"}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login?next=%2Falerts%3Frule%3Dx")
    assert client.get("/workloads", headers=BEARER).status_code == 200
    assert client.get("/alerts/stream?for=0").status_code == 401


def test_post_without_a_token_is_401_and_wrong_token_too(client: TestClient) -> None:
    for path in ("/alerts/al-3/ack", "/challenges/abcd1234/approve", "/challenges/abcd1234/reject", "/logout"):
        assert client.post(path, data={"csrf": Gate(TOKEN).csrf}).status_code == 401, path
        assert client.post(path, headers={"authorization": "Bearer nope-nope-nope-nope"}).status_code == 401, path


def test_login_sets_an_httponly_strict_cookie_not_the_token(client: TestClient) -> None:
    r = client.post("/login", data={"token": "wrong", "next": "/alerts"}, follow_redirects=False)
    assert r.status_code == 401 and "wrong token" in r.text and COOKIE not in r.headers.get("set-cookie", "")
    r = client.post("/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie and Gate(TOKEN).cookie_value in cookie
    assert client.get("/workloads").status_code == 200  # the cookie now authenticates


def test_cookie_posts_need_the_csrf_value_and_the_same_origin(client: TestClient) -> None:
    client.cookies.set(COOKIE, Gate(TOKEN).cookie_value)
    r = client.post("/alerts/al-3/ack", data={"by": "ana"})
    assert (r.status_code, r.text) == (403, "missing or wrong CSRF token\n")
    r = client.post("/alerts/al-3/ack", data={"by": "ana", "csrf": "0" * 64})
    assert r.status_code == 403
    r = client.post("/alerts/al-3/ack", data={"by": "ana", "csrf": Gate(TOKEN).csrf},
                    headers={"origin": "http://evil.example"})
    assert (r.status_code, r.text) == (403, "cross-origin request refused\n")
    r = client.post("/alerts/al-3/ack", data={"by": "ana", "csrf": Gate(TOKEN).csrf},
                    headers={"origin": "http://127.0.0.1:8080", "accept": "application/json"})
    assert r.status_code == 200 and r.json()["by"] == "ana"
    # The CSRF value may come as a header instead (the page's script).
    r = client.post("/alerts/al-1/ack", headers={"x-csrf-token": Gate(TOKEN).csrf, "accept": "application/json"})
    assert r.status_code == 200 and r.json()["by"] == "console"
    # A bearer POST needs no CSRF value: a browser never adds that header by itself.
    r = client.post("/alerts/al-4/ack", headers={**BEARER, "accept": "application/json"}, data={"by": "bot"})
    assert r.status_code == 200 and r.json()["by"] == "bot"


def test_cross_origin_login_is_refused(client: TestClient) -> None:
    r = client.post("/login", data={"token": TOKEN}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403


def test_every_response_has_the_csp(client: TestClient) -> None:
    for path in ("/login", "/workloads", "/static/console.js", "/nowhere"):
        r = client.get(path, headers=BEARER)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self';" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP


def test_loopback_only_without_a_token_file() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9") == ("::1", 9)
    for bad in ("8080", "host:", "host:99999", ":80"):
        with pytest.raises(ListenError):
            parse_listen(bad)
    check_exposure("127.0.0.1", None)
    check_exposure("::1", None)
    check_exposure("localhost", None)
    check_exposure("0.0.0.0", "/etc/token")
    with pytest.raises(ListenError, match=r"^refusing to serve the console on 0\.0\.0\.0 \(not loopback\) "
                                          r"without --token-file$"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ListenError):
        check_exposure("10.1.2.3", None)


def test_token_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(f"  {TOKEN}\nsecond line\n")
    assert read_token(f) == TOKEN
    f.write_text("short\n")
    with pytest.raises(TokenError, match="holds no token of at least 16 characters"):
        read_token(f)
    with pytest.raises(TokenError, match="cannot read token file"):
        read_token(tmp_path / "missing")


def test_safe_next() -> None:
    assert [safe_next(x) for x in ("/alerts?x=1", "//evil", "http://evil", "/\\evil", None, "")] == [
        "/alerts?x=1", "/", "/", "/", "/", "/"]
