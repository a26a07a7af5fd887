"""Fixtures: kmock as the Kubernetes API, the real operator as a subprocess, a real redis-server."""

import asyncio
import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import kmock
import pytest
import pytest_asyncio
import redis

from tests.operator.cluster import ROOT, Cluster

Predicate = Callable[[], Any]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: Predicate, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until the predicate returns something truthy (bounded; no blind sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture()
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as handler, kmock.Server(handler, host="127.0.0.1"):
        handler.install_crds()
        yield handler


class OperatorProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: pathlib.Path, ports: dict[str, int]) -> None:
        self.proc = proc
        self.log = log
        self.ports = ports

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['external']}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def write_kubeconfig(path: pathlib.Path, url: str) -> pathlib.Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
        f"clusters:\n- name: kmock\n  cluster:\n    server: {url}\n"
        "users:\n- name: kmock\n  user: {}\n"
        "contexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: kmock\n    namespace: default\n"
    )
    return path


def operator_env(kubeconfig: pathlib.Path, ports: dict[str, int], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "VOICE_OPERATOR_"))}
    env.update(
        KUBECONFIG=str(kubeconfig),
        PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")]),
        VOICE_OPERATOR_BIND="127.0.0.1",
        VOICE_OPERATOR_METRICS_PORT=str(ports["metrics"]),
        VOICE_OPERATOR_EXTERNAL_METRICS_PORT=str(ports["external"]),
        VOICE_OPERATOR_HEALTH_PORT=str(ports["health"]),
        VOICE_OPERATOR_STATUS_INTERVAL="0.5",
        VOICE_OPERATOR_LOG_FORMAT="plain",
        VOICE_OPERATOR_LOG_LEVEL="DEBUG",
    )
    env.update(extra)
    return env


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture()
def start_operator(cluster: Cluster, tmp_path: pathlib.Path) -> Iterator[StartOperator]:
    """Start `python -m voice_operator` against the kmock cluster; stopped at teardown."""
    started: list[OperatorProcess] = []
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url).rstrip("/"))

    def start(**extra: str) -> OperatorProcess:
        ports = {"metrics": free_port(), "external": free_port(), "health": free_port()}
        log = tmp_path / f"operator-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "voice_operator"],
                env=operator_env(kubeconfig, ports, **extra),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        op = OperatorProcess(proc, log, ports)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        print(f"---- operator log {op.log} ----\n{op.log_text()[-6000:]}")


@pytest.fixture()
def redis_server(tmp_path: pathlib.Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (make test installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                break
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.02)
    client.close()
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
