"""Redis AUTH and TLS (rediss://) with a throwaway CA: the agent works with them and fails fast without."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.redis.servers import RedisServer, make_tls, redis_server, start_agents, stop_all
from tests.support.procs import AgentProcess
from voice_agent.store import keys

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("redis-security")]

PASSWORD = "s3cret-for-tests-only"


def fails_at_start(tmp: Path, url: str) -> tuple[int, str]:
    agent = AgentProcess({"REDIS_URL": url, "VOICE_AGENT_ID": "rejected"}, tmp / "rejected.log")
    code = agent.proc.wait(30)
    agent.stop()
    return code, agent.logs()


def serves_sessions(tmp: Path, server: RedisServer) -> None:
    agents = start_agents(tmp, server, 1, prefix="sec")
    try:
        resp = httpx.post(agents[0].url + "/v2/sessions", timeout=10)
        assert resp.status_code == 201, resp.text
        stored = server.client().hget(keys.session_key("default", resp.json()["id"]), "owner")
        assert stored == "sec-0"
        health = httpx.get(agents[0].url + "/health", timeout=5).json()
        assert health["redis"] == {"enabled": True, "healthy": True}
        assert PASSWORD not in agents[0].logs(), "no secrets in logs"
    finally:
        stop_all(agents)


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis", password=PASSWORD) as server:
        yield server


def test_auth_required(tmp_path: Path, auth_server: RedisServer) -> None:
    no_password = auth_server.url.replace(f":{PASSWORD}@", "")
    code, logs = fails_at_start(tmp_path, no_password)
    assert code == 2 and "REDIS_URL" in logs and "authentication" in logs, logs[-2000:]

    code, logs = fails_at_start(tmp_path, auth_server.url.replace(PASSWORD, "wrong-password"))
    assert code == 2 and "REDIS_URL" in logs and "wrong-password" not in logs, logs[-2000:]

    serves_sessions(tmp_path, auth_server)


def test_tls_with_throwaway_ca(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "pki")
    other_ca = make_tls(tmp_path / "other-pki").ca
    with redis_server(tmp_path / "redis", password=PASSWORD, tls=tls) as server:
        assert server.url.startswith("rediss://")
        code, logs = fails_at_start(tmp_path, server.url.replace(str(tls.ca), str(other_ca)))
        assert code == 2 and "REDIS_URL" in logs and "TLS" in logs, logs[-2000:]
        serves_sessions(tmp_path, server)


AGENT_CATEGORIES = ["-@all", "+@read", "+@write", "+@scripting", "+@pubsub", "+@connection"]
AGENT_CATEGORIES += ["+@transaction", "-@dangerous"]


def test_least_privilege_acl_user(tmp_path: Path, auth_server: RedisServer) -> None:
    """What docs/redis.md recommends: an ACL user limited to vp:* keys/channels, no dangerous commands."""
    admin = auth_server.client()
    admin.acl_setuser(
        "voicepool",
        enabled=True,
        reset=True,
        passwords=["+agent-pw"],
        keys=["vp:*"],
        channels=["vp:*"],
        categories=AGENT_CATEGORIES,
    )
    url = f"redis://voicepool:agent-pw@127.0.0.1:{auth_server.port}/0"
    agents = start_agents(tmp_path, auth_server, 1, prefix="acl", redis_url=url)
    try:
        resp = httpx.post(agents[0].url + "/v2/sessions", timeout=10)
        assert resp.status_code == 201, resp.text
        assert admin.hget(keys.session_key("default", resp.json()["id"]), "owner") == "acl-0"
    finally:
        stop_all(agents)
    as_agent = redis.Redis.from_url(url, decode_responses=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_agent.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_agent.get("other-app:secret")
