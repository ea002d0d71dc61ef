"""The sweep of the dashboard's pages over bad stored data (the namespace and corruptions of
tests/support/corrupt.py): every GET page and its JSON twin answers, none with a 500. A key of
another type fails only the pages that read it, with a page that says so."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import Response
from redis.asyncio import Redis

import errands
from errands import Client
from tests.support.corrupt import (
    CORRUPTIONS,
    WRONG_TYPES,
    Corruption,
    Template,
    build_template,
    copy,
)
from tests.support.dashboard import http


def _sampled() -> list[Corruption]:
    """Of each corrupted field, its first, third and last value (not JSON, a string, wrong
    fields or types; every value is swept by tests/admin)."""
    fields: dict[str, list[Corruption]] = {}
    for c in CORRUPTIONS:
        fields.setdefault(c.id.split("=")[0], []).append(c)
    return [c for cs in fields.values() for c in dict.fromkeys([cs[0], cs[2 % len(cs)], cs[-1]])]


SAMPLED = _sampled()


def _paths(t: Template) -> list[str]:
    pages = [
        "/",
        "/activity",
        "/activity?span=week",
        "/queues",
        "/queues/ok",
        "/queues/parked",
        "/busy",
        "/pools",
        "/scheduled",
        "/retry",
        "/dead",
        "/cancelled",
        "/history",
        "/history?name=ok",
        "/schedules",
        "/workflows",
        f"/workflows/{t.run}",
        "/redis",
    ]
    pages += [f"/jobs/{i}" for i in t.ids.values()] + [f"/jobs/{t.run}.b"]
    pages += [f"/history?id={t.ids['ok']}", "/dead?q=password", "/history?q=x"]
    out = [*pages, f"/jobs?id={t.ids['ok'][:6]}"]
    out += ["/api" + (p if p != "/" else "/overview") for p in pages]
    return out  # fmt: skip


@pytest.fixture(scope="module")
def template(redis_url: str) -> Iterator[Template]:
    yield build_template(redis_url)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    r = Redis.from_url(redis_url)
    yield r
    await r.aclose()


async def _answers(raw: Redis, t: Template, corruption: Corruption | None) -> dict[str, Response]:
    namespace = "cw" + uuid.uuid4().hex[:10]
    keys = await copy(raw, t, namespace)
    if corruption is not None:
        await corruption.apply(raw, keys, t)
    out = {}
    async with Client(raw, namespace=namespace) as client, http(errands.dashboard(client)) as web:
        for path in _paths(t):
            out[path] = await web.get(path)
    return out


async def _statuses(raw: Redis, t: Template, corruption: Corruption | None) -> dict[str, int]:
    return {p: r.status_code for p, r in (await _answers(raw, t, corruption)).items()}


async def test_the_template_pages_answer(raw: Redis, template: Template) -> None:
    statuses = await _statuses(raw, template, None)
    assert {p: s for p, s in statuses.items() if s not in (200, 302, 303)} == {}


@pytest.mark.parametrize("corruption", SAMPLED, ids=[c.id for c in SAMPLED])
async def test_no_page_fails_on_a_corrupt_value(
    raw: Redis, template: Template, corruption: Corruption
) -> None:
    statuses = await _statuses(raw, template, corruption)
    assert {p: s for p, s in statuses.items() if s >= 500} == {}


# pages that read none of the keys given another type here (but the one named)
UNTOUCHED = {"/activity": "", "/redis": "", "/schedules": "schedules", "/workflows": "workflows"}


@pytest.mark.parametrize("corruption", WRONG_TYPES, ids=[c.id for c in WRONG_TYPES])
async def test_a_key_of_another_type_fails_only_its_pages(
    raw: Redis, template: Template, corruption: Corruption
) -> None:
    """The pages that read it say so (a 500 naming the key when Redis's error does), the
    navigation goes without its counts when they read it, the other pages answer."""
    answers = await _answers(raw, template, corruption)
    for path, response in answers.items():
        wrong = "another type than errands writes" in response.text
        assert response.status_code < 500 or wrong, path
    for page, spared in UNTOUCHED.items():
        if spared != corruption.id:
            assert answers[page].status_code == 200, page
            assert answers["/api" + page].status_code == 200, page
    if corruption.id in ("stats", "running"):  # read by the navigation's counts: shown without
        assert answers["/dead"].status_code == 200 and 'href="/dead"' in answers["/dead"].text
