"""lua_source: the libs a script includes, each once (a lib may include libs too)."""

from __future__ import annotations

import pytest

from errands.store.luasource import lua_source


@pytest.mark.parametrize("script", ["ack", "settle", "promote", "wf_enqueue", "update_job"])
def test_a_lib_included_twice_is_there_once(script: str) -> None:
    """lib/prio is included by the script or by its libs (dedup, workflows, longwork): one
    definition, before its first use, and no include line left."""
    source = lua_source(script)
    assert source.count("local PRIO_STEP = ") == 1
    assert source.index("local PRIO_STEP = ") < source.index("queue_score(")
    assert not [line for line in source.splitlines() if line.startswith("--@include")]
