"""Fixtures of the scale-out tests: a Redis Cluster (3 masters, 1 replica each) shared by the
session, and ``topology_url``, which runs a test against one server and against the cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.infra import ClusterInfra


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfra]:
    root: Path = tmp_path_factory.mktemp("cluster")
    with ClusterInfra(masters=3, replicas=1, root=root) as infra:
        yield infra


@pytest.fixture(params=["standalone", "cluster"])
def topology_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    if request.param == "standalone":
        return redis_url
    infra: ClusterInfra = request.getfixturevalue("cluster")
    return infra.url


def unique_namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]
