"""The operator test bench: the operator as a subprocess, a real redis-server, agents, bounded waits.

Shared by the pytest fixtures (conftest.py) and the benchmark (bench/operator.py).
"""

import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.client import PubSub

from tests.operator.cluster import ROOT, Cluster, api_path
from voice_agent.protocol.sessions import SessionRecord
from voice_agent.store.redis import RedisSessionStore

Predicate = Callable[[], Any]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(
    predicate: Predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> Any:
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
        await asyncio.sleep(interval)


class Kube:
    """What `kubectl apply/patch/delete` would send to the API server (kmock), for the tests' side."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def _call(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        async with self.cluster.request(method, path, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None)
            assert resp.status < 300, f"{method} {path}: {resp.status} {data}"
            return data

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"].get("namespace")
        result: dict[str, Any] = await self._call("POST", api_path(resource, namespace), body)
        return result

    async def patch(
        self, resource: str, namespace: str | None, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        path = api_path(resource, namespace, name, sub)
        result: dict[str, Any] = await self._call("PATCH", path, patch, "application/merge-patch+json")
        return result

    async def delete(self, resource: str, namespace: str | None, name: str) -> None:
        await self._call("DELETE", api_path(resource, namespace, name))


class OperatorProcess:
    """`python -m voice_operator` against the cluster in `kubeconfig`, on free loopback ports."""

    def __init__(self, kubeconfig: pathlib.Path, log: pathlib.Path, extra: dict[str, str]) -> None:
        self.kubeconfig, self.log, self.extra = kubeconfig, log, extra
        self.spawns = 0
        self._spawn()

    def _spawn(self) -> None:
        self.spawns += 1
        self.ports = {name: free_port() for name in ("metrics", "external", "health", "scaler", "waker")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "voice_operator"],
                env=operator_env(self.kubeconfig, self.ports, **self.extra),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    @property
    def external_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['external']}"

    @property
    def scaler_address(self) -> str:
        """KEDA's view of the operator: its external scaler (gRPC, plaintext)."""
        return f"127.0.0.1:{self.ports['scaler']}"

    @property
    def waker_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['waker']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['health']}/healthz"

    async def get(self, url: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def metric(self, name: str, **labels: str) -> float | None:
        """The sum of the operator's own /metrics samples matching the labels (None while absent)."""
        _, text = await self.get(self.metrics_url)
        values = [
            float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]
        return sum(values) if values else None

    async def wait_metric_growth(self, name: str, by: float, timeout: float = 10.0, **labels: str) -> None:
        """Wait until a counter grew by `by` from now (e.g. a few more timer cycles happened)."""
        start = await self.metric(name, **labels) or 0.0

        async def grown() -> bool:
            return (await self.metric(name, **labels) or 0.0) >= start + by

        await wait_for(grown, timeout, f"{name} to grow by {by}")

    async def wait_started(self, timeout: float = 20.0) -> None:
        async def up() -> bool:
            exited = self.proc.poll() is not None
            if exited and self.spawns < 3 and "address already in use" in self.log_text().lower():
                self._spawn()  # another test process took a port between its pick and our bind
                return False
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            try:
                status, _ = await self.get(self.health_url)
            except aiohttp.ClientError:
                return False
            return status == 200

        await wait_for(up, timeout, "the operator's health endpoint")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
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
        VOICE_OPERATOR_SCALER_PORT=str(ports["scaler"]),
        VOICE_OPERATOR_WAKER_PORT=str(ports["waker"]),
        VOICE_OPERATOR_STATUS_INTERVAL="0.5",
        VOICE_OPERATOR_LOG_FORMAT="plain",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


StartOperator = Callable[..., OperatorProcess]


def launch_operator(kubeconfig: pathlib.Path, log: pathlib.Path, **extra: str) -> OperatorProcess:
    return OperatorProcess(kubeconfig, log, extra)


class RedisServer:
    """A throwaway redis-server on a free loopback port (stoppable, to test Redis outages)."""

    def __init__(self, workdir: pathlib.Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make test installs it)")
        port = free_port()
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        try:
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail("redis-server did not start")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Agents:
    """Agents registering and taking calls through the agent's own Redis store (voice_agent.store).

    The operator must read exactly what agents write; using the agent's code for the writes
    proves the key layout matches rather than restating it here.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.stores: dict[str, RedisSessionStore] = {}
        self.inboxes: dict[str, PubSub] = {}
        self.calls: dict[str, list[str]] = {}

    async def start(self, pool: str, agent_id: str, capacity: int = 4, draining: bool = False) -> None:
        """Register (or re-heartbeat) an agent; a running agent listens on its inbox channel."""
        store = self.stores.get(agent_id) or RedisSessionStore(self.url, pool, agent_id, capacity)
        self.stores[agent_id] = store
        store.draining = draining
        self.calls.setdefault(agent_id, [])
        if agent_id not in self.inboxes:
            self.inboxes[agent_id] = store.pubsub()
            await self.inboxes[agent_id].subscribe(store.inbox)
        await store.heartbeat(f"http://{agent_id}:8000", 30_000, self.calls[agent_id])

    async def call(self, agent_id: str, count: int = 1) -> None:
        """New sessions, allocated by the agents' Lua script (it picks a live agent with room)."""
        store = self.stores[agent_id]
        for _ in range(count):
            record = SessionRecord.new(uuid.uuid4().hex, 3600, "", store.pool)
            owner = await store.allocate(record)
            assert owner == agent_id, f"the allocation went to {owner}, the test expected {agent_id}"
            self.calls[agent_id].append(record.id)

    async def hang_up(self, agent_id: str, count: int = 1) -> None:
        for _ in range(count):
            await self.stores[agent_id].end(self.calls[agent_id].pop())

    async def die(self, agent_id: str) -> None:
        """kill -9: the process's subscription goes at once, its registry entries stay behind."""
        inbox = self.inboxes.pop(agent_id)
        await inbox.aclose()  # type: ignore[no-untyped-call]
        store = self.stores[agent_id]
        await wait_for(lambda: _unheard(store), 5, f"{store.inbox} to lose its subscriber")

    async def close(self) -> None:
        for inbox in self.inboxes.values():
            await inbox.aclose()  # type: ignore[no-untyped-call]
        for store in self.stores.values():
            await store.close()


async def _unheard(store: RedisSessionStore) -> bool:
    rows = await store.client.pubsub_numsub(store.inbox)
    return all(int(count) == 0 for _, count in rows)
