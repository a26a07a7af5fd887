"""Fixtures: kmock as the Kubernetes API, the real operator as a subprocess, a real redis-server."""

import pathlib
from collections.abc import AsyncIterator, Iterator

import kmock
import pytest
import pytest_asyncio

from tests.operator.cluster import Cluster
from tests.operator.harness import (
    Agents,
    Kube,
    OperatorProcess,
    RedisServer,
    StartOperator,
    launch_operator,
    write_kubeconfig,
)


@pytest_asyncio.fixture()
async def cluster() -> AsyncIterator[Cluster]:
    # Not strict: 404/409/422 answers are normal API traffic, not test failures.
    async with Cluster(strict=False) as handler, kmock.Server(handler, host="127.0.0.1"):
        handler.install_crds()
        yield handler


@pytest.fixture()
def kube(cluster: Cluster) -> Kube:
    return Kube(cluster)


@pytest.fixture()
def start_operator(cluster: Cluster, tmp_path: pathlib.Path) -> Iterator[StartOperator]:
    """Start `python -m voice_operator` against the kmock cluster; stopped at teardown."""
    started: list[OperatorProcess] = []
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url).rstrip("/"))

    def start(**extra: str) -> OperatorProcess:
        op = launch_operator(kubeconfig, tmp_path / f"operator-{len(started)}.log", **extra)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        print(f"---- operator log {op.log} ----\n{op.log_text()[-6000:]}")


@pytest.fixture()
def redis_server(tmp_path: pathlib.Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest_asyncio.fixture()
async def agents(redis_server: RedisServer) -> AsyncIterator[Agents]:
    registry = Agents(redis_server.url)
    yield registry
    await registry.close()
