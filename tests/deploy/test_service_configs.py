"""The Redis and coturn configurations of the manifests, run by the real servers on loopback.

A typo in redis.conf or turnserver.conf would otherwise only show as a crash-looping pod. Only
what is specific to this host is overridden (addresses, ports, data/pid paths); every other line is
the rendered ConfigMap's.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from aioice import stun
from aioice.turn import TurnClientUdpProtocol

from tests.deploy.coturn import TurnServer, allocate_error_code, running_turnserver
from tests.deploy.manifests import named, render
from tests.support.procs import free_port


def config_map(name: str, key: str) -> str:
    return str(named(render("overlays/prod"), "ConfigMap", name)["data"][key])


@pytest.fixture
def redis_from_manifest(tmp_path: Path) -> Iterator[tuple[redis.Redis, Path]]:
    conf = config_map("redis-config", "redis.conf").replace("\ndir /data\n", f"\ndir {tmp_path}\n")
    assert f"dir {tmp_path}" in conf
    (tmp_path / "redis.conf").write_text(conf)
    password = secrets.token_hex(16)
    port = free_port()
    # The StatefulSet runs: redis-server /etc/redis/redis.conf --requirepass "$(cat .../password)".
    args = ["redis-server", str(tmp_path / "redis.conf"), "--requirepass", password]
    args += ["--port", str(port), "--bind", "127.0.0.1"]
    with open(tmp_path / "redis.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited: {(tmp_path / 'redis.log').read_text()[-2000:]}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # poll interval while redis-server starts, bounded by the deadline
        yield client, tmp_path
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def test_redis_runs_the_manifest_config(redis_from_manifest: tuple[redis.Redis, Path]) -> None:
    client, data_dir = redis_from_manifest
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert client.config_get("maxmemory") == {"maxmemory": str(768 * 1024 * 1024)}
    client.set("voicepool:probe", "1")
    assert (data_dir / "appendonlydir").is_dir()
    for command in ("FLUSHALL", "FLUSHDB", "KEYS *", "DEBUG SLEEP 0"):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command(command)  # type: ignore[no-untyped-call]
    anonymous = redis.Redis(host="127.0.0.1", port=client.connection_pool.connection_kwargs["port"])
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("voicepool:probe")
    anonymous.close()


@pytest.fixture
def turn_from_manifest(tmp_path: Path) -> Iterator[TurnServer]:
    (tmp_path / "turnserver.conf").write_text(config_map("turn-config", "turnserver.conf"))
    with running_turnserver(tmp_path, config=tmp_path / "turnserver.conf") as server:
        yield server


async def channel_bind_error(turn: TurnServer, peer: tuple[str, int]) -> int | None:
    """Allocate with the credentials, then ask for a channel to `peer` (which sends nothing to it)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            ("127.0.0.1", turn.port),
            username=turn.username,
            password=turn.credential,
            lifetime=60,
            channel_refresh_time=300,
        ),
        remote_addr=("127.0.0.1", turn.port),
    )
    try:
        await asyncio.wait_for(protocol.connect(), 10)
        try:
            await asyncio.wait_for(protocol.channel_bind(0x4000, peer), 10)
        except stun.TransactionFailed as failed:
            return int(failed.response.attributes["ERROR-CODE"][0])
        return None
    finally:
        transport.close()


def test_coturn_runs_the_manifest_config(turn_from_manifest: TurnServer) -> None:
    logs = turn_from_manifest.logs()
    assert "CONFIG ERROR" not in logs and "Bad configuration" not in logs, logs[-2000:]
    assert allocate_error_code(turn_from_manifest.port) == 401  # long-term credentials required


@pytest.mark.parametrize("peer", [("169.254.169.254", 80), ("127.0.0.1", 6379)], ids=["metadata", "loopback"])
async def test_coturn_refuses_to_relay_to_denied_peers(
    turn_from_manifest: TurnServer, peer: tuple[str, int]
) -> None:
    """No SSRF through the relay: cloud metadata and loopback are denied (403 Forbidden)."""
    assert await channel_bind_error(turn_from_manifest, peer) == 403


async def test_loopback_denial_comes_from_the_manifest_config(tmp_path: Path) -> None:
    """Control: without the config's denied-peer-ip lines (and loopback allowed) the same bind works."""
    conf = config_map("turn-config", "turnserver.conf").splitlines()
    relaxed = [line for line in conf if not line.startswith("denied-peer-ip")] + ["allow-loopback-peers"]
    (tmp_path / "turnserver.conf").write_text("\n".join(relaxed) + "\n")
    with running_turnserver(tmp_path, config=tmp_path / "turnserver.conf") as server:
        assert await channel_bind_error(server, ("127.0.0.1", 6379)) is None
