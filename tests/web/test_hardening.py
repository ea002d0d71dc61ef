"""The dashboard against hostile requests and data (issue 17): DNS rebinding refused by a
``Host`` allow-list, redaction of every spelling of secret keys and of URL passwords, throttled
sign-in, logout that revokes the session, ``Secure`` cookies behind an HTTPS proxy, 400/404
(never 500) for odd input, a styled 404 page, and text-reordering characters shown escaped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import errands
from errands import Client, Enqueuer, Job, WorkerPool
from errands.clock import FakeClock
from errands.web.throttle import Throttle
from tests.support.dashboard import eventually, http, post
from tests.support.invariants import assert_invariants

REMOTE = ("203.0.113.7", 50000)
PROXY = ("10.0.0.5", 50000)
DSN = "postgres://app:s3cr3t-dsn@db.internal/app"
# every spelling of issue 17, each with a value that must never be shown
SPELLINGS = {
    "apiKey": "v-apikey-1", "privateKey": "v-privkey-2", "passwd": "v-passwd-3",
    "pwd": "v-pwd-4", "passphrase": "v-phrase-5", "credentials": "v-creds-6", "auth": "v-auth-7",
    "cookie": "v-cookie-8", "session": "v-session-9", "jwt": "v-jwt-10", "bearer": "v-bearer-11",
    "API-KEY": "v-apikey-12", "Db.Password": "v-dbpw-13", "x_auth_token": "v-xauth-14",
    "basicAuth": "v-basic-15", "sessionId": "v-sid-16",
}  # fmt: skip
KEPT = {"author": "ada", "region": "eu", "dsn": DSN}


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client.from_url(redis_url, namespace=namespace) as c:
        await c.redis.sadd(c.keys.names, "ok")
        yield c


# -- DNS rebinding ------------------------------------------------------------------------------
async def test_foreign_host_names_are_refused_without_credentials(client: Client) -> None:
    """A page of http://rebind.example:5040 re-pointed at 127.0.0.1 reaches us from loopback
    with its own name in Host: refused, reads and actions alike."""
    app = errands.dashboard(client)
    async with http(app, base="http://rebind.example:5040") as web:
        for path in ("/api/dead", "/api/redis", "/api/csrf", "/", "/static/dashboard.css"):
            response = await web.get(path)
            assert response.status_code == 403, path
            assert "DNS rebinding" in response.text
            assert "errands_csrf" not in response.headers.get("set-cookie", "")
        headers = {"sec-fetch-site": "same-origin", "origin": "http://rebind.example:5040"}
        paused = await web.post("/api/queues/pause", json={"name": "ok"}, headers=headers)
        assert paused.status_code == 403
    assert await client.paused() == set()
    for base in ("http://localhost:5040", "http://127.0.0.1", "http://[::1]:5040",
                 "http://app.localhost:5040", "http://LOCALHOST.:5040"):  # fmt: skip
        async with http(app, base=base) as web:
            assert (await web.get("/api/overview")).status_code == 200, base


async def test_allowed_hosts(client: Client) -> None:
    app = errands.dashboard(client, allowed_hosts=["jobs.internal", "*.example.com"])
    for base, status in (
        ("http://jobs.internal:5040", 200),
        ("http://a.example.com", 200),
        ("http://localhost:5040", 403),  # the list replaces the default
        ("http://evil.com", 403),
    ):
        async with http(app, base=base) as web:
            assert (await web.get("/api/overview")).status_code == status, base
    authed = {"authorization": "Bearer t"}
    open_app = errands.dashboard(client, token="t")  # credentials: any name (a proxy's)
    async with http(open_app, peer=REMOTE, base="http://jobs.example.org") as web:
        assert (await web.get("/api/overview", headers=authed)).status_code == 200
    strict = errands.dashboard(client, token="t", allowed_hosts=["jobs.example.org"])
    async with http(strict, peer=REMOTE, base="http://other.example.org") as web:
        assert (await web.get("/api/overview", headers=authed)).status_code == 403


# -- redaction ----------------------------------------------------------------------------------
def build_pool(redis_url: str, namespace: str) -> WorkerPool:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2, shutdown_grace=1)
    release = asyncio.Event()
    pool.release = release  # type: ignore[attr-defined]

    @pool.job("leaky", max_fails=1)
    async def leaky(job: Job) -> None:
        raise ConnectionError(f"cannot reach {DSN} (key {job.args['apiKey']})")

    @pool.job("chatty")
    async def chatty(job: Job) -> None:
        await job.checkin(f"copying from {DSN}")
        await release.wait()

    return pool


async def _dead(client: Client) -> bool:
    return (await client.dead_jobs()).total > 0


async def _busy(client: Client) -> bool:
    return any(w.checkin for w in await client.workers())


async def test_every_spelling_and_url_passwords_are_redacted(
    redis_url: str, namespace: str, client: Client
) -> None:
    pool = build_pool(redis_url, namespace)
    async with pool, Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        dead = await enqueuer.enqueue("leaky", {**SPELLINGS, **KEPT, "nested": [SPELLINGS]})
        await eventually(lambda: _dead(client), "the job to die")
        running = await enqueuer.enqueue("chatty", {"url": DSN})
        await eventually(lambda: _busy(client), "the checkin")
        async with http(errands.dashboard(client)) as web:
            paths = ["/dead", f"/jobs/{dead.id}", "/history", "/busy", "/", "/api/dead"]
            paths += [f"/api/jobs/{dead.id}", "/api/history", "/api/busy", "/api/overview"]
            paths += [f"/jobs/{running.id}", f"/api/jobs/{running.id}"]
            for path in paths:
                text = (await web.get(path)).text
                for key, value in SPELLINGS.items():
                    assert value not in text, (path, key)
                assert "s3cr3t-dsn" not in text, path
            detail = (await web.get(f"/api/jobs/{dead.id}")).json()["job"]
            assert {k: detail["args"][k] for k in SPELLINGS} == dict.fromkeys(
                SPELLINGS, "[redacted]"
            )
            assert detail["args"]["author"] == "ada" and detail["args"]["region"] == "eu"
            assert detail["args"]["dsn"] == "postgres://[redacted]@db.internal/app"
            assert "postgres://[redacted]@db.internal/app" in detail["error"]["error"]
            assert "[redacted]" in detail["error"]["traceback"]
            busy = (await web.get("/api/busy")).json()["workers"]
            assert (
                busy[0]["checkin"]["message"]
                == "copying from postgres://[redacted]@db.internal/app"
            )
        pool.release.set()  # type: ignore[attr-defined]
    await assert_invariants(client.redis, namespace)


# -- sign-in ------------------------------------------------------------------------------------
def test_throttle_counts_failures_per_client_and_overall() -> None:
    clock = FakeClock()
    throttle = Throttle(clock.now, per_client=3, overall=5, window=60)
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
    assert throttle.retry_after("a") == 60 and throttle.retry_after("b") == 0
    clock.advance(30)
    throttle.failed("b")
    throttle.failed("c")  # 5 failures in the window: everyone waits
    assert throttle.retry_after("d") == 30
    clock.advance(30.5)
    assert throttle.retry_after("a") == 0 and throttle.retry_after("d") == 0


async def test_sign_in_guessing_is_throttled(redis_url: str, namespace: str) -> None:
    clock = FakeClock()
    async with Client.from_url(redis_url, namespace=namespace, clock=clock) as client:
        app = errands.dashboard(client, token="correct-horse")
        async with http(app, peer=REMOTE) as web:
            for _ in range(10):
                wrong = await web.get("/api/overview", headers={"authorization": "Bearer x"})
                assert wrong.status_code == 401
            good = {"authorization": "Bearer correct-horse"}
            refused = await web.get("/api/overview", headers=good)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
            assert (await post(web, "/login", {"token": "correct-horse"})).status_code == 429
        async with http(app, peer=("198.51.100.9", 1)) as web:  # another client may sign in
            assert (await web.get("/login")).status_code == 200  # the CSRF cookie
            assert (await post(web, "/login", {"token": "nope"})).status_code == 401
            assert (await post(web, "/login", {"token": "correct-horse"})).status_code == 303
        clock.advance(301)
        async with http(app, peer=REMOTE) as web:
            assert (await web.get("/api/overview", headers=good)).status_code == 200


async def test_wrong_tokens_at_the_sign_in_page_are_throttled_not_sessions(
    redis_url: str, namespace: str
) -> None:
    clock = FakeClock()
    async with Client.from_url(redis_url, namespace=namespace, clock=clock) as client:
        app = errands.dashboard(client, token="correct-horse")
        async with http(app, peer=REMOTE) as signed_in, http(app, peer=REMOTE) as guesser:
            assert (await post(signed_in, "/login", {"token": "correct-horse"})).status_code == 303
            for _ in range(10):
                assert (await post(guesser, "/login", {"token": "wrong"})).status_code == 401
            refused = await post(guesser, "/login", {"token": "correct-horse"})
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
            assert (await signed_in.get("/")).status_code == 200  # a session is not affected
            assert (await signed_in.get("/api/overview")).status_code == 200
            paused = await post(signed_in, "/api/queues/pause", {"name": "ok"})
            assert paused.status_code == 200
        assert await client.paused() == {"ok"}


async def test_sign_in_guessing_from_many_addresses_is_throttled(client: Client) -> None:
    app = errands.dashboard(client, basic_auth="admin:pw")
    for i in range(100):
        async with http(app, peer=(f"198.51.100.{i}", 1)) as web:
            response = await web.get("/", headers={"authorization": "Basic YWRtaW46eA=="})
            assert response.status_code == 401
    async with http(app, peer=REMOTE) as web:
        good = {"authorization": "Basic YWRtaW46cHc="}  # admin:pw
        assert (await web.get("/", headers=good)).status_code == 429


async def test_logout_revokes_the_session(client: Client, namespace: str) -> None:
    app = errands.dashboard(client, token="tok")
    async with http(app, peer=REMOTE) as web:
        assert (await post(web, "/login", {"token": "tok"})).status_code == 303
        stolen = web.cookies["errands_session"]
        assert (await web.get("/")).status_code == 200
        assert (await post(web, "/logout")).status_code == 303
    async with http(app, peer=REMOTE) as replay:
        replay.cookies.set("errands_session", stolen)
        assert (await replay.get("/")).status_code == 401
        assert (await replay.get("/api/overview")).status_code == 401
    ttl = await client.redis.pttl(client.keys.dashboard_revoked)
    assert 12 * 3600 * 1000 < ttl <= 12 * 3600 * 1000 + 60_000
    await assert_invariants(client.redis, namespace)


async def test_secure_cookies_behind_a_trusted_https_proxy(client: Client) -> None:
    app = errands.dashboard(client, token="tok", trusted_proxies=["10.0.0.0/24"])
    https = {"x-forwarded-proto": "https", "x-forwarded-for": "198.51.100.1"}
    async with http(app, peer=PROXY) as web:
        login = await post(web, "/login", {"token": "tok"}, headers=https)
        cookies = login.headers.get_list("set-cookie")
        assert cookies and all("Secure" in c for c in cookies), cookies
        forwarded = {"forwarded": "for=198.51.100.1;proto=https"}
        page = await web.get("/login", headers=forwarded)
        assert all("Secure" in c for c in page.headers.get_list("set-cookie"))
    async with http(app, peer=REMOTE) as web:  # the header from anyone else is not believed
        login = await post(web, "/login", {"token": "tok"}, headers=https)
        assert not any("Secure" in c for c in login.headers.get_list("set-cookie"))


# -- odd input ----------------------------------------------------------------------------------
async def test_odd_input_is_a_400_or_404(client: Client) -> None:
    app = errands.dashboard(client)
    cases = {
        "/dead?page=²": 400, "/retry?page=-1": 400, "/api/scheduled?page=1e9": 400,
        "/history?page=٣": 400, "/jobs/a{b}": 404, "/jobs/a%00b": 404, "/api/jobs/x%7D": 404,
        "/jobs?id=a%7Bb%7D": 404, "/jobs?id=a%00": 404, "/history?id=%7B": 400,
        "/history?name=a%7Bb": 400, "/api/history?name=%00": 400, "/queues/a%7Bb": 404,
        "/queues/%00": 404, "/no/such/page": 404, "/api/no-such": 404,
    }  # fmt: skip
    async with http(app) as web:
        for path, status in cases.items():
            response = await web.get(path)
            assert response.status_code == status, (path, response.text[:200])
        missing = await web.get("/no/such/page")
        assert 'id="nav-overview"' in missing.text and "No such page" in missing.text
        assert missing.headers["content-security-policy"]
        assert (await web.get("/api/no-such")).json() == {"error": "No such page.", "status": 404}
        assert (await web.delete("/dead")).status_code == 405
        for path in ("/api/jobs/cancel", "/api/jobs/retry", "/api/jobs/delete", "/api/dead/retry",
                     "/api/cancelled/delete", "/api/dead/bulk"):  # fmt: skip
            for bad in ("a{b}", "a\x00b", "x" * 5000):
                response = await post(web, path, {"id": bad, "ids": bad, "verb": "delete"})
                assert response.status_code in (400, 404), (path, bad[:8])
        for path in ("/api/queues/pause", "/api/queues/clear", "/api/schedules/run"):
            for bad in ("a{b}", "a\x00b", "x" * 5000):
                assert (await post(web, path, {"name": bad})).status_code in (400, 404), path


async def test_a_far_page_is_shown_as_asked_and_empty(client: Client) -> None:
    """The page number reaches the Client unchanged (a page above 100,000 read as 100,000: a
    listing of more than 2,000,000 entries could not be paged past it); far pages are empty,
    with the listing's total and a link back to its last page (they had no pager)."""
    await client.redis.zadd(client.keys.history_of("ok"), {"a:1": 1, "b:1": 2})
    await client.redis.zadd(client.keys.scheduled("ok"), {"a": 1, "b": 2})
    await client.redis.sadd(client.keys.names, "ok", "other")
    app = errands.dashboard(client)
    async with http(app) as web:
        for kind in ("scheduled", "history"):
            for number in (3, 100_001, 999_999_999):
                shown = (await web.get(f"/api/{kind}?page={number}")).json()["page"]
                assert (shown["items"], shown["total"], shown["page"]) == ([], 2, number), kind
                html = await web.get(f"/{kind}?page={number}")
                assert html.status_code == 200 and f"page {number} of 1" in html.text, kind
                assert f'href="/{kind}?page=1" rel="prev"' in html.text, kind  # (the last page)
        queued = await web.get("/api/queues/ok?page=123456789")
        assert queued.json()["page"]["page"] == 123456789


async def test_text_reordering_characters_are_shown_escaped(
    redis_url: str, namespace: str, client: Client
) -> None:
    tricky = "invoice\u202egpj.exe\u2066x\u200f"
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("ok", {"file": tricky}, delay=3600)
    async with http(errands.dashboard(client)) as web:
        for path in (f"/jobs/{job.id}", "/scheduled"):
            text = (await web.get(path)).text
            assert "\u202e" not in text and "\u2066" not in text and "\u200f" not in text
            assert "invoice&lt;U+202E&gt;gpj.exe&lt;U+2066&gt;x&lt;U+200F&gt;" in text, path
        raw = (await web.get(f"/api/jobs/{job.id}")).content
        assert "\u202e".encode() not in raw and b"\\u202e" in raw
        assert (await web.get(f"/api/jobs/{job.id}")).json()["job"]["args"]["file"] == tricky


def test_cli_allowed_hosts() -> None:
    from errands.cli.commands import build_parser

    args = build_parser().parse_args(["dashboard", "--allowed-host", "jobs.internal"])
    assert args.allowed_host == ["jobs.internal"]
