"""The dashboard's security defaults: loopback only without auth, X-Forwarded-For only from
trusted proxies, constant-time credentials, CSRF token + same-origin on every POST, GET never
changes state, escaping, CSP without inline scripts, no tracebacks to clients, redaction."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import errands
from errands import Client, Enqueuer, WorkerPool
from errands.web import security
from tests.support.dashboard import SECRET, XSS, csrf_token, eventually, http, make_pool, post

REMOTE = ("203.0.113.7", 50000)
PROXY = ("10.0.0.5", 50000)


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client.from_url(redis_url, namespace=namespace) as c:
        await c.redis.sadd(c.keys.names, "ok")
        yield c


async def paused(client: Client) -> set[str]:
    return await client.paused()


async def test_non_loopback_peer_is_refused_without_auth(client: Client) -> None:
    app = errands.dashboard(client)
    async with http(app, peer=REMOTE) as web:
        for path in ("/", "/api/overview", "/dead", "/static/dashboard.css"):
            response = await web.get(path)
            assert response.status_code == 403, path
            assert "loopback" in response.text
        refused = await web.post("/queues/pause", data={"name": "ok"})
        assert refused.status_code == 403
    for peer in (("127.0.0.1", 1), ("::1", 1), ("::ffff:127.0.0.1", 1), ("127.8.9.10", 1)):
        async with http(app, peer=peer) as web:
            assert (await web.get("/")).status_code == 200, peer
    async with http(app, peer=("testclient", 1)) as web:
        assert (await web.get("/")).status_code == 403  # not an address: not loopback
    assert await client.paused() == set()


async def test_spoofed_x_forwarded_for_is_ignored(client: Client) -> None:
    app = errands.dashboard(client)
    spoof = {"x-forwarded-for": "127.0.0.1", "x-real-ip": "127.0.0.1", "forwarded": "for=127.0.0.1"}
    async with http(app, peer=REMOTE) as web:
        assert (await web.get("/", headers=spoof)).status_code == 403
    async with http(app) as web:
        assert (await web.get("/")).status_code == 200  # a direct loopback client
        # a request relayed by a proxy on this host is not a local user: auth is required
        for header, value in spoof.items():
            assert (await web.get("/", headers={header: value})).status_code == 403


async def test_relayed_requests_need_auth_even_from_trusted_proxies(client: Client) -> None:
    """The no-auth exemption is for direct loopback clients only: a forwarded address can be
    forged by any host inside a trusted-proxy range, so relayed requests must authenticate."""
    app = errands.dashboard(client, trusted_proxies=["10.0.0.0/24"])
    async with http(app, peer=PROXY) as web:
        for xff in ("127.0.0.1", "127.0.0.1, 198.51.100.1", "127.0.0.1, 10.0.0.9", None):
            headers = {"x-forwarded-for": xff} if xff else {}
            assert (await web.get("/", headers=headers)).status_code == 403
    authed = errands.dashboard(client, trusted_proxies=["10.0.0.0/24"], token="t0k3n")
    async with http(authed, peer=PROXY) as web:
        good = {"x-forwarded-for": "198.51.100.1", "authorization": "Bearer t0k3n"}
        assert (await web.get("/api/overview", headers=good)).status_code == 200
        bad = {"x-forwarded-for": "127.0.0.1"}
        assert (await web.get("/api/overview", headers=bad)).status_code == 401


def test_client_address_takes_the_right_most_untrusted_hop() -> None:
    from ipaddress import ip_network

    from starlette.requests import Request

    from errands.web.security import client_address

    def conn(peer: str, xff: str | None) -> Request:
        headers = [(b"x-forwarded-for", xff.encode())] if xff else []
        return Request({"type": "http", "client": (peer, 1), "headers": headers})

    proxies = (ip_network("10.0.0.0/24"),)
    assert client_address(conn("10.0.0.5", "127.0.0.1, 198.51.100.1"), proxies) == "198.51.100.1"
    assert client_address(conn("10.0.0.5", "198.51.100.7, 10.0.0.9"), proxies) == "198.51.100.7"
    assert client_address(conn("203.0.113.9", "127.0.0.1"), proxies) == "203.0.113.9"
    assert client_address(conn("10.0.0.5", None), proxies) is None


async def test_token_auth(client: Client) -> None:
    app = errands.dashboard(client, token="correct-horse")
    async with http(app, peer=REMOTE) as web:
        page = await web.get("/")
        assert page.status_code == 401 and "Sign in" in page.text
        assert "Bearer" in page.headers["www-authenticate"]
        api = await web.get("/api/overview", headers={"authorization": "Bearer wrong"})
        assert api.status_code == 401 and api.json()["status"] == 401
        good = {"authorization": "Bearer correct-horse"}
        assert (await web.get("/api/overview", headers=good)).status_code == 200
        assert (await web.get("/static/dashboard.css")).status_code == 200
        wrong = await post(web, "/login", {"token": "nope"})
        assert wrong.status_code == 401 and "Wrong token" in wrong.text
        login = await post(web, "/login", {"token": "correct-horse"})
        assert login.status_code == 303 and "errands_session" in web.cookies
        assert (await web.get("/")).status_code == 200
        assert (await post(web, "/queues/pause", {"name": "ok"})).status_code == 303
        assert await client.paused() == {"ok"}
        assert (await post(web, "/logout")).status_code == 303
        assert (await web.get("/")).status_code == 401
    async with http(app) as web:  # with auth configured, loopback must authenticate too
        assert (await web.get("/")).status_code == 401


async def test_session_cookie_is_bound_to_secret_and_expiry(client: Client) -> None:
    app = errands.dashboard(client, token="tok", secret="s1")
    other = errands.dashboard(client, token="tok", secret="s2")
    settings = app.state.settings
    forged = security.session_cookie_value(other.state.settings)
    expired = security.session_cookie_value(settings, expires=1)
    valid = security.session_cookie_value(settings)
    async with http(app, peer=REMOTE) as web:
        for cookie, status in ((forged, 401), (expired, 401), (valid, 200)):
            web.cookies.set("errands_session", cookie)
            assert (await web.get("/")).status_code == status


async def test_basic_auth(client: Client) -> None:
    app = errands.dashboard(client, basic_auth="admin:pa:ss")
    async with http(app, peer=REMOTE) as web:
        missing = await web.get("/")
        assert missing.status_code == 401 and "Basic" in missing.headers["www-authenticate"]
        for user, password in (("admin", "wrong"), ("root", "pa:ss"), ("admin", "")):
            assert (await web.get("/", auth=(user, password))).status_code == 401
        bogus = {"authorization": "Basic !!!not-base64"}
        assert (await web.get("/", headers=bogus)).status_code == 401
        assert (await web.get("/", auth=("admin", "pa:ss"))).status_code == 200
        web.auth = httpx.BasicAuth("admin", "pa:ss")
        assert (await post(web, "/queues/pause", {"name": "ok"})).status_code == 303


async def test_credentials_are_compared_in_constant_time(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    app = errands.dashboard(client, basic_auth="admin:pw", token="tok")
    async with http(app, peer=REMOTE) as web:
        await web.get("/", auth=("admin", "guess"))
        await web.get("/", headers={"authorization": "Bearer guess"})
    compared = {value for pair in calls for value in pair}
    assert {b"admin", b"pw", b"tok", b"guess"} <= compared


async def test_cross_site_posts_are_refused(client: Client) -> None:
    async with http(errands.dashboard(client)) as web:
        await csrf_token(web)
        for headers in (
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},
            {"sec-fetch-site": "same-origin", "origin": "http://evil.example"},
            {"origin": "null"},
            {"origin": "http://127.0.0.1:5041"},
        ):
            response = await post(web, "/queues/pause", {"name": "ok"}, headers=headers)
            assert response.status_code == 403, headers
            assert "Cross-site" in response.text
        api = await web.post(
            "/api/queues/pause",
            json={"name": "ok"},
            headers={"x-csrf-token": web.cookies["errands_csrf"], "origin": "https://evil.example"},
        )
        assert api.status_code == 403 and api.json()["error"] == "Cross-site request refused."
        assert await client.paused() == set()
        ok = await web.post(  # no browser headers at all (curl): the token alone is enough
            "/queues/pause", data={"name": "ok", "csrf": web.cookies["errands_csrf"]}
        )
        assert ok.status_code == 303 and await client.paused() == {"ok"}


async def test_allowed_origins(client: Client) -> None:
    app = errands.dashboard(client, allowed_origins=["https://admin.example.com"])
    async with http(app) as web:
        other = {"origin": "https://admin.example.com", "sec-fetch-site": "same-site"}
        assert (await post(web, "/queues/pause", {"name": "ok"}, headers=other)).status_code == 403
        other["sec-fetch-site"] = "same-origin"
        assert (await post(web, "/queues/pause", {"name": "ok"}, headers=other)).status_code == 303


async def test_posts_without_a_valid_csrf_token_are_refused(client: Client) -> None:
    app = errands.dashboard(client)
    other = errands.dashboard(client)
    async with http(app) as web:
        missing = await post(web, "/queues/pause", {"name": "ok"}, with_token=False)
        assert missing.status_code == 403 and "CSRF" in missing.text
        token = await csrf_token(web)
        wrong = await post(
            web, "/queues/pause", {"name": "ok", "csrf": "x" + token}, with_token=False
        )
        assert wrong.status_code == 403
        web.cookies.clear()  # token in the form, but no cookie to match
        headers = {"sec-fetch-site": "same-origin"}
        no_cookie = await web.post(
            "/queues/pause", data={"name": "ok", "csrf": token}, headers=headers
        )
        assert no_cookie.status_code == 403
    async with http(other) as web:  # a token (and cookie) signed by another dashboard's secret
        web.cookies.set("errands_csrf", token)
        form = {"name": "ok", "csrf": token}
        assert (await web.post("/queues/pause", data=form, headers=headers)).status_code == 403
        assert "CSRF" in (await web.post("/api/queues/pause", json={"name": "ok"})).text
    assert await client.paused() == set()


async def test_get_never_changes_state(client: Client) -> None:
    async with http(errands.dashboard(client)) as web:
        await csrf_token(web)
        token = web.cookies["errands_csrf"]
        for path in ("/queues/pause", "/api/queues/pause", "/dead/delete-all", "/jobs/cancel"):
            response = await web.get(path, params={"name": "ok", "id": "x", "csrf": token})
            assert response.status_code in (404, 405), path
        for method in ("PUT", "DELETE", "PATCH"):
            response = await web.request(method, "/queues/pause", data={"name": "ok"})
            assert response.status_code == 405
    assert await client.paused() == set()


async def test_headers_and_no_inline_script(redis_url: str, namespace: str, client: Client) -> None:
    async with http(errands.dashboard(client)) as web:
        cookie = (await web.get("/")).headers["set-cookie"]
        assert cookie.startswith("errands_csrf=") and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie and "Path=/" in cookie
        for path in ("/", "/queues", "/dead", "/history", "/schedules", "/redis", "/api/queues"):
            response = await web.get(path)
            csp = response.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["cache-control"] == "no-store"
            scripts = re.findall(r"<script\b[^>]*>", response.text)
            assert all(' src="' in tag for tag in scripts), scripts
            assert not re.search(r"\son[a-z]+\s*=", response.text), path
            assert ' style="' not in response.text


async def test_xss_payload_in_job_data_renders_as_text(
    redis_url: str, namespace: str, client: Client
) -> None:
    pool: WorkerPool = make_pool(redis_url, namespace)
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace)
    async with pool, http(errands.dashboard(client)) as web:
        job = await enqueuer.enqueue(XSS, {XSS: XSS, "html": '"><img src=x onerror=alert(1)>'})
        await eventually(lambda: _dead(client), "the XSS job to die")
        await client.add_schedule(XSS, XSS, "@daily", {"x": XSS})
        paths = ["/", "/queues", "/dead", f"/jobs/{job.id}", "/history", "/schedules"]
        for path in [*paths, f"/history?name={XSS}", f"/queues/{XSS}"]:
            page = await web.get(path)
            assert page.status_code == 200, path
            assert XSS not in page.text and "<img src=x" not in page.text, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
        api = await web.get(f"/api/jobs/{job.id}")
        assert XSS not in api.text and api.json()["job"]["args"][XSS] == XSS
    await enqueuer.aclose()


async def _dead(client: Client) -> bool:
    return (await client.dead_jobs()).total > 0


async def test_secret_args_are_redacted_in_pages_and_json(
    redis_url: str, namespace: str, client: Client
) -> None:
    pool = make_pool(redis_url, namespace)
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace)
    args = {"password": SECRET, "user": "bob", "nested": {"X-Api-Key": "key-123456"}}
    async with (
        pool,
        http(errands.dashboard(client, redact=[*security.DEFAULT_REDACT, "user"])) as web,
    ):
        job = await enqueuer.enqueue("boom", args)
        await eventually(lambda: _dead(client), "the job to die")
        await client.add_schedule("sched", "ok", "@daily", {"db_password": SECRET})
        paths = ["/dead", f"/jobs/{job.id}", "/history", "/schedules", "/api/dead"]
        paths += [f"/api/jobs/{job.id}", "/api/history", "/api/schedules", "/api/overview"]
        for path in paths:
            text = (await web.get(path)).text
            assert SECRET not in text and "key-123456" not in text and "bob" not in text, path
        detail = (await web.get(f"/api/jobs/{job.id}")).json()["job"]
        assert detail["args"] == {
            "password": "[redacted]",
            "user": "[redacted]",
            "nested": {"X-Api-Key": "[redacted]"},
        }
        assert detail["error"]["error"] == "ValueError: bad password [redacted]"
        assert "[redacted]" in detail["error"]["traceback"]
    async with http(errands.dashboard(client, redact=())) as web:
        assert SECRET in (await web.get(f"/api/jobs/{job.id}")).text
    await enqueuer.aclose()


async def test_errors_show_no_traceback(
    client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("internal detail 0xdeadbeef")

    app = errands.dashboard(client)
    monkeypatch.setattr(app.state.client, "redis_info", broken)
    caplog.set_level(logging.ERROR, "errands.dashboard")
    async with http(app) as web:
        for path in ("/redis", "/api/redis"):
            response = await web.get(path)
            assert response.status_code == 500
            assert "0xdeadbeef" not in response.text and "Traceback" not in response.text
            assert response.headers["content-security-policy"]
    assert "0xdeadbeef" in caplog.text


async def test_redis_down_is_a_503(namespace: str) -> None:
    app = errands.dashboard("redis://127.0.0.1:1/0", namespace=namespace)
    async with http(app) as web:
        response = await web.get("/")
        assert response.status_code == 503 and "Redis is unavailable" in response.text
    await app.state.client.aclose()


async def test_read_only(client: Client) -> None:
    async with http(errands.dashboard(client, read_only=True)) as web:
        page = await web.get("/queues")
        assert "Pause" not in page.text and '<form method="post"' not in page.text
        assert (await post(web, "/queues/pause", {"name": "ok"})).status_code == 403
    assert await client.paused() == set()


async def test_oversized_and_odd_bodies(client: Client) -> None:
    async with http(errands.dashboard(client)) as web:
        token = await csrf_token(web)
        big = await web.post("/queues/pause", data={"name": "x" * 70_000, "csrf": token})
        assert big.status_code == 413
        files = await web.post("/queues/pause", files={"f": b"x"}, headers={"x-csrf-token": token})
        assert files.status_code == 415
        bad_json = await web.post(
            "/api/queues/pause",
            content=b"[1]",
            headers={"x-csrf-token": token, "content-type": "application/json"},
        )
        assert bad_json.status_code == 400
