"""A real redis-server per test on a free loopback port (optionally AUTH, AOF, TLS), plus agent clusters."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support.procs import AgentProcess, free_port
from voice_agent.store import keys
from voice_agent.testing.client import VoiceClient


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path


@dataclass
class RedisServer:
    workdir: Path
    password: str | None = None
    aof: bool = False
    tls: Tls | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"

    def args(self) -> list[str]:
        args = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", ""]
        args += ["--appendonly", "yes" if self.aof else "no", "--appendfsync", "always"]
        args += ["--protected-mode", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            args += ["--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        return args

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.workdir / "redis.log").read_text()
                    raise RuntimeError(f"redis-server did not start: {log_text}") from None
            time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=2)

    def stop(self) -> None:
        """Clean shutdown (SIGTERM): with AOF, everything acknowledged is on disk."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server(workdir: Path, **kwargs: object) -> Iterator[RedisServer]:
    server = RedisServer(workdir, **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()


def start_agents(
    tmp: Path, server: RedisServer, count: int, prefix: str = "agent", ready_s: float = 30.0, **env: str
) -> list[AgentProcess]:
    """Start `count` agents on one Redis in parallel (starting is the slow part) and wait for all
    (`ready_s` each: longer on a machine kept busy on purpose)."""
    agents = [
        AgentProcess(
            {
                "REDIS_URL": server.url,
                "VOICE_AGENT_ID": f"{prefix}-{i}",
                "VOICE_STT_DECODERS": "1",
                **{k.upper(): v for k, v in env.items()},
            },
            tmp / f"{prefix}-{i}.log",
        )
        for i in range(count)
    ]
    try:
        for agent in agents:
            agent.wait_ready(ready_s)
            wait_registered(server, agent, ready_s / 3)
    except BaseException:
        stop_all(agents)
        raise
    return agents


@contextlib.contextmanager
def running_pool(
    tmp: Path, count: int, prefix: str = "agent", ready_s: float = 30.0, **env: str
) -> Iterator[tuple[RedisServer, list[AgentProcess]]]:
    """A Redis and `count` agents on it (start_agents), all stopped on the way out."""
    with redis_server(tmp / "redis") as server:
        agents = start_agents(tmp, server, count, prefix, ready_s, **env)
        try:
            yield server, agents
        finally:
            stop_all(agents)


def stop_all(agents: list[AgentProcess]) -> None:
    for agent in agents:
        with contextlib.suppress(Exception):
            if agent.proc.poll() is None:
                agent.proc.kill()
            agent.stop()


def wait_registered(server: RedisServer, agent: AgentProcess, timeout: float = 10.0) -> None:
    """Bounded wait until the agent is a live member: registry entry, heartbeat, and its inbox heard.

    Allocation counts an agent alive only while Redis counts a listener on its inbox; under load the
    subscription can come a moment after the first heartbeat, and a session created in between is
    refused (503) as if the pool were full.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(agent.url + "/health", timeout=2).json()
        client = server.client()
        agent_id = agent_id_of(agent)
        registered = client.zrange(keys.agents_key("default"), 0, -1)
        inbox = keys.agent_inbox("default", agent_id)
        listening = dict(client.pubsub_numsub(inbox)).get(inbox, 0)
        if health["redis"]["healthy"] and agent_id in registered and listening:
            return
        time.sleep(0.05)
    raise TimeoutError(f"agent {agent.url} did not register: {agent.logs()[-2000:]}")


async def owned_session(agents: list[AgentProcess]) -> tuple[dict[str, Any], AgentProcess, AgentProcess]:
    """A session created through the first agent, the agent that owns it, and another agent."""
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(agents[0].url + "/v2/sessions")
    resp.raise_for_status()
    session: dict[str, Any] = resp.json()
    owner = next(a for a in agents if agent_id_of(a) == session["owner"])
    return session, owner, next(a for a in agents if a is not owner)


def client_at(agent: AgentProcess, session: dict[str, Any]) -> VoiceClient:
    """A voice client for an existing session whose WebSocket goes to `agent`."""
    client = VoiceClient(agent.url)
    client.session = session
    return client


def agent_id_of(agent: AgentProcess) -> str:
    return str(httpx.get(agent.url + "/", timeout=2).json()["agent_id"])


def make_tls(directory: Path) -> Tls:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    names = ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    ca_key, ca, key, csr, cert = (directory / n for n in names)
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "1", "-subj", "/CN=voicepool-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "1", "-extfile", str(ext))  # fmt: skip
    return Tls(ca=ca, cert=cert, key=key)
