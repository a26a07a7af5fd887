"""A replicated Redis on loopback: a primary, a replica and Sentinels, all real redis-server processes.

redis-sentinel is `redis-server --sentinel` from the same package. Sentinels take the primary for down
after DOWN_AFTER_MS without an answer and promote the replica once a quorum agrees; short, so a
failover fits in a test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.redis.servers import RedisServer, Tls
from tests.support.procs import free_port
from voice_agent.store.redis_url import sync_client

SERVICE = "vp"
DOWN_AFTER_MS = 1000


@dataclass
class ReplicaServer(RedisServer):
    primary_port: int = 0

    def args(self) -> list[str]:
        args = [*super().args(), "--replicaof", "127.0.0.1", str(self.primary_port)]
        if self.password:
            args += ["--masterauth", self.password]
        if self.tls is not None:
            args += ["--tls-replication", "yes"]
        return args


@dataclass
class SentinelServer(RedisServer):
    """One Sentinel; its config file is its own (Sentinels rewrite it as the group changes)."""

    monitor_port: int = 0
    quorum: int = 2

    def args(self) -> list[str]:
        """The same password for the Sentinels themselves, their peers and the servers, as in the
        cluster's redis-ha component; with TLS, every connection of the group is TLS."""
        lines = ["bind 127.0.0.1", f"dir {self.workdir}", "protected-mode no", "loglevel warning"]
        if self.tls is None:
            lines.append(f"port {self.port}")
        else:
            lines += ["port 0", f"tls-port {self.port}", f"tls-cert-file {self.tls.cert}"]
            lines += [f"tls-key-file {self.tls.key}", f"tls-ca-cert-file {self.tls.ca}"]
            lines += ["tls-auth-clients no", "tls-replication yes"]
        lines.append(f"sentinel monitor {SERVICE} 127.0.0.1 {self.monitor_port} {self.quorum}")
        if self.password:
            lines += [f"requirepass {self.password}", f"sentinel sentinel-pass {self.password}"]
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        lines += [
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} 10000",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        conf = self.workdir / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n")
        return ["redis-server", str(conf), "--sentinel"]


@dataclass
class SentinelGroup:
    """Primary, replicas and Sentinels; `url` is what agents and the operator are given."""

    workdir: Path
    replicas: int = 1
    sentinels: int = 3
    password: str | None = None
    tls: Tls | None = None
    primary: RedisServer = field(init=False)
    replica_servers: list[ReplicaServer] = field(default_factory=list)
    sentinel_servers: list[SentinelServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.url_with(self.password)

    def url_with(self, sentinel_password: str | None) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinel_servers)
        auth = f":{self.password}@" if self.password else ""
        options = [f"sentinel_password={sentinel_password}"] if sentinel_password else []
        if self.tls is not None:
            options.append(f"ssl_ca_certs={self.tls.ca}")
        scheme = "redis+sentinel" if self.tls is None else "rediss+sentinel"
        query = "?" + "&".join(options) if options else ""
        return f"{scheme}://{auth}{hosts}/{SERVICE}/0{query}"

    def start(self, timeout: float = 20.0) -> SentinelGroup:
        secured = {"password": self.password, "tls": self.tls}
        self.primary = RedisServer(self.workdir / "primary", **secured).start()
        for i in range(self.replicas):
            replica = ReplicaServer(self.workdir / f"replica-{i}", primary_port=self.primary.port, **secured)
            self.replica_servers.append(replica.start())
        for i in range(self.sentinels):
            sentinel = SentinelServer(
                self.workdir / f"sentinel-{i}", monitor_port=self.primary.port, **secured
            )
            self.sentinel_servers.append(sentinel.start())
        self.wait_settled(timeout)
        return self

    def wait_settled(self, timeout: float) -> None:
        """Bounded: every Sentinel sees the others and the replicas in sync, so a failover can happen
        (Sentinels find each other through hello messages every 2 s)."""
        deadline = time.monotonic() + timeout
        while not self._settled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sentinel group did not settle: {self.state()}")
            time.sleep(0.1)

    def _settled(self) -> bool:
        for sentinel in self.sentinel_servers:
            client = sentinel.client()
            try:
                master = client.sentinel_master(SERVICE)
                replicas = client.sentinel_slaves(SERVICE)
            except redis.RedisError:
                return False
            if int(master["num-other-sentinels"]) < len(self.sentinel_servers) - 1:
                return False
            synced = [r for r in replicas if not r["is_sdown"] and r.get("master-link-status") == "ok"]
            if len(synced) < len(self.replica_servers):
                return False
        return True

    def state(self) -> list[object]:
        out: list[object] = []
        for sentinel in self.sentinel_servers:
            with contextlib.suppress(redis.RedisError):
                out.append(sentinel.client().sentinel_master(SERVICE))
        return out

    def primary_port(self) -> int | None:
        """The primary's port by the Sentinels' majority (None while they disagree or know none)."""
        ports: list[int] = []
        for sentinel in self.sentinel_servers:
            with contextlib.suppress(redis.RedisError):
                addr = sentinel.client().sentinel_get_master_addr_by_name(SERVICE)
                if addr:
                    ports.append(int(addr[1]))
        best = max(set(ports), key=ports.count, default=None)
        return best if best is not None and ports.count(best) * 2 > len(self.sentinel_servers) else None

    def client(self) -> redis.Redis:
        """A client on whatever the Sentinels name as primary (what the agents see)."""
        return sync_client(self.url, 2.0)

    def kill_primary(self) -> int:
        """kill -9 of the current primary; its port."""
        assert self.primary.proc is not None
        self.primary.proc.kill()
        self.primary.proc.wait(10)
        return self.primary.port

    def rejoin(self, timeout: float) -> None:
        """The killed primary restarts as a replica of the promoted one (what redis-start.sh does in
        the cluster's redis-ha component) and the group settles: ready for the next kill."""
        port = self.primary_port()
        promoted = next(r for r in self.replica_servers if r.port == port)
        old = self.primary
        rejoined = ReplicaServer(
            old.workdir, port=old.port, primary_port=promoted.port, password=self.password, tls=self.tls
        ).start()
        self.replica_servers = [r for r in self.replica_servers if r is not promoted] + [rejoined]
        self.primary = promoted
        self.wait_settled(timeout)

    def stop(self) -> None:
        for server in [*self.sentinel_servers, *self.replica_servers, self.primary]:
            with contextlib.suppress(Exception):
                server.stop()
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()


@contextlib.contextmanager
def sentinel_group(workdir: Path, **kwargs: Any) -> Iterator[SentinelGroup]:
    group = SentinelGroup(workdir, **kwargs)
    try:
        yield group.start()
    finally:
        group.stop()


@contextlib.contextmanager
def lone_sentinel(workdir: Path, monitor_port: int | None = None) -> Iterator[SentinelServer]:
    """One Sentinel watching a primary that does not exist (nothing listens on its port)."""
    sentinel = SentinelServer(workdir, monitor_port=monitor_port or free_port(), quorum=1)
    try:
        yield sentinel.start()
    finally:
        with contextlib.suppress(Exception):
            sentinel.stop()
        if sentinel.proc is not None and sentinel.proc.poll() is None:
            sentinel.proc.kill()
