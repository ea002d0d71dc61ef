"""``errands pools quiet|resume <id>`` (cli/pools.py), in process: the request is recorded for a
registered pool; an unknown id exits 1 with one line; --json parses."""

from __future__ import annotations

import orjson
import pytest
from redis import Redis

from errands.cli.commands import main
from errands.store.keys import Keys


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_quiet_and_resume_a_registered_pool_and_refuse_an_unknown_one(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, target = Keys(namespace), ("--redis", redis_url, "--namespace", namespace)
    with Redis.from_url(redis_url) as redis:
        redis.zadd(keys.pools, {"p1": 1})  # (registered: the script reads the registry only)
        code, out, err = run(capsys, "pools", "quiet", "p1", *target)
        assert (code, out.strip(), err) == (
            0,
            "pool p1: quiet requested (at its next heartbeat)",
            "",
        )
        assert redis.hget(keys.quiet_requests, "p1").startswith(b"quiet:")
        code, out, _ = run(capsys, "pools", "quiet", "p1", *target)
        assert (code, out.strip()) == (0, "pool p1: quiet already (nothing to change)")
        code, out, _ = run(capsys, "pools", "resume", "p1", *target, "--json")
        assert code == 0
        assert orjson.loads(out) == {"pool": "p1", "action": "resume", "changed": True}
        assert redis.hget(keys.quiet_requests, "p1").startswith(b"resume:")
        code, out, err = run(capsys, "pools", "resume", "nope", *target)
        assert (code, out) == (1, "")
        assert err.count("\n") == 1 and "no running pool 'nope'" in err
        redis.delete(keys.pools, keys.quiet_requests)
